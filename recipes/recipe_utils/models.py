"""The pretrained model: its config with the data's labels, and the model loaded with it."""

from __future__ import annotations

from collections.abc import Sequence

from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

from .arguments import ModelArguments
from .labels import set_labels


def load_config(
    model_args: ModelArguments,
    label_names: Sequence[str] | None,
    labels_source: str,
    *,
    finetuning_task: str,
    head_suffix: str,
) -> PretrainedConfig:
    """The pretrained config with the data's labels (see :func:`set_labels`) and the task's name.

    Args:
        model_args: the model, its config and where to fetch them.
        label_names: the label names by class id; None for a regression.
        labels_source: where the labels come from, for messages.
        finetuning_task: recorded in the config ("image-classification", a GLUE task, ...).
        head_suffix: the class-name suffix of the task's models ("ForSequenceClassification").
    """
    config = AutoConfig.from_pretrained(
        model_args.config_name or model_args.model_name_or_path, **model_args.hub_options()
    )
    set_labels(
        config,
        label_names,
        head_suffix=head_suffix,
        model_name_or_path=model_args.model_name_or_path,
        labels_source=labels_source,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )
    config.finetuning_task = finetuning_task
    return config


def load_model(auto_class: type, model_args: ModelArguments, config: PretrainedConfig) -> PreTrainedModel:
    """``auto_class.from_pretrained`` of the model with ``config``, its loss read as a batch mean
    (:func:`treat_loss_as_batch_mean`)."""
    model = auto_class.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **model_args.hub_options(),
    )
    treat_loss_as_batch_mean(model)
    return model


def treat_loss_as_batch_mean(model) -> None:
    """Tells the Trainer that the model's loss is a mean over its batch.

    A transformers 5 Trainer assumes a model whose ``forward`` takes ``**kwargs`` normalizes its loss by
    ``num_items_in_batch``; it then multiplies the loss by the number of processes and does not divide it by
    the gradient-accumulation steps. The classification heads of BERT-style models return a plain mean, so
    under DDP or accumulation their loss and gradients would be scaled. ``accepts_loss_kwargs`` is the
    Trainer's own switch for this. (With ``--label_smoothing_factor`` the Trainer's `LabelSmoother` computes
    the loss instead, and with this switch it too is a mean over the batch.)
    """
    model.accepts_loss_kwargs = False

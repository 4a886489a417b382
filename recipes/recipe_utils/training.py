"""Training, evaluation and the report at the end: the recipe's trainer, the run of the stages asked for with
their metrics, the model card and the per-depth learning rates, and the lr x decay search before training."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from datasets import Dataset
from transformers import PreTrainedModel, Trainer

from finetune_llrd import LLRDTrainer, format_lr_table, search

from .arguments import DataArgumentsMixin, ModelArguments, RecipeTrainingArguments


logger = logging.getLogger(__name__)


def model_card_kwargs(
    model_args: ModelArguments, data_args: DataArgumentsMixin, tasks: str, tags: list[str] | None = None
) -> dict[str, Any]:
    """The keyword arguments of ``Trainer.create_model_card`` / ``push_to_hub``: the base model, the task, and
    the Hub dataset (with its configuration) the model was fine-tuned on."""
    card = {"finetuned_from": model_args.model_name_or_path, "tasks": tasks}
    if tags is not None:
        card["tags"] = tags
    if data_args.dataset_name is not None:
        card.update(dataset_tags=data_args.dataset_name, dataset=data_args.dataset_name)
        if data_args.dataset_config_name is not None:
            card["dataset_args"] = data_args.dataset_config_name
    return card


def build_trainer(
    model: PreTrainedModel,
    processing_class: Any,
    training_args: RecipeTrainingArguments,
    splits: dict[str, Dataset],
    *,
    data_collator: Callable | None,
    compute_metrics: Callable | None,
    trainer_class: Callable[..., LLRDTrainer] = LLRDTrainer,
) -> LLRDTrainer:
    """The `LLRDTrainer` of a recipe: it trains on ``splits["train"]`` and evaluates on ``splits["eval"]``,
    and saves ``processing_class`` (the tokenizer or image processor) with the model. ``trainer_class`` is a
    subclass of `LLRDTrainer` (or a ``partial`` of one) for a task whose evaluation needs more than
    ``compute_metrics``, as question answering's post-processing does."""
    return trainer_class(
        model=model,
        args=training_args,
        train_dataset=splits.get("train"),
        eval_dataset=splits.get("eval"),
        processing_class=processing_class,
        data_collator=data_collator,
        compute_metrics=compute_metrics,
    )


def train_evaluate_and_report(
    trainer: LLRDTrainer,
    splits: dict[str, Dataset],
    *,
    checkpoint: str | None,
    model_card: dict[str, Any],
    predict: Callable[[LLRDTrainer], None] | None = None,
    add_eval_metrics: Callable[[dict[str, float]], None] | None = None,
) -> None:
    """Runs what the arguments ask for and reports it, as every recipe does.

    Trains (``--do_train``, resuming from ``checkpoint``) and saves the model, its state and the training
    metrics; evaluates on every evaluation split ("eval", and "eval_mismatched" for MNLI); calls ``predict``
    (``--do_predict``); writes the model card, or pushes it with the model (``--push_to_hub``); prints the
    per-depth learning rates; and warns when the run trained nothing.

    Args:
        trainer: the recipe's trainer (:func:`build_trainer`).
        splits: split -> the dataset, as the model takes it.
        checkpoint: the checkpoint to resume training from, or None.
        model_card: the keyword arguments of ``create_model_card`` (:func:`model_card_kwargs`).
        predict: the recipe's predictions: writes them to ``--output_dir``.
        add_eval_metrics: adds the recipe's own scores derived from an evaluation's metrics (the perplexity
            ``exp(eval_loss)`` of a language model) to them, in place.
    """
    args = trainer.args
    if args.do_train and args.search_trials > 0 and checkpoint is None:
        search_layerwise_rates(trainer)
    if args.do_train:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        metrics = {**train_result.metrics, "train_samples": len(splits["train"])}
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
    for split in [split for split in splits if split.startswith("eval")]:
        metrics = trainer.evaluate(eval_dataset=splits[split], metric_key_prefix=split)
        metrics[f"{split}_samples"] = len(splits[split])
        if add_eval_metrics is not None:
            add_eval_metrics(metrics)
        trainer.log_metrics(split, metrics)
        trainer.save_metrics(split, metrics)
    if args.do_predict and predict is not None:
        predict(trainer)
    if args.push_to_hub:
        trainer.push_to_hub(**model_card)
    else:
        trainer.create_model_card(**model_card)
    print_layerwise_lr_table(trainer)
    if not args.do_train and trainer.is_world_process_zero():
        logger.warning(
            f"This run trained nothing (--do_train false, or only --do_eval / --do_predict given): every score above "
            f"is that of {trainer.model.name_or_path} as loaded. Drop those flags, or pass --do_train, to fine-tune."
        )


def search_layerwise_rates(trainer: LLRDTrainer) -> dict[str, float]:
    """Searches learning rate x layer decay (``--search_trials``) and sets the best on ``trainer.args``, so that
    the normal run that follows trains the best configuration to the end (:func:`finetune_llrd.search.search_layerwise_rates`;
    the command it logs for the best configuration is the recipe's own command line).

    Returns:
        The best trial's training arguments.
    """
    return search.search_layerwise_rates(trainer, getattr(trainer.args, "recipe_command", sys.argv))


def print_layerwise_lr_table(trainer: Trainer) -> None:
    """Prints, on the main process, the rate every depth trained at (the base rates the schedule scaled)."""
    if not trainer.is_world_process_zero():
        return
    rows = trainer.layerwise_lr_table()
    if not rows:
        print("***** layer-wise learning rates: off (layer_decay=1.0, no per-depth rate: the stock optimizer) *****")
        return
    layers = trainer.layers
    print(f"***** layer-wise learning rates (L={layers.num_layers} blocks, depths by {layers.method}) *****")
    print(format_lr_table(rows))

"""A run's rates tuned: a trainer that starts every trial from a fresh model, the trials over a space, and their
outcome put to use.

:func:`search_rates` searches from a model factory (what a benchmark has); :func:`search_layerwise_rates` from a
trainer already set up for the real run (what a recipe has), and sets the best values on its arguments.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from .results import best_command_line, write_search_results
from .space import SearchArguments, SearchSpace, default_search_space, load_search_space
from .trials import SearchOutcome, run_search


logger = logging.getLogger(__name__)

SEARCH_SUBFOLDER = "search"


def search_rates(
    model_init: Callable[[], nn.Module],
    args: Any,
    search_args: SearchArguments,
    metric: str,
    *,
    space: SearchSpace | None = None,
    trainer_class: type | None = None,
    **trainer_kwargs: Any,
) -> tuple[SearchOutcome, SearchSpace]:
    """Searches learning rate x layer decay, each trial training a fresh ``model_init()``.

    Args:
        model_init: makes the model a trial starts from (the same weights each time).
        args: the layer-wise training arguments of the real run; a copy trains the trials, writing into
            ``<output_dir>/search`` and saving no checkpoint.
        search_args: the search flags (``search_trials``, ``search_max_steps``, ...).
        metric: the evaluation metric to optimize (e.g. ``eval_accuracy``).
        space: what to sample; by default :func:`default_search_space` for the size of the model (with the head's
            multiple when ``search_args.search_head_lr_multiple``), or ``search_args.search_space`` when it names a file.
        trainer_class: the trainer of the trials; by default :class:`~finetune_llrd.LLRDTrainer`.
        **trainer_kwargs: the trainer's data and functions: ``train_dataset``, ``eval_dataset`` (required),
            ``data_collator``, ``compute_metrics``, ``processing_class``, ...

    Returns:
        The outcome (the same best values on every rank) and the space searched.

    Raises:
        ValueError: without an ``eval_dataset`` to score the trials.
    """
    if trainer_kwargs.get("eval_dataset") is None:
        raise ValueError(
            "The search needs an evaluation split to score each trial: give --validation_file or a dataset with one."
        )
    if trainer_class is None:
        from ..trainer import LLRDTrainer  # here, so that the search space and its flags load no Trainer

        trainer_class = LLRDTrainer
    if space is None:
        if search_args.search_space:
            space = load_search_space(search_args.search_space)
        else:
            num_parameters = sum(parameter.numel() for parameter in model_init().parameters())
            space = default_search_space(num_parameters, search_args.search_head_lr_multiple)
    trial_args = copy.deepcopy(args)
    trial_args.output_dir = os.path.join(args.output_dir, SEARCH_SUBFOLDER)
    trial_args.save_strategy = "no"
    trial_args.push_to_hub = False
    searcher = trainer_class(model_init=model_init, args=trial_args, **trainer_kwargs)
    return run_search(searcher, search_args, space, metric), space


def search_metric(args: Any) -> str:
    """The metric a search optimizes: ``--search_metric``, else ``--metric_for_best_model``, else ``eval_loss``."""
    if getattr(args, "search_metric", None):
        return args.search_metric
    if args.metric_for_best_model:
        name = args.metric_for_best_model
        return name if name.startswith("eval_") else f"eval_{name}"
    return "eval_loss"


def search_layerwise_rates(trainer: Any, command: Sequence[str]) -> dict[str, float]:
    """Searches learning rate x layer decay (``--search_trials``) for a trainer set up for the real run, and sets
    the best values on ``trainer.args``, so that the run that follows trains the best configuration to the end.

    Each trial starts from a copy of ``trainer.model`` as it is now (same weights, same new head) and trains for
    ``--search_max_steps`` steps with a copy of the arguments (no checkpoints) on the trainer's data. On the main
    process it writes ``search_results.json`` and ``search_heatmap.png`` into ``--output_dir`` and logs the
    command line that trains the best configuration without searching. All ranks run it and end with the same
    values.

    Args:
        trainer: the trainer of the real run; its arguments carry the search flags (:class:`SearchArguments`).
        command: the command line of the run (``sys.argv``: the script first), for the command of the best one.

    Returns:
        The best trial's training arguments.
    """
    args = trainer.args
    metric = search_metric(args)
    pristine = copy.deepcopy(trainer.model).cpu()
    outcome, space = search_rates(
        lambda: copy.deepcopy(pristine),
        args,
        args,
        metric,
        train_dataset=trainer.train_dataset,
        eval_dataset=trainer.eval_dataset,
        processing_class=trainer.processing_class,
        data_collator=trainer.data_collator,
        compute_metrics=trainer.compute_metrics,
    )
    for key, value in outcome.best_params.items():
        setattr(args, key, value)
    best_command = best_command_line(command, outcome.best_params)
    if trainer.is_world_process_zero():
        write_search_results(outcome, space, args.output_dir, best_command)
        logger.warning(
            "Search: best %s %.4f with %s after %d trials; training it to the end now. Without searching: %s",
            metric,
            outcome.best_value,
            outcome.best_params,
            len(outcome.trials),
            best_command,
        )
    return outcome.best_params

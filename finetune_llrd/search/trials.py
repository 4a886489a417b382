"""The trials: ``Trainer.hyperparameter_search`` with Optuna over a :class:`~.space.SearchSpace`, and what each
trial recorded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .space import SearchArguments, SearchSpace, head_learning_rate


@dataclass
class SearchOutcome:
    """What a search found.

    Attributes:
        best_params: the training arguments of the best trial (``learning_rate``, ``layer_decay``, maybe
            ``head_learning_rate``).
        best_value: its metric.
        trials: every trial: number, state, sampled parameters, training arguments, metric, steps reached.
        metric: the metric's name.
        direction: ``maximize`` or ``minimize``.
    """

    best_params: dict[str, float]
    best_value: float
    trials: list[dict[str, Any]]
    metric: str
    direction: str


def run_search(trainer, search_args: SearchArguments, space: SearchSpace, metric: str) -> SearchOutcome:
    """Runs ``trainer.hyperparameter_search`` with Optuna over ``space``.

    Every rank must call it: rank 0 samples each trial and sends it to the others (transformers' Optuna
    backend), so all ranks train with the same parameters. Pruning (Optuna's median pruner) runs in a single
    process only: under several processes a trial pruned on rank 0 alone would leave the others waiting.

    Args:
        trainer: an ``LLRDTrainer`` built with ``model_init`` and an evaluation dataset.
        search_args: the search flags.
        space: what to sample.
        metric: the key of the evaluation metric to optimize (e.g. ``eval_accuracy``).

    Returns:
        The outcome on rank 0; on other ranks the same best parameters, with no trial list.
    """
    import optuna
    import torch.distributed as dist

    direction = search_args.direction_for(metric)
    if search_args.search_max_steps is not None:
        trainer.args.max_steps = search_args.search_max_steps
    distributed = trainer.args.world_size > 1
    storage = optuna.storages.InMemoryStorage()
    pruner = (
        optuna.pruners.NopPruner()
        if distributed
        else optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    )

    def objective(metrics: dict[str, float]) -> float:
        if metric not in metrics:
            raise KeyError(
                f"search_metric {metric!r} is not among the evaluation metrics {sorted(metrics)}; pass --search_metric."
            )
        return metrics[metric]

    best = trainer.hyperparameter_search(
        hp_space=space.suggest,
        compute_objective=objective,
        n_trials=search_args.search_trials,
        direction=direction,
        backend="optuna",
        storage=storage,
        study_name="finetune_llrd",
        sampler=optuna.samplers.TPESampler(seed=trainer.args.seed),
        pruner=pruner,
    )
    trials: list[dict[str, Any]] = []
    if best is not None:
        study = optuna.load_study(study_name="finetune_llrd", storage=storage)
        trials = [trial_record(trial, space) for trial in study.trials]
        best_params, best_value = space_params(best.hyperparameters, space), best.objective
    else:
        best_params, best_value = {}, float("nan")
    if distributed and dist.is_initialized():
        shared = [best_params, best_value]
        dist.broadcast_object_list(shared, src=0)
        best_params, best_value = shared
    return SearchOutcome(
        best_params=best_params, best_value=best_value, trials=trials, metric=metric, direction=direction
    )


def space_params(sampled: dict[str, float], space: SearchSpace) -> dict[str, float]:
    """The training arguments that a trial's sampled values stand for."""
    params = {"learning_rate": sampled["learning_rate"], "layer_decay": sampled["layer_decay"]}
    if space.head_lr_multiple is not None and "head_lr_multiple" in sampled:
        params["head_learning_rate"] = head_learning_rate(
            sampled["learning_rate"], sampled["layer_decay"], sampled["head_lr_multiple"]
        )
    return params


def trial_record(trial, space: SearchSpace) -> dict[str, Any]:
    """One trial as JSON: number, state, sampled values, training arguments, metric and steps reached."""
    steps = max(trial.intermediate_values) if trial.intermediate_values else None
    return {
        "number": trial.number,
        "state": trial.state.name,
        "sampled": dict(trial.params),
        "params": space_params(trial.params, space) if trial.params else {},
        "value": trial.value,
        "last_reported_value": trial.intermediate_values[steps] if steps is not None else None,
        "steps": steps,
    }

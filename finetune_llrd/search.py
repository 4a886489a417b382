"""A cheap search over learning rate x layer decay with Optuna, through ``Trainer.hyperparameter_search``.

Each trial trains a fresh model (``model_init``) for ``search_max_steps`` optimizer steps with one sampled
learning rate and decay (and, optionally, the head's rate as a multiple of the top block's), evaluates it at
every evaluation step, and is pruned when it falls below the median of earlier trials at the same step. The
caller then trains the best configuration to the end as a normal run. Optuna is an optional extra:
``pip install "finetune-llrd[search]"``.
"""

from __future__ import annotations

import json
import logging
import math
import shlex
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SEARCH_RESULTS_FILE = "search_results.json"
SEARCH_HEATMAP_FILE = "search_heatmap.png"
SEARCH_DIRECTIONS = ("maximize", "minimize")


@dataclass
class SearchArguments:
    """The search flags every recipe takes (``HfArgumentParser`` dataclass)."""

    search_trials: int = field(
        default=0,
        metadata={"help": "Search learning_rate x layer_decay with this many Optuna trials before the real run (0: no search)."},
    )
    search_metric: str | None = field(
        default=None,
        metadata={"help": "The evaluation metric the search optimizes, e.g. eval_accuracy. Default: --metric_for_best_model if set, else eval_loss."},
    )
    search_direction: str | None = field(
        default=None,
        metadata={"help": "maximize or minimize the metric. Default: minimize for a loss, maximize otherwise.", "choices": list(SEARCH_DIRECTIONS)},
    )
    search_max_steps: int | None = field(
        default=None,
        metadata={"help": "Optimizer steps of each trial (its budget). Default: the real run's number of steps."},
    )
    search_space: str | None = field(
        default=None,
        metadata={
            "help": "A JSON or YAML file that replaces the default space, e.g. {\"learning_rate\": {\"low\": 1e-5, "
            "\"high\": 1e-3, \"log\": true}, \"layer_decay\": {\"low\": 0.6, \"high\": 1.0}, \"head_lr_multiple\": "
            "{\"low\": 1, \"high\": 10, \"log\": true}}."
        },
    )
    search_head_lr_multiple: bool = field(
        default=False,
        metadata={"help": "Also search the head's rate as a multiple of the top block's (default space: 1 to 10, log)."},
    )

    def __post_init__(self):
        if isinstance(self.search_trials, bool) or not isinstance(self.search_trials, int) or self.search_trials < 0:
            raise ValueError(f"search_trials must be an integer >= 1 to search, or 0 for no search; got {self.search_trials!r}.")
        if self.search_max_steps is not None and self.search_max_steps < 1:
            raise ValueError(f"search_max_steps must be >= 1 (optimizer steps per trial), got {self.search_max_steps!r}.")
        if self.search_direction is not None and self.search_direction not in SEARCH_DIRECTIONS:
            raise ValueError(f"search_direction must be one of {list(SEARCH_DIRECTIONS)}, got {self.search_direction!r}.")
        if self.search_trials > 0:
            require_optuna()
            if self.search_space is not None:
                load_search_space(self.search_space)

    def direction_for(self, metric: str) -> str:
        """``search_direction``, or the natural direction of ``metric`` (minimize a loss, maximize the rest)."""
        if self.search_direction is not None:
            return self.search_direction
        return "minimize" if metric.endswith("loss") else "maximize"


def require_optuna() -> None:
    """Raises an ``ImportError`` that names the extra when Optuna is missing."""
    try:
        import optuna  # noqa: F401
    except ImportError as error:
        raise ImportError(
            'search_trials needs Optuna, an optional extra: pip install "finetune-llrd[search]" (or pip install optuna).'
        ) from error


@dataclass(frozen=True)
class SearchRange:
    """A range to sample from: ``low`` to ``high``, log-uniform when ``log``."""

    low: float
    high: float
    log: bool = False

    def check(self, name: str) -> None:
        """Raises a ``ValueError`` naming ``name`` when the range is empty or not usable."""
        for bound in (self.low, self.high):
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or not math.isfinite(bound):
                raise ValueError(f"search space field {name!r}: low and high must be finite numbers, got {self.low!r}, {self.high!r}.")
        if not self.low < self.high:
            raise ValueError(f"search space field {name!r}: the range is empty (low {self.low!r} must be below high {self.high!r}).")
        if self.log and self.low <= 0:
            raise ValueError(f"search space field {name!r}: a log range needs low > 0, got {self.low!r}.")


@dataclass(frozen=True)
class SearchSpace:
    """What the search samples.

    Attributes:
        learning_rate: the head's rate and the base of the decay.
        layer_decay: the decay; must lie in (0, 1].
        head_lr_multiple: when set, the head's rate is this multiple of the top block's rate
            (``learning_rate * layer_decay``); otherwise the head gets ``learning_rate``.
    """

    learning_rate: SearchRange
    layer_decay: SearchRange
    head_lr_multiple: SearchRange | None = None

    def __post_init__(self):
        for name in ("learning_rate", "layer_decay", "head_lr_multiple"):
            value = getattr(self, name)
            if value is not None:
                value.check(name)
        if self.learning_rate.low <= 0:
            raise ValueError(f"search space field 'learning_rate': low must be > 0, got {self.learning_rate.low!r}.")
        if self.layer_decay.low <= 0 or self.layer_decay.high > 1:
            raise ValueError(f"search space field 'layer_decay': the range must lie in (0, 1], got [{self.layer_decay.low}, {self.layer_decay.high}].")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SearchSpace:
        """A space from ``{"learning_rate": {"low": .., "high": .., "log": ..}, ...}``, checked field by field."""
        known = {"learning_rate", "layer_decay", "head_lr_multiple"}
        if not isinstance(values, dict):
            raise ValueError(f"A search space is a mapping of {sorted(known)} to ranges, got {type(values).__name__}.")
        for name in values:
            if name not in known:
                raise ValueError(f"search space: unknown field {name!r}; the fields are {sorted(known)}.")
        for name in ("learning_rate", "layer_decay"):
            if name not in values:
                raise ValueError(f"search space: field {name!r} is missing.")
        ranges = {}
        for name, spec in values.items():
            if not isinstance(spec, dict) or set(spec) - {"low", "high", "log"} or not {"low", "high"} <= set(spec):
                raise ValueError(f"search space field {name!r}: expected {{\"low\": .., \"high\": .., \"log\": true|false}}, got {spec!r}.")
            ranges[name] = SearchRange(spec["low"], spec["high"], bool(spec.get("log", False)))
        return cls(**ranges)

    def suggest(self, trial) -> dict[str, float]:
        """The training arguments of one Optuna trial: ``learning_rate``, ``layer_decay`` and, with a head
        multiple, ``head_learning_rate``."""
        params = {
            "learning_rate": trial.suggest_float("learning_rate", self.learning_rate.low, self.learning_rate.high, log=self.learning_rate.log),
            "layer_decay": trial.suggest_float("layer_decay", self.layer_decay.low, self.layer_decay.high, log=self.layer_decay.log),
        }
        if self.head_lr_multiple is not None:
            multiple = trial.suggest_float("head_lr_multiple", self.head_lr_multiple.low, self.head_lr_multiple.high, log=self.head_lr_multiple.log)
            params["head_learning_rate"] = head_learning_rate(params["learning_rate"], params["layer_decay"], multiple)
        return params


def head_learning_rate(learning_rate: float, layer_decay: float, multiple: float) -> float:
    """The head's rate as ``multiple`` times the top block's rate (``learning_rate * layer_decay``)."""
    return multiple * learning_rate * layer_decay


def load_search_space(path: str | Path) -> SearchSpace:
    """Reads a search space from a JSON or YAML file (by extension; ``.yaml``/``.yml`` need PyYAML)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"search_space: no file at {str(path)!r}.")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        values = yaml.safe_load(text)
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"search_space: {path} is not valid JSON ({error}).") from error
    return SearchSpace.from_dict(values)


def default_search_space(num_parameters: int, head_lr_multiple: bool = False) -> SearchSpace:
    """The default space: a log-uniform learning rate over a range that suits the model's size, and a decay
    in [0.5, 1.0].

    Args:
        num_parameters: the model's parameter count (smaller models take larger rates).
        head_lr_multiple: also search the head's rate as a multiple (1 to 10, log) of the top block's.

    Returns:
        Up to 30M parameters 2e-5 to 1e-3; up to 150M 1e-5 to 3e-4; larger 5e-6 to 1e-4.
    """
    if num_parameters <= 30_000_000:
        rate = SearchRange(2e-5, 1e-3, log=True)
    elif num_parameters <= 150_000_000:
        rate = SearchRange(1e-5, 3e-4, log=True)
    else:
        rate = SearchRange(5e-6, 1e-4, log=True)
    multiple = SearchRange(1.0, 10.0, log=True) if head_lr_multiple else None
    return SearchSpace(learning_rate=rate, layer_decay=SearchRange(0.5, 1.0), head_lr_multiple=multiple)


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
    pruner = optuna.pruners.NopPruner() if distributed else optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)

    def objective(metrics: dict[str, float]) -> float:
        if metric not in metrics:
            raise KeyError(f"search_metric {metric!r} is not among the evaluation metrics {sorted(metrics)}; pass --search_metric.")
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
    return SearchOutcome(best_params=best_params, best_value=best_value, trials=trials, metric=metric, direction=direction)


def space_params(sampled: dict[str, float], space: SearchSpace) -> dict[str, float]:
    """The training arguments that a trial's sampled values stand for."""
    params = {"learning_rate": sampled["learning_rate"], "layer_decay": sampled["layer_decay"]}
    if space.head_lr_multiple is not None and "head_lr_multiple" in sampled:
        params["head_learning_rate"] = head_learning_rate(sampled["learning_rate"], sampled["layer_decay"], sampled["head_lr_multiple"])
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


def write_search_results(outcome: SearchOutcome, space: SearchSpace, output_dir: str | Path, command: str) -> dict[str, Path]:
    """Writes ``search_results.json`` (every trial) and ``search_heatmap.png`` (the metric over lr x decay).

    Args:
        outcome: what :func:`run_search` returned on rank 0.
        space: the space searched.
        output_dir: the run's output directory.
        command: the command line that reproduces the best configuration.

    Returns:
        ``{"json": path, "png": path}`` (no ``png`` when matplotlib is missing).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "metric": outcome.metric,
        "direction": outcome.direction,
        "space": asdict(space),
        "best_params": outcome.best_params,
        "best_value": outcome.best_value,
        "best_command": command,
        "trials": outcome.trials,
    }
    paths = {"json": output_dir / SEARCH_RESULTS_FILE}
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.warning("matplotlib is not installed: no %s (pip install matplotlib).", SEARCH_HEATMAP_FILE)
        return paths
    paths["png"] = output_dir / SEARCH_HEATMAP_FILE
    plot_search(outcome, paths["png"])
    return paths


def plot_search(outcome: SearchOutcome, path: Path) -> None:
    """Each trial at its (learning rate, decay), coloured by its metric (the last reported value of a pruned
    trial, drawn hollow); the best trial starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [trial for trial in outcome.trials if trial["params"] and (trial["value"] is not None or trial["last_reported_value"] is not None)]
    figure, axis = plt.subplots(figsize=(6.4, 4.6))
    if points:
        values = [trial["value"] if trial["value"] is not None else trial["last_reported_value"] for trial in points]
        low, high = min(values), max(values)
        norm = matplotlib.colors.Normalize(vmin=low, vmax=high if high > low else low + 1e-9)
        for trial, value in zip(points, values):
            complete = trial["state"] == "COMPLETE"
            color = plt.cm.viridis(norm(value))
            axis.scatter(
                trial["params"]["learning_rate"], trial["params"]["layer_decay"], s=90,
                facecolors=color if complete else "none", edgecolors=color, linewidths=1.5,
            )
            axis.annotate(f"{value:.3g}", (trial["params"]["learning_rate"], trial["params"]["layer_decay"]), fontsize=7, xytext=(4, 4), textcoords="offset points")
        figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axis, label=outcome.metric)
        if outcome.best_params:
            axis.scatter(outcome.best_params["learning_rate"], outcome.best_params["layer_decay"], marker="*", s=260, color="red", label="best")
            axis.legend(fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("learning_rate (the head's rate)")
    axis.set_ylabel("layer_decay")
    axis.set_title(f"{len(outcome.trials)} trials, {outcome.direction} {outcome.metric} (hollow: pruned)")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


SEARCH_FLAGS = ("--search_trials", "--search_metric", "--search_direction", "--search_max_steps", "--search_space", "--search_head_lr_multiple")
TUNED_FLAGS = ("--learning_rate", "--layer_decay", "--head_learning_rate")


def best_command_line(argv: Sequence[str], best_params: dict[str, float], program: str = "python") -> str:
    """The command line that trains the best configuration without searching: ``argv`` without the search
    flags and the tuned flags, plus the best values.

    Args:
        argv: the original command (``sys.argv``: the script first).
        best_params: :attr:`SearchOutcome.best_params`.
        program: what runs the script.

    Returns:
        A shell command line.
    """
    kept: list[str] = []
    skip_value = False
    for item in argv[1:]:
        if skip_value:
            skip_value = False
            if not item.startswith("--"):
                continue
        name = item.split("=", 1)[0]
        if name in SEARCH_FLAGS or name in TUNED_FLAGS:
            skip_value = "=" not in item
            continue
        kept.append(item)
    tuned = [part for key, value in best_params.items() for part in (f"--{key}", f"{value:.6g}")]
    return shlex.join([program, argv[0], *kept, *tuned])

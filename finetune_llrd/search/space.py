"""What the lr x layer-decay search samples, and the search flags every recipe takes (``--search_trials``, ...)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._setting_files import read_setting_file
from ..import_utils import is_optuna_available


SEARCH_DIRECTIONS = ("maximize", "minimize")


@dataclass
class SearchArguments:
    """The search flags every recipe takes (``HfArgumentParser`` dataclass)."""

    search_trials: int = field(
        default=0,
        metadata={
            "help": "Search learning_rate x layer_decay with this many Optuna trials before the real run (0: no search)."
        },
    )
    search_metric: str | None = field(
        default=None,
        metadata={
            "help": "The evaluation metric the search optimizes, e.g. eval_accuracy. Default: --metric_for_best_model if set, else eval_loss."
        },
    )
    search_direction: str | None = field(
        default=None,
        metadata={
            "help": "maximize or minimize the metric. Default: minimize for a loss, maximize otherwise.",
            "choices": list(SEARCH_DIRECTIONS),
        },
    )
    search_max_steps: int | None = field(
        default=None,
        metadata={"help": "Optimizer steps of each trial (its budget). Default: the real run's number of steps."},
    )
    search_space: str | None = field(
        default=None,
        metadata={
            "help": 'A JSON or YAML file that replaces the default space, e.g. {"learning_rate": {"low": 1e-5, '
            '"high": 1e-3, "log": true}, "layer_decay": {"low": 0.6, "high": 1.0}, "head_lr_multiple": '
            '{"low": 1, "high": 10, "log": true}}.'
        },
    )
    search_head_lr_multiple: bool = field(
        default=False,
        metadata={
            "help": "Also search the head's rate as a multiple of the top block's (default space: 1 to 10, log)."
        },
    )

    def __post_init__(self):
        if isinstance(self.search_trials, bool) or not isinstance(self.search_trials, int) or self.search_trials < 0:
            raise ValueError(
                f"search_trials must be an integer >= 1 to search, or 0 for no search; got {self.search_trials!r}."
            )
        if self.search_max_steps is not None and self.search_max_steps < 1:
            raise ValueError(
                f"search_max_steps must be >= 1 (optimizer steps per trial), got {self.search_max_steps!r}."
            )
        if self.search_direction is not None and self.search_direction not in SEARCH_DIRECTIONS:
            raise ValueError(
                f"search_direction must be one of {list(SEARCH_DIRECTIONS)}, got {self.search_direction!r}."
            )
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
    if not is_optuna_available():
        raise ImportError(
            'search_trials needs Optuna, an optional extra: pip install "finetune-llrd[search]" (or pip install optuna).'
        )


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
                raise ValueError(
                    f"search space field {name!r}: low and high must be finite numbers, got {self.low!r}, {self.high!r}."
                )
        if not self.low < self.high:
            raise ValueError(
                f"search space field {name!r}: the range is empty (low {self.low!r} must be below high {self.high!r})."
            )
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
            raise ValueError(
                f"search space field 'layer_decay': the range must lie in (0, 1], got [{self.layer_decay.low}, {self.layer_decay.high}]."
            )

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
                raise ValueError(
                    f'search space field {name!r}: expected {{"low": .., "high": .., "log": true|false}}, got {spec!r}.'
                )
            ranges[name] = SearchRange(spec["low"], spec["high"], bool(spec.get("log", False)))
        return cls(**ranges)

    def suggest(self, trial) -> dict[str, float]:
        """The training arguments of one Optuna trial: ``learning_rate``, ``layer_decay`` and, with a head
        multiple, ``head_learning_rate``."""
        params = {
            "learning_rate": trial.suggest_float(
                "learning_rate", self.learning_rate.low, self.learning_rate.high, log=self.learning_rate.log
            ),
            "layer_decay": trial.suggest_float(
                "layer_decay", self.layer_decay.low, self.layer_decay.high, log=self.layer_decay.log
            ),
        }
        if self.head_lr_multiple is not None:
            multiple = trial.suggest_float(
                "head_lr_multiple",
                self.head_lr_multiple.low,
                self.head_lr_multiple.high,
                log=self.head_lr_multiple.log,
            )
            params["head_learning_rate"] = head_learning_rate(params["learning_rate"], params["layer_decay"], multiple)
        return params


def head_learning_rate(learning_rate: float, layer_decay: float, multiple: float) -> float:
    """The head's rate as ``multiple`` times the top block's rate (``learning_rate * layer_decay``)."""
    return multiple * learning_rate * layer_decay


def load_search_space(path: str | Path) -> SearchSpace:
    """Reads a search space from a JSON or YAML file (by extension; ``.yaml``/``.yml`` need PyYAML)."""
    return SearchSpace.from_dict(read_setting_file(str(path), "search_space"))


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

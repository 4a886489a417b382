"""What a study is: arms x a grid of rates x paired seeds, declared once in ``benchmarks/studies/<name>.py``.

A study file holds ``STUDY = Study(...)``: the executor that runs one configuration (``Recipe``: a recipe of
``recipes/`` in a subprocess; ``Classification``: a text or image classifier trained in this process), the arms
(name -> the arm's settings, in the executor's terms; the first arm is the reference of the paired
differences), each arm's grid and the seeds, the metric that is reported, and the rule that chooses each arm's
rate: on which metric (the reported split, or a selection split) and over which seeds; and where it is reported:
the section of ``report.py``'s part of BENCHMARKS.md it joins (``section``, :mod:`engine.sections`), or none, to
be reported on its own between its markers.
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.sections import section_named


STUDIES_DIR = Path(__file__).resolve().parent.parent / "studies"
CHOICE_SEEDS = ("grid seeds", "common seeds")


@dataclass(frozen=True)
class Point:
    """One point of an arm's grid: a learning rate and the settings the point adds to the arm's (e.g. a decay).

    Attributes:
        learning_rate: the run's ``--learning_rate`` (the head's, for layer-wise arms).
        settings: ``(name, value)`` pairs the point sets beside the rate, e.g. ``(("layer_decay", 0.8),)``.
    """

    learning_rate: float
    settings: tuple[tuple[str, Any], ...] = ()

    @property
    def key(self) -> str:
        """The point in a run id: ``lr0.0002`` or ``lr0.0002__layer_decay0.8``."""
        return f"lr{self.learning_rate:g}" + "".join(f"__{name}{number(value)}" for name, value in self.settings)

    def as_dict(self) -> dict[str, Any]:
        """``{"learning_rate": ..., **settings}``."""
        return {"learning_rate": self.learning_rate, **dict(self.settings)}

    @classmethod
    def from_dict(cls, point: dict[str, Any]) -> Point:
        """The point :meth:`as_dict` wrote."""
        return cls(
            point["learning_rate"], tuple((name, value) for name, value in point.items() if name != "learning_rate")
        )


def number(value: Any) -> str:
    """A setting as a run id writes it: ``0.8``, ``3e-05``, ``stage``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def grid(rates: tuple[float, ...], **axes: tuple[Any, ...]) -> tuple[Point, ...]:
    """Every rate with every combination of ``axes`` (the axes outer, in order; the rates inner), e.g.
    ``grid((2e-4, 4e-4), layer_decay=(0.8, 0.9))``."""
    names = list(axes)
    return tuple(
        Point(rate, tuple(zip(names, values))) for values in itertools.product(*axes.values()) for rate in rates
    )


def as_point(rate: float | Point) -> Point:
    """A grid entry as a :class:`Point` (a bare rate is a point without settings)."""
    return rate if isinstance(rate, Point) else Point(float(rate))


@dataclass(frozen=True)
class Study:
    """One study.

    Attributes:
        name: the study's name, its file's stem (its runs go to ``benchmarks/results/studies/<name>/``).
        executor: what runs one configuration and says which of its arguments decide the result.
        arms: arm name -> its settings in the executor's terms (``Recipe``: extra arguments; ``Classification``:
            a dict); the first arm is the reference of the paired differences.
        learning_rates: the grid of every arm: rates, or :class:`Point` s for grids over more than the rate.
        metric: the key of a run's ``metrics`` that is reported.
        greater_is_better: whether a larger ``metric`` is better.
        arm_learning_rates: arm name -> its own grid, replacing ``learning_rates`` for that arm.
        grid_seeds: the seeds that run every point of every arm's grid.
        seeds: every seed; those beyond ``grid_seeds`` run each arm at its chosen point only.
        choose_on: the metric each arm's point is chosen on; empty: ``metric`` (the split that is reported, as
            transformers' examples report ``eval_*`` of the run they tuned); ``select_score``: a selection split
            that is not reported.
        choice_seeds: ``grid seeds``: the choice is the best mean over ``grid_seeds``; ``common seeds``: over
            every seed that all points of the arm's grid have run (``grid_seeds`` and any seed run beyond them),
            as the evidence studies chose.
        other_metrics: keys of ``metrics`` reported beside ``metric`` (each arm's mean at its chosen point).
        rates_on_every_seed: arm -> points of its grid that also run on every seed besides its chosen one, each
            reported as a row of its own; they play no part in the choice.
        search_trials: trials of the lr x decay search run on seed 0 after the runs (0: none).
        title: the study's heading in BENCHMARKS.md (an evidence study's: the start of its ``####`` heading).
        caveats: what a reader must know beside the figures.
        section: the section of ``report.py``'s part of BENCHMARKS.md the study joins, a name of
            :data:`engine.sections.SECTIONS` (``quality``, ``quality_adaptive``, ``evidence``); empty: the study is
            reported on its own, by ``python benchmarks/study.py report <name> --update BENCHMARKS.md`` between
            its markers (every recipe study).
        section_order: the study's place in its section: ascending, then by name.
        search_grid: the study whose lr x decay grid its search is measured against; empty: its own.
    """

    name: str
    executor: Any
    arms: dict[str, Any]
    learning_rates: tuple[float | Point, ...]
    metric: str
    greater_is_better: bool = True
    arm_learning_rates: dict[str, tuple[float | Point, ...]] = field(default_factory=dict)
    grid_seeds: tuple[int, ...] = (0,)
    seeds: tuple[int, ...] = (0, 1, 2)
    choose_on: str = ""
    choice_seeds: str = "grid seeds"
    other_metrics: tuple[str, ...] = ()
    rates_on_every_seed: dict[str, tuple[float | Point, ...]] = field(default_factory=dict)
    search_trials: int = 0
    title: str = ""
    caveats: str = ""
    section: str = ""
    section_order: int = 0
    search_grid: str = ""

    def __post_init__(self):
        if not self.arms:
            raise ValueError(f"Study {self.name} has no arms.")
        if self.section:
            try:
                section_named(self.section)
            except ValueError as error:
                raise ValueError(f"Study {self.name}: {error}") from None
        unknown = set(self.arm_learning_rates) - set(self.arms)
        if unknown:
            raise ValueError(f"Study {self.name}: arm_learning_rates names arms it does not have: {sorted(unknown)}.")
        for arm, rates in self.rates_on_every_seed.items():
            if arm not in self.arms or not {as_point(rate) for rate in rates} <= set(self.points(arm)):
                raise ValueError(
                    f"Study {self.name}: rates_on_every_seed names {arm!r} {rates}, not an arm and rates of its grid."
                )
        if not set(self.grid_seeds) <= set(self.seeds):
            raise ValueError(f"Study {self.name}: grid_seeds {self.grid_seeds} must be among seeds {self.seeds}.")
        if self.choice_seeds not in CHOICE_SEEDS:
            raise ValueError(
                f"Study {self.name}: choice_seeds must be one of {CHOICE_SEEDS}, not {self.choice_seeds!r}."
            )

    def points(self, arm: str) -> tuple[Point, ...]:
        """The grid of ``arm``."""
        return tuple(as_point(rate) for rate in self.arm_learning_rates.get(arm, self.learning_rates))

    def every_seed_points(self, arm: str) -> tuple[Point, ...]:
        """The points of ``arm`` that run on every seed besides its chosen one."""
        return tuple(as_point(rate) for rate in self.rates_on_every_seed.get(arm, ()))

    @property
    def reference_arm(self) -> str:
        return next(iter(self.arms))

    @property
    def choice_metric(self) -> str:
        """The metric each arm's point is chosen on."""
        return self.choose_on or self.metric


def load_study(name: str, studies_dir: Path = STUDIES_DIR) -> Study:
    """The ``STUDY`` declared in ``<studies_dir>/<name>.py``.

    Raises:
        ValueError: if there is no such file, or it declares no ``STUDY``.
    """
    path = studies_dir / f"{name}.py"
    if not path.is_file():
        raise ValueError(
            f"No study {name!r}: {path} does not exist. Known studies: {', '.join(study_names(studies_dir)) or 'none'}."
        )
    spec = importlib.util.spec_from_file_location(f"studies.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    study = getattr(module, "STUDY", None)
    if not isinstance(study, Study):
        raise ValueError(f"{path} must define STUDY = Study(...).")
    if study.name != name:
        raise ValueError(f"{path} declares the study {study.name!r}: a study's name is its file's stem, {name!r}.")
    return study


def study_names(studies_dir: Path = STUDIES_DIR) -> list[str]:
    """The studies declared in ``studies_dir``."""
    return sorted(path.stem for path in studies_dir.glob("*.py") if not path.stem.startswith("_"))

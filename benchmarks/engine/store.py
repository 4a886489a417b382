"""The run store: one JSON file per run under ``benchmarks/results/studies/<study>/``, named by its run id.

A record holds the run's arm, point and seed, ``status`` (``ok`` or ``failed``), ``metrics``, the ``arguments``
that decide its result (the executor's terms), and where and when it ran (command, revision, start, wall time).
A file present is a run done: a stopped study resumes where it stopped, and several runners share the work:
on one machine each claims the run it starts (``<run id>.claim`` under ``out/studies/<study>/``, holding its
process id). A record the study does not plan, or that ran with other arguments than the study now gives (its
settings changed since), is refused: its figures would read as the current settings'.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, NamedTuple

import bench_utils

from engine.declaration import Point, Study


STUDY_RESULTS_DIR = bench_utils.RESULTS_DIR / "studies"
STUDY_OUTPUT_DIR = bench_utils.REPO_ROOT / "out" / "studies"
NOT_RUNS = ("summary.json",)
SEARCH_PREFIX = "search__"


class Run(NamedTuple):
    """One configuration of a study: an arm at a point of its grid, with a seed."""

    arm: str
    point: Point
    seed: int


def safe(name: str) -> str:
    """An arm's name as a file name writes it: ``layerwise decay=0.9`` -> ``layerwise_decay0.9``."""
    return name.replace(" ", "_").replace("=", "").replace("+", "-")


def run_id(arm: str, point: Point, seed: int) -> str:
    """The file stem of one run, e.g. ``decay0.8__lr0.0001__seed2``."""
    return f"{safe(arm)}__{point.key}__seed{seed}"


def record_run(record: dict[str, Any]) -> Run | None:
    """The run a record says it is (None when it does not say)."""
    if record.get("arm") is None or record.get("learning_rate") is None or record.get("seed") is None:
        return None
    return Run(
        record["arm"], Point(record["learning_rate"], tuple(record.get("settings", {}).items())), record["seed"]
    )


def score(record: dict[str, Any] | None, metric: str) -> float | None:
    """The run's metric, or None when the run failed or has not run."""
    if record is None or record.get("status") != "ok":
        return None
    value = record["metrics"].get(metric)
    return None if value is None or not math.isfinite(value) else float(value)


def normalized(value: Any) -> Any:
    """``value`` as JSON gives it back (tuples as lists), so that recorded and expected arguments compare."""
    return json.loads(json.dumps(value))


class RunStore:
    """The run files of one study, and the claims of the runners that share its work on this machine.

    Args:
        study: the study.
        root: the folder of every study's folder (``benchmarks/results/studies``).
        scratch: where claims and run outputs go (``out/studies``).
    """

    def __init__(self, study: Study, root: Path = STUDY_RESULTS_DIR, scratch: Path = STUDY_OUTPUT_DIR):
        self.study = study
        self.directory = root / study.name
        self.scratch = scratch / study.name

    def load(self) -> dict[str, dict[str, Any]]:
        """Every run record, by run id."""
        if not self.directory.is_dir():
            return {}
        return {
            path.stem: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(self.directory.glob("*.json"))
            if path.name not in NOT_RUNS and not path.name.startswith(SEARCH_PREFIX)
        }

    def write(self, run: Run, record: dict[str, Any]) -> Path:
        """Writes a run's record (through a partial file, so that a stopped runner leaves no half record)."""
        path = self.directory / f"{run_id(*run)}.json"
        write_json(path, record)
        return path

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Writes the study's summary (:func:`engine.summary.summarize`) to ``summary.json`` beside its runs."""
        path = self.directory / "summary.json"
        write_json(path, summary)
        return path

    def searches(self) -> list[dict[str, Any]]:
        """The study's search records (``search__trials<N>__seed0.json``)."""
        return [
            json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(self.directory.glob(f"{SEARCH_PREFIX}*.json"))
        ]

    def search_path(self, trials: int) -> Path:
        return self.directory / f"{SEARCH_PREFIX}trials{trials}__seed0.json"

    def stale(self, results: dict[str, dict[str, Any]]) -> list[str]:
        """The records the study does not plan (an arm or point not in its grids), or that ran with other
        arguments than the study now gives."""
        stale = []
        for key, record in results.items():
            run = record_run(record)
            if (
                run is None
                or run.arm not in self.study.arms
                or run.point not in self.study.points(run.arm)
                or run.seed not in self.study.seeds
                or key != run_id(*run)
                or normalized(record.get("arguments")) != normalized(self.study.executor.arguments(self.study, run))
            ):
                stale.append(key)
        return stale

    def refuse_stale(self, results: dict[str, dict[str, Any]]) -> None:
        """Raises a SystemExit naming the stale records (:meth:`stale`) and what to do with them."""
        stale = self.stale(results)
        if stale:
            raise SystemExit(
                f"{self.study.name}: {len(stale)} result file(s) in {self.directory} ran with other arguments than "
                f"benchmarks/studies/{self.study.name}.py now gives, or are not part of the study: {', '.join(stale)}. "
                "Delete them (git rm) or move them away, then run the study again; a changed setting needs new runs."
            )

    def claim_path(self, name: str) -> Path:
        """The file that says which process on this machine runs ``name`` (a run id) now."""
        return self.scratch / f"{name}.claim"

    def claimed_by_another(self, path: Path) -> bool:
        """Whether a live process other than this one holds the claim ``path`` (a stale claim is removed)."""
        try:
            pid = int(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError):
            return False
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            return False
        except PermissionError:
            pass
        return True

    def claim(self, name: str) -> bool:
        """Claims a run (or the search) for this process; False when another process claimed it first."""
        path = self.claim_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.claimed_by_another(path):
            return False
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(str(os.getpid()))
        return True

    def release(self, name: str) -> None:
        self.claim_path(name).unlink(missing_ok=True)

    def held_elsewhere(self) -> list[str]:
        """The runs that live runners other than this process hold now."""
        return [path.stem for path in self.scratch.glob("*.claim") if self.claimed_by_another(path)]


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Writes ``payload`` as indented JSON through a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)

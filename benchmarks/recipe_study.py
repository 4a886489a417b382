"""Evidence studies that run a real recipe once per configuration: a rate grid per arm, then paired seeds.

A study is declared in ``benchmarks/studies/<name>.py`` as ``STUDY = RecipeStudy(...)``: which recipe, which
real backbone, the arguments every run shares, the arms (the extra arguments of each; the first arm is the
reference), the learning-rate grid and the seeds. The protocol:

1. every arm runs every rate of its grid on the grid seeds (default: seed 0);
2. each arm's rate is the one with the best mean metric on the grid seeds;
3. every other seed runs each arm at its chosen rate. Runs with the same seed share the recipe's data
   order and head initialisation (``--seed``), so the differences between arms are paired by seed.

Each run is one subprocess of ``recipes/<recipe>`` and one JSON file in
``benchmarks/results/studies/<name>/`` (its metrics, command, revision and wall time), skipped when present:
a stopped study resumes where it stopped, several sessions can share the work, and several runners on one
machine split the missing runs between them (each claims the run it starts). A run that fails (a
diverged loss, say) leaves a file saying so, which the report counts as a failure; ``--retry-failed`` runs
it again.

    python benchmarks/recipe_study.py run qa --threads 1       # what is missing
    python benchmarks/recipe_study.py run qa --dry-run         # print the commands only
    python benchmarks/recipe_study.py report qa                # table, summary.json, heatmap
    python benchmarks/recipe_study.py report qa --update BENCHMARKS.md   # and the table into BENCHMARKS.md

The rate of each arm is chosen on the grid seeds with the same evaluation split that is reported, as
transformers' examples report ``eval_*`` of the run they tuned: the later seeds are untouched by the choice.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bench_utils
from evidence_summary import t_interval


STUDIES_DIR = bench_utils.BENCHMARKS_DIR / "studies"
STUDY_RESULTS_DIR = bench_utils.RESULTS_DIR / "studies"
STUDY_OUTPUT_DIR = bench_utils.REPO_ROOT / "out" / "studies"
DEFAULT_MODELS_DIR = bench_utils.REPO_ROOT / "out" / "models"
BUILD_SCRIPT = bench_utils.REPO_ROOT.parent / "shared" / "models" / "build.sh"
RECIPES_DIR = bench_utils.REPO_ROOT / "recipes"

# What every run of a study gets after the study's own arguments: no checkpoints, no progress bars.
RUN_SETTINGS = ("--overwrite_output_dir", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true")


@dataclass(frozen=True)
class RecipeStudy:
    """One study: a recipe, a backbone, the arms and their rate grids, the seeds and the metric.

    Attributes:
        name: the study's name (its results go to ``benchmarks/results/studies/<name>/``).
        recipe: the recipe's file name under ``recipes/``.
        model: a ``../shared/models/build.sh`` name (built into ``--models-dir`` on first use), ``minilm-l6``
            (the PyPI MiniLM), or a folder.
        common_args: arguments of every run; ``{data}`` is replaced by ``../shared/data`` and ``{models}`` by
            the models folder.
        arms: arm name -> its extra arguments; the first arm is the reference of the paired differences.
        learning_rates: the rate grid of every arm.
        metric: the key of the recipe's ``all_results.json`` that ranks the runs.
        greater_is_better: whether a larger ``metric`` is better.
        arm_learning_rates: arm name -> its own grid, replacing ``learning_rates`` for that arm.
        grid_seeds: the seeds on which each arm's rate is chosen.
        seeds: every seed that runs each arm at its chosen rate.
        caveats: what a reader must know beside the figures.
        model_arg: the recipe's flag for the model folder.
        other_metrics: keys of ``all_results.json`` reported beside ``metric`` (each arm's mean at its chosen rate),
            e.g. exact match beside F1; they play no part in choosing rates.
        rates_on_every_seed: arm -> rates of its grid that also run on every seed besides its chosen rate (a rate
            the choice passed over, to see how it holds on the other seeds), each reported as a row of its own;
            they play no part in the choice.
    """

    name: str
    recipe: str
    model: str
    common_args: tuple[str, ...] | list[str]
    arms: dict[str, list[str]]
    learning_rates: tuple[float, ...]
    metric: str
    greater_is_better: bool = True
    arm_learning_rates: dict[str, tuple[float, ...]] = field(default_factory=dict)
    grid_seeds: tuple[int, ...] = (0,)
    seeds: tuple[int, ...] = (0, 1, 2)
    caveats: str = ""
    model_arg: str = "--model_name_or_path"
    other_metrics: tuple[str, ...] = ()
    rates_on_every_seed: dict[str, tuple[float, ...]] = field(default_factory=dict)

    def __post_init__(self):
        if not self.arms:
            raise ValueError(f"Study {self.name} has no arms.")
        unknown = set(self.arm_learning_rates) - set(self.arms)
        if unknown:
            raise ValueError(f"Study {self.name}: arm_learning_rates names arms it does not have: {sorted(unknown)}.")
        for arm, rates in self.rates_on_every_seed.items():
            if arm not in self.arms or not set(rates) <= set(self.rates(arm)):
                raise ValueError(
                    f"Study {self.name}: rates_on_every_seed names {arm!r} {rates}, not an arm and rates of its grid."
                )
        if not set(self.grid_seeds) <= set(self.seeds):
            raise ValueError(f"Study {self.name}: grid_seeds {self.grid_seeds} must be among seeds {self.seeds}.")

    def rates(self, arm: str) -> tuple[float, ...]:
        """The rate grid of ``arm``."""
        return tuple(self.arm_learning_rates.get(arm, self.learning_rates))

    @property
    def reference_arm(self) -> str:
        return next(iter(self.arms))


def run_id(arm: str, learning_rate: float, seed: int) -> str:
    """The file stem of one run, e.g. ``decay0.8__lr0.0001__seed2``."""
    return f"{arm}__lr{learning_rate:g}__seed{seed}"


def load_study(name: str, studies_dir: Path = STUDIES_DIR) -> RecipeStudy:
    """The ``STUDY`` declared in ``<studies_dir>/<name>.py``.

    Raises:
        ValueError: if there is no such file, or it declares no ``STUDY``.
    """
    path = studies_dir / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in studies_dir.glob("*.py") if not p.stem.startswith("_"))
        raise ValueError(f"No study {name!r}: {path} does not exist. Known studies: {', '.join(known) or 'none'}.")
    spec = importlib.util.spec_from_file_location(f"studies.{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    study = getattr(module, "STUDY", None)
    if not isinstance(study, RecipeStudy):
        raise ValueError(f"{path} must define STUDY = RecipeStudy(...).")
    return study


def load_results(directory: Path) -> dict[str, dict[str, Any]]:
    """Every run file of a study, by run id."""
    if not directory.is_dir():
        return {}
    return {
        path.stem: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.json"))
        if path.name != "summary.json"
    }


def score(result: dict[str, Any] | None, metric: str) -> float | None:
    """The run's metric, or None when the run failed or has not run."""
    if result is None or result.get("status") != "ok":
        return None
    value = result["metrics"].get(metric)
    return None if value is None or not math.isfinite(value) else float(value)


def chosen_rate(study: RecipeStudy, arm: str, results: dict[str, dict[str, Any]]) -> float | None:
    """The rate of ``arm`` with the best mean metric over the grid seeds; None until its grid has finished.

    A failed run counts as the worst score; a rate whose runs all failed is never chosen.
    """
    means = {}
    for rate in study.rates(arm):
        runs = [results.get(run_id(arm, rate, seed)) for seed in study.grid_seeds]
        if any(run is None for run in runs):
            return None
        values = [score(run, study.metric) for run in runs]
        if all(value is not None for value in values):
            means[rate] = statistics.fmean(values)
    if not means:
        return None
    pick = max if study.greater_is_better else min
    return pick(means, key=lambda rate: (means[rate], -rate))


def planned_runs(study: RecipeStudy, results: dict[str, dict[str, Any]]) -> list[tuple[str, float, int]]:
    """The runs of the study that can run now, in order: the grid first, then each arm's later seeds at its
    chosen rate (only once its grid has finished). Finished runs are left out."""
    plan = [(arm, rate, seed) for seed in study.grid_seeds for arm in study.arms for rate in study.rates(arm)]
    for seed in study.seeds:
        if seed in study.grid_seeds:
            continue
        for arm in study.arms:
            rate = chosen_rate(study, arm, results)
            if rate is not None:
                plan.append((arm, rate, seed))
    for seed in study.seeds:
        for arm, rates in study.rates_on_every_seed.items():
            plan.extend((arm, rate, seed) for rate in rates if (arm, rate, seed) not in plan)
    return [run for run in plan if run_id(*run) not in results]


def model_folder(model: str, models_dir: Path) -> str:
    """The folder of the study's backbone, built with ``../shared/models/build.sh`` when missing."""
    if model == "minilm-l6":
        return bench_utils.minilm_path()
    if os.path.isdir(model):
        return model
    folder = models_dir / model
    if not (folder / "config.json").is_file():
        subprocess.run(["bash", str(BUILD_SCRIPT), str(models_dir), model], check=True, cwd=bench_utils.REPO_ROOT)
    return str(folder)


def run_command(
    study: RecipeStudy, arm: str, learning_rate: float, seed: int, model_path: str, models_dir: Path
) -> list[str]:
    """The command line of one run (from the repository root)."""
    fill = {"data": str(bench_utils.DATA_DIR), "models": str(models_dir)}
    output_dir = STUDY_OUTPUT_DIR / study.name / run_id(arm, learning_rate, seed)
    return [
        "python",
        f"recipes/{study.recipe}",
        study.model_arg,
        model_path,
        *(argument.format(**fill) for argument in study.common_args),
        *study.arms[arm],
        "--seed",
        str(seed),
        "--learning_rate",
        f"{learning_rate:g}",
        "--output_dir",
        str(output_dir),
        *RUN_SETTINGS,
    ]


def recorded_command(command: list[str]) -> str:
    """A run's command as its result file keeps it: one line, with paths relative to the repository and the data
    folder as ``../shared/data``."""
    return (
        shlex.join(command)
        .replace(str(bench_utils.REPO_ROOT) + "/", "")
        .replace(str(bench_utils.DATA_DIR), "../shared/data")
    )


def expected_arguments(study: RecipeStudy, arm: str, learning_rate: float, seed: int) -> list[str]:
    """The arguments of a run that decide its result, as its result file records them: the study's and the arm's,
    the seed and the rate (not the model and output folders, which depend on the machine)."""
    command = run_command(study, arm, learning_rate, seed, "MODEL", DEFAULT_MODELS_DIR)
    return recorded_arguments(study, {"command": recorded_command(command)})


def recorded_arguments(study: RecipeStudy, result: dict[str, Any]) -> list[str]:
    """The arguments of a finished run, read back from the command its result file records (between the model
    folder and ``--output_dir``)."""
    words = shlex.split(result.get("command", ""))
    if study.model_arg not in words or "--output_dir" not in words:
        return words
    return words[words.index(study.model_arg) + 2 : words.index("--output_dir")]


def stale_runs(study: RecipeStudy, results: dict[str, dict[str, Any]]) -> list[str]:
    """The result files that the study does not plan, or that ran with other arguments than the study now gives
    (its settings changed since): their figures would be reported as if they came from the current settings."""
    stale = []
    for key, result in results.items():
        arm, rate, seed = result.get("arm"), result.get("learning_rate"), result.get("seed")
        if (
            arm not in study.arms
            or rate is None
            or seed is None
            or key != run_id(arm, rate, seed)
            or recorded_arguments(study, result) != expected_arguments(study, arm, rate, seed)
        ):
            stale.append(key)
    return stale


def refuse_stale_runs(study: RecipeStudy, results: dict[str, dict[str, Any]]) -> None:
    """Raises a SystemExit naming the stale result files (:func:`stale_runs`) and what to do with them."""
    stale = stale_runs(study, results)
    if stale:
        directory = STUDY_RESULTS_DIR / study.name
        raise SystemExit(
            f"{study.name}: {len(stale)} result file(s) in {directory} ran with other arguments than "
            f"benchmarks/studies/{study.name}.py now gives, or are not part of the study: {', '.join(stale)}. Delete "
            "them (git rm) or move them away, then run the study again; a changed setting needs new runs."
        )


def execute(
    study: RecipeStudy, arm: str, learning_rate: float, seed: int, model_path: str, models_dir: Path, threads: int
) -> dict[str, Any]:
    """Runs one configuration and returns its result record (``status`` ``ok`` or ``failed``)."""
    command = run_command(study, arm, learning_rate, seed, model_path, models_dir)
    output_dir = Path(command[command.index("--output_dir") + 1])
    output_dir.mkdir(parents=True, exist_ok=True)
    log_path = output_dir.parent / f"{output_dir.name}.log"
    env = os.environ | {
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
    }
    revision = bench_utils.git_revision()
    started = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        completed = subprocess.run(
            [sys.executable, *command[1:]], cwd=bench_utils.REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    record: dict[str, Any] = {
        "study": study.name,
        "arm": arm,
        "learning_rate": learning_rate,
        "seed": seed,
        "command": recorded_command(command),
        "git_revision": revision,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 1),
        "threads": threads,
        "load_average_at_end": [round(value, 2) for value in os.getloadavg()],
    }
    results_file = output_dir / "all_results.json"
    if completed.returncode == 0 and results_file.is_file():
        record |= {"status": "ok", "metrics": json.loads(results_file.read_text(encoding="utf-8"))}
    else:
        tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
        record |= {"status": "failed", "returncode": completed.returncode, "log_tail": tail}
    return record


def claim_path(study: RecipeStudy, run: tuple[str, float, int]) -> Path:
    """The file that says which process on this machine runs ``run`` now."""
    return STUDY_OUTPUT_DIR / study.name / f"{run_id(*run)}.claim"


def claimed_by_another(path: Path) -> bool:
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


def claim(path: Path) -> bool:
    """Claims a run for this process; False when another process claimed it first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if claimed_by_another(path):
        return False
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(str(os.getpid()))
    return True


def run_study(
    study: RecipeStudy,
    models_dir: Path,
    threads: int,
    dry_run: bool,
    retry_failed: bool,
    max_runs: int | None,
    poll_seconds: float = 30.0,
) -> None:
    """Runs what is missing of ``study``, one result file per run, re-planning after each run (a finished grid
    unlocks the later seeds).

    Several runners of one study on this machine share its runs: each claims the run it starts (a
    ``<run id>.claim`` file holding its process id, under ``out/studies/<study>/``) and skips the runs that live
    runners hold; when every runnable run is held (the later seeds wait for a grid that another runner is
    finishing), it waits ``poll_seconds`` and plans again.
    """
    directory = STUDY_RESULTS_DIR / study.name
    model_path = model_folder(study.model, models_dir) if not dry_run else str(models_dir / study.model)
    done = 0
    while max_runs is None or done < max_runs:
        results = load_results(directory)
        refuse_stale_runs(study, results)
        if retry_failed:
            results = {key: value for key, value in results.items() if value.get("status") == "ok"}
        plan = planned_runs(study, results)
        if dry_run:
            for arm, rate, seed in plan:
                print(shlex.join(run_command(study, arm, rate, seed, model_path, models_dir)))
            return
        free = [run for run in plan if not claimed_by_another(claim_path(study, run))]
        if not plan or not free:
            held_elsewhere = [
                path.stem for path in (STUDY_OUTPUT_DIR / study.name).glob("*.claim") if claimed_by_another(path)
            ]
            if not held_elsewhere:
                print(f"{study.name}: nothing left to run ({len(results)} runs).")
                return
            time.sleep(poll_seconds)
            continue
        run = free[0]
        if not claim(claim_path(study, run)):
            continue
        try:
            print(f"{study.name}: {run_id(*run)} ({len(plan)} runnable now)", flush=True)
            record = execute(study, *run, model_path, models_dir, threads)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / f"{run_id(*run)}.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        finally:
            claim_path(study, run).unlink(missing_ok=True)
        print(
            f"  {record['status']}: {study.metric}={score(record, study.metric)} in {record['wall_seconds']} s",
            flush=True,
        )
        retry_failed = False
        done += 1


def summarize(study: RecipeStudy, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The grid (mean over the grid seeds per arm and rate), each arm's chosen rate and its scores by seed,
    and each arm's paired difference to the reference arm over the seeds both have."""
    grid = {
        arm: {
            f"{rate:g}": _mean_or_none(
                [score(results.get(run_id(arm, rate, seed)), study.metric) for seed in study.grid_seeds]
            )
            for rate in study.rates(arm)
        }
        for arm in study.arms
    }
    arms = {arm: _rate_row(study, results, arm, chosen_rate(study, arm, results)) for arm in study.arms}
    for arm, rates in study.rates_on_every_seed.items():
        for rate in rates:
            arms[f"{arm} at {rate:g}"] = _rate_row(study, results, arm, rate)
    reference = arms[study.reference_arm]
    for arm, summary in arms.items():
        if arm == study.reference_arm:
            continue
        seeds = sorted(set(summary["by_seed"]) & set(reference["by_seed"]))
        differences = [summary["by_seed"][seed] - reference["by_seed"][seed] for seed in seeds]
        summary["paired_difference"] = {
            "seeds": seeds,
            "mean": statistics.fmean(differences) if differences else None,
            "interval_95": t_interval(differences),
        }
    return {
        "study": study.name,
        "recipe": study.recipe,
        "model": study.model,
        "metric": study.metric,
        "other_metrics": list(study.other_metrics),
        "greater_is_better": study.greater_is_better,
        "reference_arm": study.reference_arm,
        "grid_seeds": list(study.grid_seeds),
        "seeds": list(study.seeds),
        "grid": grid,
        "arms": arms,
        "runs": len(results),
        "failed_runs": sorted(key for key, value in results.items() if value.get("status") != "ok"),
        "revisions": sorted({value.get("git_revision", "unknown") for value in results.values()}),
        "caveats": study.caveats,
    }


def _rate_row(study: RecipeStudy, results: dict[str, dict[str, Any]], arm: str, rate: float | None) -> dict[str, Any]:
    """An arm's scores at one rate over the study's seeds (nothing while the rate is None: not chosen yet)."""
    by_seed, failed = {}, []
    for seed in study.seeds if rate is not None else ():
        result = results.get(run_id(arm, rate, seed))
        if result is None:
            continue
        value = score(result, study.metric)
        if value is None:
            failed.append(seed)
        else:
            by_seed[seed] = value
    values = list(by_seed.values())
    others = {
        name: _mean_or_none([score(results[run_id(arm, rate, seed)], name) for seed in by_seed]) if by_seed else None
        for name in study.other_metrics
    }
    return {
        "chosen_rate": rate,
        "by_seed": by_seed,
        "failed_seeds": failed,
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "other_metrics": others,
    }


def _mean_or_none(values: list[float | None]) -> float | None:
    return statistics.fmean(values) if values and all(value is not None for value in values) else None


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(summary: dict[str, Any]) -> str:
    """The study's tables in Markdown: the chosen rate and scores of every arm, then the grid."""
    better = "higher" if summary["greater_is_better"] else "lower"
    others = summary.get("other_metrics", [])
    lines = [
        f"{summary['study']}: `{summary['recipe']}` on `{summary['model']}`, {summary['metric']} ({better} is better), "
        f"rate chosen per arm on seed(s) {', '.join(map(str, summary['grid_seeds']))}.",
        "",
        f"| arm | chosen lr | seeds | by seed | mean | std | {''.join(f'mean {name} | ' for name in others)}"
        f"paired difference to {summary['reference_arm']} [95% interval] |",
        "|---|---|---|---|---|---|---|" + "---|" * len(others),
    ]
    for arm, row in summary["arms"].items():
        seeds = ", ".join(map(str, sorted(row["by_seed"])))
        if row["failed_seeds"]:
            seeds += f" (failed: {', '.join(map(str, row['failed_seeds']))})"
        difference = row.get("paired_difference")
        if difference is None:
            paired = "reference"
        elif difference["mean"] is None:
            paired = "-"
        else:
            interval = difference["interval_95"]
            paired = (
                f"{difference['mean']:+.4f}"
                + (f" [{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval else "")
                + f" ({len(difference['seeds'])} seeds)"
            )
        rate = "-" if row["chosen_rate"] is None else f"{row['chosen_rate']:g}"
        by_seed = ", ".join(_number(row["by_seed"][seed]) for seed in sorted(row["by_seed"])) or "-"
        other_means = "".join(f"{_number(row.get('other_metrics', {}).get(name))} | " for name in others)
        lines.append(
            f"| {arm} | {rate} | {seeds or '-'} | {by_seed} | {_number(row['mean'])} | {_number(row['std'])} | {other_means}{paired} |"
        )
    rates = sorted({rate for row in summary["grid"].values() for rate in row}, key=float)
    lines += [
        "",
        f"Grid (mean over seed(s) {', '.join(map(str, summary['grid_seeds']))}):",
        "",
        "| arm | " + " | ".join(rates) + " |",
        "|---|" + "---|" * len(rates),
    ]
    for arm, row in summary["grid"].items():
        lines.append(
            f"| {arm} | " + " | ".join(_number(row.get(rate)) if rate in row else "" for rate in rates) + " |"
        )
    if summary["failed_runs"]:
        lines += ["", f"Failed runs: {', '.join(summary['failed_runs'])}."]
    lines += ["", f"{summary['runs']} runs, revision(s) {', '.join(summary['revisions'])}."]
    if summary["caveats"]:
        lines += ["", f"Caveats: {summary['caveats']}"]
    return "\n".join(lines)


def plot_heatmap(summary: dict[str, Any], path: Path) -> None:
    """The grid as a heatmap: arms by rates, the metric in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arms = list(summary["grid"])
    rates = sorted({rate for row in summary["grid"].values() for rate in row}, key=float)
    values = np.array(
        [
            [np.nan if summary["grid"][arm].get(rate) is None else summary["grid"][arm][rate] for rate in rates]
            for arm in arms
        ]
    )
    figure, axes = plt.subplots(figsize=(1.6 + 1.1 * len(rates), 1.2 + 0.5 * len(arms)))
    image = axes.imshow(values, cmap="viridis" if summary["greater_is_better"] else "viridis_r", aspect="auto")
    axes.set_xticks(range(len(rates)), rates)
    axes.set_yticks(range(len(arms)), arms)
    axes.set_xlabel("learning rate")
    for row in range(len(arms)):
        for column in range(len(rates)):
            if not np.isnan(values[row, column]):
                axes.text(
                    column, row, f"{values[row, column]:.3f}", ha="center", va="center", color="white", fontsize=8
                )
    figure.colorbar(image, ax=axes, label=summary["metric"])
    axes.set_title(
        f"{summary['study']}: {summary['metric']}, seed(s) {', '.join(map(str, summary['grid_seeds']))}", fontsize=9
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(study: RecipeStudy, plot: bool = True) -> str:
    """Writes ``summary.json`` (and the heatmap) of a study and returns its Markdown."""
    directory = STUDY_RESULTS_DIR / study.name
    results = load_results(directory)
    refuse_stale_runs(study, results)
    summary = summarize(study, results)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if plot and any(value is not None for row in summary["grid"].values() for value in row.values()):
        plot_heatmap(summary, bench_utils.PLOTS_DIR / f"study_{study.name}.png")
    return markdown(summary)


def update_document(path: Path, study_name: str, table: str) -> None:
    """Replaces what stands between ``<!-- <study>-study results begin -->`` and ``... end -->`` in ``path``
    (BENCHMARKS.md) with ``table``.

    Raises:
        ValueError: when the file has no such markers.
    """
    begin, end = f"<!-- {study_name}-study results begin -->", f"<!-- {study_name}-study results end -->"
    text = path.read_text(encoding="utf-8")
    if text.count(begin) != 1 or text.count(end) != 1 or text.index(begin) > text.index(end):
        raise ValueError(f"{path} needs one line {begin!r} and, after it, one line {end!r} around the study's table.")
    head, rest = text.split(begin)
    path.write_text(f"{head}{begin}\n{table}\n{end}{rest.split(end, 1)[1]}", encoding="utf-8")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "action", choices=("run", "report"), help="run: the missing runs; report: tables, summary.json and heatmap."
    )
    parser.add_argument("study", help="A study of benchmarks/studies/ (its file name without .py).")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=DEFAULT_MODELS_DIR,
        help="Where build.sh puts (or has put) the real backbones.",
    )
    parser.add_argument("--threads", type=int, default=1, help="Torch threads of each run.")
    parser.add_argument(
        "--dry-run", action="store_true", help="Print the commands that would run now, and run nothing."
    )
    parser.add_argument("--retry-failed", action="store_true", help="Run failed runs again.")
    parser.add_argument("--max-runs", type=int, default=None, help="Stop after this many runs.")
    parser.add_argument(
        "--update",
        type=Path,
        default=None,
        help="report: also put the tables into this file (BENCHMARKS.md), between its lines "
        "'<!-- <study>-study results begin -->' and '<!-- <study>-study results end -->'.",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    study = load_study(args.study)
    if args.action == "run":
        # A runner stopped by SIGTERM stops its run too and drops its claim, as after Ctrl-C: subprocess.run kills
        # the recipe when an exception interrupts it.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
        run_study(study, args.models_dir, args.threads, args.dry_run, args.retry_failed, args.max_runs)
    else:
        table = report(study)
        if args.update is not None:
            update_document(args.update, study.name, table)
        print(table)


if __name__ == "__main__":
    # The study files import RecipeStudy from "recipe_study": let that be this module, not a second copy.
    sys.modules.setdefault("recipe_study", sys.modules[__name__])
    main()

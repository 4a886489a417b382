"""Runs and reports the studies declared in ``benchmarks/studies/``: arms x a rate grid x paired seeds, one result
file per run.

Each study is a declaration (``benchmarks/studies/<name>.py``, see ``benchmarks/engine``): every arm runs every
point of its grid on the grid seeds; each arm's point is chosen by the study's rule (on the reported split or a
selection split, over the grid seeds or every seed all its points have run); the other seeds run each arm at its
chosen point only. Runs with the same seed share the data order and the new head's initialisation, so the arms
are paired by seed. Each run is one JSON file in ``benchmarks/results/studies/<name>/``, skipped when present: a
stopped study resumes where it stopped, several sessions can share the work, and several runners on one machine
split the missing runs between them (each claims the run it starts). A failed run leaves a file saying so, which
the report counts as a failure; ``--retry-failed`` runs it again.

    python benchmarks/study.py list                                  # the studies, their runs and what is left
    python benchmarks/study.py run qa --threads 1                    # what is missing (a second runner shares it)
    python benchmarks/study.py run quality_sst2,quality_rte --processes 2 --threads 1
    python benchmarks/study.py run qa --dry-run                      # print the runs that would run now
    python benchmarks/study.py run vit --quick                       # the miniature: tiny models, seconds
    python benchmarks/study.py report qa --update BENCHMARKS.md      # table, summary.json, heatmap

``python benchmarks/report.py`` renders the in-process studies into BENCHMARKS.md with the timing benchmarks; a
study joins a section of it by declaring ``section`` (see ``benchmarks/engine/sections.py``), and a study without
one (every recipe study) is reported here, between its markers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bench_utils
import plots
import report
from engine import Study, load_study, study_names
from engine.plan import planned_runs
from engine.runner import Options, miniature, run_studies
from engine.store import RunStore
from engine.summary import summarize


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "action",
        choices=("run", "report", "list"),
        help="run: the missing runs; report: the study's table (and summary.json, heatmap); list: every study.",
    )
    parser.add_argument("studies", nargs="?", default="", help="Studies of benchmarks/studies/, comma-separated.")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads of each run.")
    parser.add_argument("--processes", type=int, default=1, help="Runners side by side, sharing the runs.")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (in-process studies).")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=bench_utils.DEFAULT_MODELS_DIR,
        help="Where build.sh puts (or has put) the real backbones.",
    )
    parser.add_argument("--quick", action="store_true", help="The studies' miniatures, into out/bench-quick/studies.")
    parser.add_argument("--output-dir", type=Path, default=None, help="The folder of the studies' run folders.")
    parser.add_argument("--dry-run", action="store_true", help="Print the runs that would run now, and run nothing.")
    parser.add_argument("--retry-failed", action="store_true", help="Run failed runs again.")
    parser.add_argument("--max-runs", type=int, default=None, help="Stop after this many runs (per runner).")
    parser.add_argument(
        "--update",
        type=Path,
        default=None,
        help="report: also put the table into this file (BENCHMARKS.md), between its lines "
        "'<!-- <study>-study results begin -->' and '<!-- <study>-study results end -->'.",
    )
    parser.add_argument("--no-plot", action="store_true", help="report: draw no heatmap.")
    return parser


def options(args: argparse.Namespace, argv: list[str]) -> Options:
    """The runner's options from the command line."""
    chosen = Options(
        threads=args.threads,
        models_dir=args.models_dir,
        device=args.device,
        quick=args.quick,
        dry_run=args.dry_run,
        retry_failed=args.retry_failed,
        max_runs=args.max_runs,
        command=bench_utils.command_line("study", argv),
    )
    if args.output_dir is not None:
        chosen.root, chosen.scratch = args.output_dir, args.output_dir.parent / "scratch"
    return chosen


def list_studies(chosen: Options) -> str:
    """One line per study: its executor, runs recorded and runs that can run now."""
    lines = []
    for name in study_names():
        study = load_study(name)
        what = ", ".join(f"{key} {value}" for key, value in study.executor.describe().items())
        if chosen.quick and "recipe" in study.executor.describe():
            lines.append(f"{name}: {what}; no miniature")
            continue
        study = miniature(study) if chosen.quick else study
        results = RunStore(study, chosen.root, chosen.scratch).load()
        lines.append(
            f"{name}: {what}; {len(study.arms)} arms, {len(results)} runs, {len(planned_runs(study, results))} to run now"
        )
    return "\n".join(lines)


def report_study(study: Study, store: RunStore, plot: bool = True) -> str:
    """Writes a study's ``summary.json`` (when it has runs) and a recipe study's heatmap, ``study_<name>.png``
    (with ``plot``, when its grid has a score), and returns its Markdown (:func:`report.study_section`).

    Args:
        study: the study (its miniature for a quick run).
        store: where its runs are.
        plot: whether to draw the heatmap.

    Raises:
        ValueError: when a record ran with other arguments than the study's (see :meth:`RunStore.refuse_stale`).
    """
    results = store.load()
    store.refuse_stale(results)
    summary = summarize(study, results)
    if results:
        store.write_summary(summary)
    if (
        plot
        and "recipe" in summary["executor"]
        and any(value is not None for row in summary["grid"].values() for value in row.values())
    ):
        plots.plot_grid(summary, bench_utils.PLOTS_DIR / f"study_{study.name}.png")
    return report.study_section(study, results, store.directory.parent.parent)


def main(argv: list[str] | None = None) -> str:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    chosen = options(args, argv)
    if args.action == "list":
        text = list_studies(chosen)
        print(text)
        return text
    names = [name for name in args.studies.split(",") if name]
    if not names:
        raise SystemExit(f"Name a study: {', '.join(study_names())}.")
    if args.action == "run":
        run_studies(names, chosen, args.processes)
        return ""
    tables = []
    for name in names:
        study = miniature(load_study(name)) if args.quick else load_study(name)
        table = report_study(study, RunStore(study, chosen.root, chosen.scratch), plot=not args.no_plot)
        if args.update is not None:
            report.update_document(args.update, study.name, table)
        tables.append(table)
    text = "\n\n".join(tables)
    print(text)
    return text


if __name__ == "__main__":
    main()

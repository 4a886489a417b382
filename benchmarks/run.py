"""Runs every benchmark in one process, then draws the plots.

``python benchmarks/run.py --quick`` runs each timing benchmark's miniature and the miniatures of the in-process
studies of :data:`QUICK_STUDIES` (tiny models, a few steps, the first point of each arm on seed 0; a few minutes on
2 CPU cores, as the smoke test does), into ``out/bench-quick``. Without ``--quick`` it runs the full timing benchmarks (about 40 minutes on 2 CPU cores)
and whatever the in-process studies still miss (``python benchmarks/study.py list`` says how much: hours for each
missing run of a real backbone), and writes ``benchmarks/results`` and ``benchmarks/plots/*.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bench_utils
import grouping_scale
import optimizer_step
import plots
import throughput
from engine.runner import Options, run_studies
from engine.sections import SECTIONS
from engine.views import section_studies


BENCHMARKS = {
    "grouping_scale": grouping_scale.main,
    "optimizer_step": optimizer_step.main,
    "throughput": throughput.main,
}
# The in-process studies: those that declare a section of the report (benchmarks/engine/sections.py).
STUDIES = [study.name for section in SECTIONS for study in section_studies(section)]
# The miniatures --quick runs: between them every path of the in-process executor (image and text, the probe, stage
# grouping, re-initialisation, every adaptation, the long budget, Matthews correlation, a held-out and a separate
# selection split, a curve on the report split, the search); `python benchmarks/study.py run <study> --quick` runs
# any study's.
QUICK_STUDIES = ["vit", "cnn", "rte_e5", "cola_long_e5", "quality_sst2", "quality_rte", "quality_adaptive_sst2"]


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="Run every benchmark's miniature (passed through to each)."
    )
    parser.add_argument(
        "--only",
        default=",".join([*BENCHMARKS, "studies"]),
        help="Comma-separated benchmarks to run ('studies': the in-process studies).",
    )
    parser.add_argument("--device", default="cpu", help="Passed to the benchmarks that take it (cpu or cuda).")
    parser.add_argument("--threads", type=int, default=None, help="Passed to every benchmark: torch intra-op threads.")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="Where the JSON files, study runs and plots go (default: benchmarks/results and benchmarks/plots; out/bench-quick with --quick).",
    )
    return parser


def display_path(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside (the benchmarks run from there), else absolute."""
    try:
        return str(path.resolve().relative_to(bench_utils.REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """Runs the chosen benchmarks and studies, and the plots.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        Each timing benchmark's name -> its JSON file (``studies`` -> the studies' folder).
    """
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    results_dir = args.output_dir or (bench_utils.QUICK_RESULTS_DIR if args.quick else bench_utils.RESULTS_DIR)
    plots_dir = (
        (args.output_dir / "plots")
        if args.output_dir
        else (results_dir / "plots" if args.quick else bench_utils.PLOTS_DIR)
    )
    outputs = {}
    for name in args.only.split(","):
        started = time.perf_counter()
        if name == "studies":
            options = Options(
                threads=args.threads or 1,
                device=args.device,
                quick=args.quick,
                root=results_dir / "studies",
                scratch=results_dir / "scratch",
                command=bench_utils.command_line("run", sys.argv[1:] if argv is None else argv),
            )
            run_studies(QUICK_STUDIES if args.quick else STUDIES, options)
            outputs[name] = options.root
        else:
            benchmark_argv = ["--output", display_path(results_dir / f"{name}.json")]
            if args.quick:
                benchmark_argv.append("--quick")
            if name != "grouping_scale":
                benchmark_argv += ["--device", args.device]
            if args.threads:
                benchmark_argv += ["--threads", str(args.threads)]
            BENCHMARKS[name](benchmark_argv)
            outputs[name] = results_dir / f"{name}.json"
        print(f"[{name}: {time.perf_counter() - started:.1f} s]\n")
    if "studies" in outputs:
        plots.main(
            ["--results-dir", str(results_dir), "--output-dir", str(plots_dir)] + (["--quick"] if args.quick else [])
        )
    return outputs


if __name__ == "__main__":
    main()

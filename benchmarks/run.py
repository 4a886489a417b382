"""Runs every benchmark in one process, then draws the plots.

``python benchmarks/run.py --quick`` runs each benchmark's miniature (about a minute on 2 CPU cores, as the
smoke test does); without ``--quick`` it runs the full benchmarks (about 3 hours on 2 CPU cores, most of
it the quality grid) and writes ``benchmarks/results/*.json`` and ``benchmarks/plots/*.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bench_utils
import evidence
import grouping_scale
import optimizer_step
import plots
import quality
import throughput


BENCHMARKS = {
    "grouping_scale": grouping_scale.main,
    "optimizer_step": optimizer_step.main,
    "throughput": throughput.main,
    "quality": quality.main,
    "evidence": evidence.main,
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="Run every benchmark's miniature (passed through to each)."
    )
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="Comma-separated benchmarks to run.")
    parser.add_argument("--device", default="cpu", help="Passed to the benchmarks that take it (cpu or cuda).")
    parser.add_argument("--threads", type=int, default=None, help="Passed to every benchmark: torch intra-op threads.")
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=None,
        help="Where the JSON files and plots go (default: benchmarks/results and benchmarks/plots; out/bench-quick with --quick).",
    )
    return parser


def display_path(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside (the benchmarks run from there), else absolute."""
    try:
        return str(path.resolve().relative_to(bench_utils.REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    """Runs the chosen benchmarks and the plots.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        Each benchmark's name -> its JSON file.
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
        if name == "evidence":
            benchmark_argv = ["--output-dir", display_path(results_dir / "evidence")]
            benchmark_argv += (
                ["--studies", "vit,cnn,text,adaptive,cnn-adaptive,vit-adaptive,search", "--search-trials", "2"]
                if args.quick
                else []
            )
        else:
            benchmark_argv = ["--output", display_path(results_dir / f"{name}.json")]
        if args.quick:
            benchmark_argv.append("--quick")
            if name == "quality":
                benchmark_argv += ["--adaptations", "auto_rgn", "--search-trials", "2"]
        if name != "grouping_scale":
            benchmark_argv += ["--device", args.device]
        if args.threads:
            benchmark_argv += ["--threads", str(args.threads)]
        started = time.perf_counter()
        BENCHMARKS[name](benchmark_argv)
        print(f"[{name}: {time.perf_counter() - started:.1f} s]\n")
        outputs[name] = results_dir / f"{name}.json"
    if "quality" in outputs or "evidence" in outputs:
        quality_json = outputs.get("quality", results_dir / "quality.json")
        plots.main(
            [
                "--quality",
                str(quality_json),
                "--evidence",
                str(results_dir / "evidence"),
                "--output-dir",
                str(plots_dir),
            ]
        )
    return outputs


if __name__ == "__main__":
    main()

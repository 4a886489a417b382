"""Draws the BENCHMARKS.md plots from the quality benchmark's JSON.

* ``quality_curves.png``: curve-split accuracy against step for each arm's best configuration (mean over
  seeds, band of one standard deviation), one panel per task, with the time-to-accuracy target.
* ``lr_per_depth.png``: the peak learning rate of every depth for each task's chosen layer-wise
  configuration, against the chosen uniform rate.

Run ``python benchmarks/plots.py`` after ``python benchmarks/quality.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import bench_utils

ARM_STYLE = {"uniform": {"color": "tab:blue", "label": "uniform (stock Trainer)"}, "layerwise": {"color": "tab:orange", "label": "layer-wise (LLRDTrainer)"}}


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quality", type=Path, default=bench_utils.RESULTS_DIR / "quality.json", help="The quality benchmark's JSON.")
    parser.add_argument("--output-dir", type=Path, default=bench_utils.PLOTS_DIR, help="Where the PNG files go.")
    return parser


def plot_curves(quality: dict[str, Any], path: Path) -> None:
    """Accuracy against step for both arms' best configurations, one panel per task.

    Args:
        quality: the ``results`` of the quality JSON.
        path: the PNG file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = {name: task for name, task in quality["tasks"].items() if task.get("complete")}
    figure, axes = plt.subplots(1, len(tasks), figsize=(6 * len(tasks), 4.2), squeeze=False)
    for axis, (name, task) in zip(axes[0], tasks.items()):
        arms = task["summary"]["arms"]
        for arm in ("uniform", "layerwise"):
            curve = arms[arm]["best_config_curve"]
            steps = [row[0] for row in curve]
            means = [row[1] for row in curve]
            stds = [row[2] for row in curve]
            style = ARM_STYLE[arm]
            axis.plot(steps, means, marker="o", color=style["color"], label=f"{style['label']}: {arms[arm]['best_config']}")
            axis.fill_between(steps, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], color=style["color"], alpha=0.2)
        target = arms["time_to_accuracy"]["target"]
        axis.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.3f} (uniform final mean)")
        setup = task["setup"]
        axis.set_title(f"{name}: accuracy on {setup['curve_split']} split, {len(quality['seeds'])} seeds (mean ± std)")
        axis.set_xlabel(f"optimizer step (batch {setup['batch_size']})")
        axis.set_ylabel("accuracy")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_rates(quality: dict[str, Any], path: Path) -> None:
    """The peak rate of every depth for each task's chosen layer-wise configuration.

    Args:
        quality: the ``results`` of the quality JSON.
        path: the PNG file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7.5, 4.2))
    names: list[str] = []
    for index, (name, task) in enumerate(task for task in quality["tasks"].items() if task[1].get("complete")):
        arms = task["summary"]["arms"]
        chosen = next(run for run in task["runs"] if run["label"] == arms["layerwise"]["best_config"])
        rows = chosen["lr_per_depth"]
        names = [row["block"].replace("bert.encoder.layer.", "layer ") for row in rows]
        # equal configurations of two tasks would hide each other: the first is drawn wide and pale
        axis.plot(
            [row["depth"] for row in rows], [row["lr"] for row in rows], marker="os"[index % 2], color=f"C{index}",
            linewidth=5 - 3 * (index % 2), alpha=0.5 + 0.5 * (index % 2), label=f"{name}: {arms['layerwise']['best_config']}",
        )
        uniform_lr = next(run for run in task["runs"] if run["label"] == arms["uniform"]["best_config"])["config"]["learning_rate"]
        axis.axhline(uniform_lr, color=f"C{index}", linestyle="--", linewidth=1, label=f"{name}: {arms['uniform']['best_config']}")
    axis.set_xticks(range(len(names)))
    axis.set_xticklabels(names, rotation=30, ha="right")
    axis.set_yscale("log")
    axis.set_ylabel("peak learning rate")
    axis.set_title("Learning rate per depth of the chosen configurations (real MiniLM)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> list[Path]:
    """Draws both plots.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The PNG files written.
    """
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    quality = json.loads(args.quality.read_text(encoding="utf-8"))["results"]
    paths = [args.output_dir / "quality_curves.png", args.output_dir / "lr_per_depth.png"]
    plot_curves(quality, paths[0])
    plot_rates(quality, paths[1])
    return paths


if __name__ == "__main__":
    main()

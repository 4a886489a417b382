"""Draws the BENCHMARKS.md plots from the quality benchmark's JSON.

* ``quality_curves.png``: curve-split accuracy against step for each arm's best configuration (mean over
  seeds, band of one standard deviation), one panel per task, with the time-to-accuracy target.
* ``lr_per_depth.png``: the peak learning rate of every depth for each task's chosen layer-wise
  configuration, against the chosen uniform rate.

* ``evidence_<study>_<model>_<task>_<budget>.png``: for each group of the evidence studies, the mean report
  score over learning rate x decay (a heatmap) and the selection-split curve of each arm's best rate.

Run ``python benchmarks/plots.py`` after ``python benchmarks/quality.py`` or ``python benchmarks/evidence.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import bench_utils
import evidence_summary


ARM_STYLE = {
    "uniform": {"color": "tab:blue", "label": "uniform (stock Trainer)"},
    "layerwise": {"color": "tab:orange", "label": "layer-wise (LLRDTrainer)"},
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quality", type=Path, default=bench_utils.RESULTS_DIR / "quality.json", help="The quality benchmark's JSON."
    )
    parser.add_argument(
        "--evidence", type=Path, default=bench_utils.RESULTS_DIR / "evidence", help="The evidence studies' run files."
    )
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
            axis.plot(
                steps, means, marker="o", color=style["color"], label=f"{style['label']}: {arms[arm]['best_config']}"
            )
            axis.fill_between(
                steps,
                [m - s for m, s in zip(means, stds)],
                [m + s for m, s in zip(means, stds)],
                color=style["color"],
                alpha=0.2,
            )
        target = arms["time_to_accuracy"]["target"]
        axis.axhline(
            target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.3f} (uniform final mean)"
        )
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
            [row["depth"] for row in rows],
            [row["lr"] for row in rows],
            marker="os"[index % 2],
            color=f"C{index}",
            linewidth=5 - 3 * (index % 2),
            alpha=0.5 + 0.5 * (index % 2),
            label=f"{name}: {arms['layerwise']['best_config']}",
        )
        uniform_lr = next(run for run in task["runs"] if run["label"] == arms["uniform"]["best_config"])["config"][
            "learning_rate"
        ]
        axis.axhline(
            uniform_lr,
            color=f"C{index}",
            linestyle="--",
            linewidth=1,
            label=f"{name}: {arms['uniform']['best_config']}",
        )
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


def plot_evidence_group(key: tuple[str, str, str, str], summary: dict[str, Any], path: Path) -> None:
    """The lr x decay heatmap and the best curves of each arm of one evidence group.

    Args:
        key: ``(study, model, task, budget)``.
        summary: :func:`evidence_summary.summarize_group`'s output with ``runs_meta``.
        path: the PNG file.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = "MCC" if summary["runs_meta"]["metric"] == "matthews_correlation" else "accuracy"
    figure, (heat_axis, curve_axis) = plt.subplots(1, 2, figsize=(12, 4.4))
    grid = summary["heatmap"]
    values = [[float("nan") if value is None else value for value in row] for row in grid["scores"]]
    image = heat_axis.imshow(values, cmap="viridis", aspect="auto")
    for row_index, row in enumerate(values):
        for column_index, value in enumerate(row):
            if value == value:
                heat_axis.text(
                    column_index, row_index, f"{value:.3f}", ha="center", va="center", color="white", fontsize=9
                )
    heat_axis.set_xticks(range(len(grid["rates"])), [f"{rate:.0e}" for rate in grid["rates"]])
    heat_axis.set_yticks(
        range(len(grid["decays"])), [f"{decay:g}" + (" (uniform)" if decay == 1.0 else "") for decay in grid["decays"]]
    )
    heat_axis.set_xlabel("learning rate (the head's for layer-wise)")
    heat_axis.set_ylabel("layer decay")
    heat_axis.set_title(f"report {metric}, mean over seeds {', '.join(map(str, grid['seeds']))}")
    figure.colorbar(image, ax=heat_axis)
    for name, entry in summary["arms"].items():
        curve = entry["best_curve"]
        steps, means, stds = [row[0] for row in curve], [row[1] for row in curve], [row[2] for row in curve]
        line = curve_axis.plot(
            steps,
            means,
            marker="o",
            markersize=3,
            label=f"{name}, lr {summary['configs'][entry['best_config']]['learning_rate']:.0e}",
        )[0]
        curve_axis.fill_between(
            steps,
            [m - s for m, s in zip(means, stds)],
            [m + s for m, s in zip(means, stds)],
            color=line.get_color(),
            alpha=0.12,
        )
    curve_axis.set_xlabel("optimizer step")
    curve_axis.set_ylabel(f"selection {metric}")
    curve_axis.set_title("each arm's best rate: selection-split curve (mean ± std)")
    curve_axis.grid(alpha=0.3)
    curve_axis.legend(fontsize=7)
    study, model, task, budget = key
    figure.suptitle(f"{model} on {task} ({study} study, {budget} budget)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_evidence(directory: Path, output_dir: Path) -> list[Path]:
    """One PNG per group of the evidence studies found under ``directory``."""
    paths = []
    if not directory.is_dir():
        return paths
    for key, summary in evidence_summary.summarize_all(directory).items():
        path = output_dir / ("evidence_" + "_".join(key) + ".png")
        plot_evidence_group(key, summary, path)
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> list[Path]:
    """Draws the quality plots (when its JSON exists) and the evidence plots.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The PNG files written.
    """
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    paths = []
    if args.quality.is_file():
        quality = json.loads(args.quality.read_text(encoding="utf-8"))["results"]
        paths = [args.output_dir / "quality_curves.png", args.output_dir / "lr_per_depth.png"]
        plot_curves(quality, paths[0])
        plot_rates(quality, paths[1])
    return paths + plot_evidence(args.evidence, args.output_dir)


if __name__ == "__main__":
    main()

"""Draws the BENCHMARKS.md plots from the studies' runs (``benchmarks/results/studies``).

* ``quality_curves.png``: curve-split accuracy against step for each arm's chosen configuration of the quality
  studies (mean over seeds, band of one standard deviation), one panel per task, with the time-to-accuracy target.
* ``lr_per_depth.png``: the peak learning rate of every depth for each quality task's chosen layer-wise
  configuration, against the chosen uniform rate.
* ``evidence_<vit|cnn|text>_<model>_<task>_<budget>.png``: for each evidence study, the mean report score over
  learning rate x decay (a heatmap) and the selection-split curve of each arm's chosen rate.
* ``study_<name>.png`` (``study.py report``): a recipe study's grid, arms by rates.

The figures come from the views of :mod:`engine.views`, the ones ``report.py`` writes as Markdown, for the sections
of :data:`engine.sections.SECTIONS` that are ``plotted``. Run ``python benchmarks/plots.py`` after the studies
(``--quick`` for their miniatures).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import bench_utils
from engine.sections import SECTIONS
from engine.views import complete, evidence_view, quality_view, section_studies, study_results


ARM_STYLE = {
    "uniform": {"color": "tab:blue", "label": "uniform (stock Trainer)"},
    "layerwise": {"color": "tab:orange", "label": "layer-wise (LLRDTrainer)"},
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results-dir", type=Path, default=None, help="Where the studies' runs are (its studies/).")
    parser.add_argument("--quick", action="store_true", help="The miniatures' runs (out/bench-quick by default).")
    parser.add_argument("--output-dir", type=Path, default=bench_utils.PLOTS_DIR, help="Where the PNG files go.")
    return parser


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(figure, path: Path, dpi: int = 110) -> None:
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    pyplot().close(figure)


def band(axis, curve: list[list[float]], **style) -> None:
    """A mean curve (``[step, mean, std]`` rows) with a band of one standard deviation."""
    steps, means, stds = [row[0] for row in curve], [row[1] for row in curve], [row[2] for row in curve]
    line = axis.plot(steps, means, marker="o", **style)[0]
    axis.fill_between(
        steps,
        [m - s for m, s in zip(means, stds)],
        [m + s for m, s in zip(means, stds)],
        color=line.get_color(),
        alpha=0.2 if "color" in style else 0.12,
    )


def plot_curves(views: dict[str, dict[str, Any]], path: Path) -> None:
    """Accuracy against step for both arms' chosen configurations, one panel per task."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(views), figsize=(6 * len(views), 4.2), squeeze=False)
    for axis, (name, view) in zip(axes[0], views.items()):
        for arm in ("uniform", "layerwise"):
            best = view["arms"][arm]["best"]
            style = ARM_STYLE[arm]
            band(
                axis,
                bench_utils.mean_curve(best["runs"]),
                color=style["color"],
                label=f"{style['label']}: {best['label']}",
            )
        target = view["time_to_accuracy"]["target"]
        axis.axhline(
            target, color="grey", linestyle="--", linewidth=1, label=f"target {target:.3f} (uniform final mean)"
        )
        setup = view["setup"]
        seeds = len(view["arms"]["uniform"]["best"]["runs"])
        axis.set_title(f"{name}: accuracy on {setup['curve_split']} split, {seeds} seeds (mean ± std)")
        axis.set_xlabel(f"optimizer step (batch {setup['batch_size']})")
        axis.set_ylabel("accuracy")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="lower right")
    save(figure, path)


def plot_rates(views: dict[str, dict[str, Any]], path: Path) -> None:
    """The peak rate of every depth for each task's chosen layer-wise configuration."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7.5, 4.2))
    names: list[str] = []
    for index, (name, view) in enumerate(views.items()):
        layerwise, uniform = view["arms"]["layerwise"]["best"], view["arms"]["uniform"]["best"]
        rows = layerwise["runs"][0]["lr_per_depth"]
        names = [row["block"].replace("bert.encoder.layer.", "layer ") for row in rows]
        # equal configurations of two tasks would hide each other: the first is drawn wide and pale
        axis.plot(
            [row["depth"] for row in rows],
            [row["lr"] for row in rows],
            marker="os"[index % 2],
            color=f"C{index}",
            linewidth=5 - 3 * (index % 2),
            alpha=0.5 + 0.5 * (index % 2),
            label=f"{name}: {layerwise['label']}",
        )
        axis.axhline(
            uniform["point"]["learning_rate"],
            color=f"C{index}",
            linestyle="--",
            linewidth=1,
            label=f"{name}: {uniform['label']}",
        )
    axis.set_xticks(range(len(names)))
    axis.set_xticklabels(names, rotation=30, ha="right")
    axis.set_yscale("log")
    axis.set_ylabel("peak learning rate")
    axis.set_title("Learning rate per depth of the chosen configurations (real MiniLM)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    save(figure, path)


def heatmap(axis, values: list[list[float | None]], columns: list[str], rows: list[str], fontsize: int = 9):
    """A grid of scores with each cell's value written in it."""
    values = [[float("nan") if value is None else value for value in row] for row in values]
    image = axis.imshow(values, cmap="viridis", aspect="auto")
    for row_index, row in enumerate(values):
        for column_index, value in enumerate(row):
            if value == value:
                axis.text(
                    column_index, row_index, f"{value:.3f}", ha="center", va="center", color="white", fontsize=fontsize
                )
    axis.set_xticks(range(len(columns)), columns)
    axis.set_yticks(range(len(rows)), rows)
    return image


def plot_evidence(study, view: dict[str, Any], path: Path) -> None:
    """The lr x decay heatmap and the chosen rates' curves of each arm of one evidence study."""
    plt = pyplot()
    metric = "MCC" if view["setup"]["metric"] == "matthews_correlation" else "accuracy"
    figure, (heat_axis, curve_axis) = plt.subplots(1, 2, figsize=(12, 4.4))
    grid = view["heatmap"]
    image = heatmap(
        heat_axis,
        grid["scores"],
        [f"{rate:.0e}" for rate in grid["rates"]],
        [f"{decay:g}" + (" (uniform)" if decay == 1.0 else "") for decay in grid["decays"]],
    )
    heat_axis.set_xlabel("learning rate (the head's for layer-wise)")
    heat_axis.set_ylabel("layer decay")
    heat_axis.set_title(f"report {metric}, mean over seeds {', '.join(map(str, grid['seeds']))}")
    figure.colorbar(image, ax=heat_axis)
    for name, entry in view["arms"].items():
        best = entry["best"]
        band(
            curve_axis,
            bench_utils.mean_curve(best["runs"]),
            markersize=3,
            label=f"{name}, lr {best['point']['learning_rate']:.0e}",
        )
    curve_axis.set_xlabel("optimizer step")
    curve_axis.set_ylabel(f"selection {metric}")
    curve_axis.set_title("each arm's best rate: selection-split curve (mean ± std)")
    curve_axis.grid(alpha=0.3)
    curve_axis.legend(fontsize=7)
    executor = study.executor
    figure.suptitle(f"{executor.model_name()} on {executor.task} ({family(study)} study, {executor.budget} budget)")
    save(figure, path, dpi=100)


def family(study) -> str:
    """An evidence study's family in its figure's name and title: an image study's name (``vit``, ``cnn``), else
    ``text``."""
    return study.name if study.executor.setup().image_size else "text"


def plot_grid(summary: dict[str, Any], path: Path) -> None:
    """A recipe study's grid as a heatmap: arms by rates, the metric in each cell."""
    plt = pyplot()
    arms = list(summary["grid"])
    rates = sorted(
        {rate for row in summary["grid"].values() for rate in row}, key=lambda label: float(label.split()[0])
    )
    figure, axes = plt.subplots(figsize=(1.6 + 1.1 * len(rates), 1.2 + 0.5 * len(arms)))
    image = heatmap(
        axes, [[summary["grid"][arm].get(rate) for rate in rates] for arm in arms], rates, arms, fontsize=8
    )
    if not summary["greater_is_better"]:
        image.set_cmap("viridis_r")
    axes.set_xlabel("learning rate")
    figure.colorbar(image, ax=axes, label=summary["metric"])
    axes.set_title(
        f"{summary['study']}: {summary['metric']}, seed(s) {', '.join(map(str, summary['grid_seeds']))}", fontsize=9
    )
    save(figure, path)


def main(argv: list[str] | None = None) -> list[Path]:
    """Draws the figures of every plotted section whose studies have runs: a quality section's curves and rates per
    depth (once each of its studies is complete), an evidence study's heatmap and curves.

    Returns:
        The PNG files written.
    """
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    results_dir = args.results_dir or (bench_utils.QUICK_RESULTS_DIR if args.quick else bench_utils.RESULTS_DIR)
    paths = []
    for section in SECTIONS:
        if not section.plotted:
            continue
        studies = [(study, study_results(study, results_dir)) for study in section_studies(section, args.quick)]
        if section.view == "quality":
            views = {
                study.executor.setup().task: quality_view(study, results)
                for study, results in studies
                if results and complete(study, results)
            }
            if views:
                drawn = [args.output_dir / "quality_curves.png", args.output_dir / "lr_per_depth.png"]
                plot_curves(views, drawn[0])
                plot_rates(views, drawn[1])
                paths += drawn
            continue
        for study, results in studies:
            if results:
                executor = study.executor
                path = (
                    args.output_dir
                    / f"evidence_{family(study)}_{executor.model_name()}_{executor.task}_{executor.budget}.png"
                )
                plot_evidence(study, evidence_view(study, results), path)
                paths.append(path)
    return paths


if __name__ == "__main__":
    main()

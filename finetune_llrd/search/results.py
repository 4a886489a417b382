"""What a search leaves behind: ``search_results.json``, ``search_heatmap.png`` and the command line that trains
the best configuration without searching."""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .space import SearchSpace
from .trials import SearchOutcome


logger = logging.getLogger(__name__)

SEARCH_RESULTS_FILE = "search_results.json"
SEARCH_HEATMAP_FILE = "search_heatmap.png"


def write_search_results(
    outcome: SearchOutcome, space: SearchSpace, output_dir: str | Path, command: str
) -> dict[str, Path]:
    """Writes ``search_results.json`` (every trial) and ``search_heatmap.png`` (the metric over lr x decay).

    Args:
        outcome: what :func:`run_search` returned on rank 0.
        space: the space searched.
        output_dir: the run's output directory.
        command: the command line that reproduces the best configuration.

    Returns:
        ``{"json": path, "png": path}`` (no ``png`` when matplotlib is missing).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "metric": outcome.metric,
        "direction": outcome.direction,
        "space": asdict(space),
        "best_params": outcome.best_params,
        "best_value": outcome.best_value,
        "best_command": command,
        "trials": outcome.trials,
    }
    paths = {"json": output_dir / SEARCH_RESULTS_FILE}
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.warning("matplotlib is not installed: no %s (pip install matplotlib).", SEARCH_HEATMAP_FILE)
        return paths
    paths["png"] = output_dir / SEARCH_HEATMAP_FILE
    plot_search(outcome, paths["png"])
    return paths


def plot_search(outcome: SearchOutcome, path: Path) -> None:
    """Each trial at its (learning rate, decay), coloured by its metric (the last reported value of a pruned
    trial, drawn hollow); the best trial starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [
        trial
        for trial in outcome.trials
        if trial["params"] and (trial["value"] is not None or trial["last_reported_value"] is not None)
    ]
    figure, axis = plt.subplots(figsize=(6.4, 4.6))
    if points:
        values = [trial["value"] if trial["value"] is not None else trial["last_reported_value"] for trial in points]
        low, high = min(values), max(values)
        norm = matplotlib.colors.Normalize(vmin=low, vmax=high if high > low else low + 1e-9)
        for trial, value in zip(points, values):
            complete = trial["state"] == "COMPLETE"
            color = plt.cm.viridis(norm(value))
            axis.scatter(
                trial["params"]["learning_rate"],
                trial["params"]["layer_decay"],
                s=90,
                facecolors=color if complete else "none",
                edgecolors=color,
                linewidths=1.5,
            )
            axis.annotate(
                f"{value:.3g}",
                (trial["params"]["learning_rate"], trial["params"]["layer_decay"]),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
        figure.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=axis, label=outcome.metric)
        if outcome.best_params:
            axis.scatter(
                outcome.best_params["learning_rate"],
                outcome.best_params["layer_decay"],
                marker="*",
                s=260,
                color="red",
                label="best",
            )
            axis.legend(fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("learning_rate (the head's rate)")
    axis.set_ylabel("layer_decay")
    axis.set_title(f"{len(outcome.trials)} trials, {outcome.direction} {outcome.metric} (hollow: pruned)")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


SEARCH_FLAGS = (
    "--search_trials",
    "--search_metric",
    "--search_direction",
    "--search_max_steps",
    "--search_space",
    "--search_head_lr_multiple",
)
TUNED_FLAGS = ("--learning_rate", "--layer_decay", "--head_learning_rate")


def best_command_line(argv: Sequence[str], best_params: dict[str, float], program: str = "python") -> str:
    """The command line that trains the best configuration without searching: ``argv`` without the search
    flags and the tuned flags, plus the best values.

    Args:
        argv: the original command (``sys.argv``: the script first).
        best_params: :attr:`SearchOutcome.best_params`.
        program: what runs the script.

    Returns:
        A shell command line.
    """
    kept: list[str] = []
    skip_value = False
    for item in argv[1:]:
        if skip_value:
            skip_value = False
            if not item.startswith("--"):
                continue
        name = item.split("=", 1)[0]
        if name in SEARCH_FLAGS or name in TUNED_FLAGS:
            skip_value = "=" not in item
            continue
        kept.append(item)
    tuned = [part for key, value in best_params.items() for part in (f"--{key}", f"{value:.6g}")]
    return shlex.join([program, argv[0], *kept, *tuned])

"""Figures: the lr profile of a model before training (``finetune-llrd inspect --plot``) and the per-depth
series of a run (``finetune-llrd plot``). Needs matplotlib (``pip install 'finetune-llrd[plot]'``)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence


# The per-depth series a run logs: key prefix in the log history -> axis label.
RUN_METRICS = {"lr": "learning rate", "grad_norm": "gradient norm", "update_ratio": "update / weight norm"}


def plot_lr_profile(rows: Sequence[dict], path: str, *, title: str = "") -> None:
    """Draws lr against depth (log scale) into a PNG file.

    Args:
        rows: rows of :func:`finetune_llrd.lr_table`.
        path: the PNG file to write.
        title: the figure's title.
    """
    plt = _pyplot()
    depths = [row["depth"] for row in rows]
    rates = [row["lr"] for row in rows]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.35 * len(rows)), 4.0))
    axis.plot(depths, rates, marker="o")
    axis.set_yscale("log")
    axis.set_xlabel("depth (0 = embeddings, L+1 = head)")
    axis.set_ylabel("learning rate")
    axis.set_xticks(depths)
    axis.grid(True, which="both", alpha=0.3)
    if title:
        axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_run(run_dir: str, out_dir: str | None = None) -> list[str]:
    """Draws every per-depth series that a run logged (lr, gradient norm, update ratio) over training.

    Args:
        run_dir: an ``output_dir`` of ``LLRDTrainer``, or one of its checkpoint folders.
        out_dir: the folder for the PNG files; by default ``run_dir``.

    Returns:
        The paths written, ``{metric}_per_depth.png`` in the order of :data:`RUN_METRICS`.

    Raises:
        SystemExit: if the run has no trainer_state.json or it holds no per-depth values.
    """
    state_path = find_trainer_state(run_dir)
    with open(state_path, encoding="utf-8") as handle:
        history = json.load(handle)["log_history"]
    out_dir = out_dir or run_dir
    os.makedirs(out_dir, exist_ok=True)
    run_name = os.path.basename(os.path.abspath(run_dir))
    written = []
    for metric, label in RUN_METRICS.items():
        series = depth_series(history, metric)
        if not series:
            continue
        path = os.path.join(out_dir, f"{metric}_per_depth.png")
        plot_depth_series(series, path, ylabel=label, title=f"{label} per depth ({run_name})")
        written.append(path)
    if not written:
        raise SystemExit(
            f"{state_path} holds no per-depth values (lr/layer_XX): was the run made by LLRDTrainer with layer-wise "
            "groups (layer_decay < 1 or another layer-wise option)?"
        )
    return written


def find_trainer_state(run_dir: str) -> str:
    """The trainer_state.json of a run folder, or of its newest checkpoint.

    Raises:
        SystemExit: if there is none.
    """
    direct = os.path.join(run_dir, "trainer_state.json")
    if os.path.isfile(direct):
        return direct
    checkpoints = []
    if os.path.isdir(run_dir):
        for entry in os.listdir(run_dir):
            match = re.fullmatch(r"checkpoint-(\d+)", entry)
            if match and os.path.isfile(os.path.join(run_dir, entry, "trainer_state.json")):
                checkpoints.append((int(match.group(1)), os.path.join(run_dir, entry, "trainer_state.json")))
    if checkpoints:
        return max(checkpoints)[1]
    raise SystemExit(f"No trainer_state.json in {run_dir} or in a checkpoint-* folder inside it.")


def depth_series(history: Sequence[dict], metric: str) -> dict[str, tuple[list[int], list[float]]]:
    """``{"layer_00": (steps, values), ..., "head": (...)}`` for keys ``{metric}/...`` of a log history."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    prefix = metric + "/"
    for entry in history:
        for key, value in entry.items():
            if key.startswith(prefix) and isinstance(value, (int, float)):
                steps, values = series.setdefault(key[len(prefix) :], ([], []))
                steps.append(entry.get("step", len(steps)))
                values.append(float(value))
    return dict(sorted(series.items(), key=lambda item: (item[0] == "head", item[0])))


def plot_depth_series(series: dict, path: str, *, ylabel: str, title: str) -> None:
    """Draws one line per depth over training steps (log scale), coloured from bottom to top."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8.0, 4.5))
    colours = plt.get_cmap("viridis")
    count = max(len(series) - 1, 1)
    for index, (name, (steps, values)) in enumerate(series.items()):
        axis.plot(steps, values, color=colours(index / count), label=name, linewidth=1.2)
    if all(v > 0 for _, values in series.values() for v in values):
        axis.set_yscale("log")
    axis.set_xlabel("optimizer step")
    axis.set_ylabel(ylabel)
    axis.set_title(title)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize="x-small", ncol=2 if len(series) > 10 else 1, loc="best")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SystemExit("Plotting needs matplotlib: pip install 'finetune-llrd[plot]'") from error
    return plt

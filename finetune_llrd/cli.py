"""The ``finetune-llrd`` command line."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence

TASKS = ("auto", "sequence-classification", "image-classification", "token-classification", "causal-lm", "base")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="finetune-llrd", description="Layer-wise learning rates for Hugging Face models.")
    commands = parser.add_subparsers(dest="command", required=True)

    inspect = commands.add_parser(
        "inspect",
        help="Show the depth of every block of a model and the learning rate each gets.",
        description="One row per depth: depth, block, parameter count, lr, weight decay.",
    )
    inspect.add_argument("model", help="A local model folder or a Hub id.")
    inspect.add_argument("--layer-decay", type=float, default=0.8, help="Layer-wise decay in (0, 1] (default 0.8).")
    inspect.add_argument("--lr", type=float, default=5e-5, help="Learning rate of the head (default 5e-5).")
    inspect.add_argument("--weight-decay", type=float, default=0.01, help="Weight decay of weights (default 0.01).")
    inspect.add_argument("--head-lr", type=float, default=None, help="Learning rate of the head, if not --lr.")
    inspect.add_argument("--embedding-lr", type=float, default=None, help="Learning rate of the embeddings.")
    inspect.add_argument("--min-scale", type=float, default=0.0, help="Floor of the decayed rates, as a fraction of --lr.")
    inspect.add_argument("--grouping", choices=("block", "stage"), default="block", help="One depth per block or per stage.")
    inspect.add_argument("--task", choices=TASKS, default="auto", help="Which head to put on the model (default: from the config).")
    inspect.add_argument("--num-labels", type=int, default=None, help="Labels of a classification head (default: the config's).")
    inspect.add_argument("--from-config", action="store_true", help="Build the model from its config on the meta device: no weights are read or allocated.")
    inspect.add_argument("--json", action="store_true", help="Print the rows as a JSON array of objects.")
    inspect.add_argument("--plot", metavar="FILE.png", default=None, help="Draw lr against depth into a PNG file.")

    plot = commands.add_parser(
        "plot",
        help="Draw lr, gradient norm and update ratio per depth over training from a run's trainer_state.json.",
        description="Reads RUN_DIR/trainer_state.json (or that of the newest checkpoint-* in RUN_DIR) and writes "
        "lr_per_depth.png, plus grad_norm_per_depth.png and update_ratio_per_depth.png when the run logged them "
        "(--log_layer_grad_norms).",
    )
    plot.add_argument("run_dir", help="An output_dir of LLRDTrainer, or one of its checkpoint folders.")
    plot.add_argument("--out", default=None, help="Folder for the PNG files (default: RUN_DIR).")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "inspect":
        return _inspect(args)
    if args.command == "plot":
        return _plot_run(args)
    return 2


def _inspect(args: argparse.Namespace) -> int:
    from .layer_map import layer_map
    from .param_groups import format_lr_table, lr_table, param_groups

    model = load_model(args.model, task=args.task, num_labels=args.num_labels, from_config=args.from_config)
    layers = layer_map(model, grouping=args.grouping)
    groups = param_groups(
        model,
        lr=args.lr,
        layer_decay=args.layer_decay,
        weight_decay=args.weight_decay,
        head_learning_rate=args.head_lr,
        embedding_learning_rate=args.embedding_lr,
        layer_decay_min_scale=args.min_scale,
        layers=layers,
    )
    rows = lr_table(groups, layers)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(
            f"{args.model} ({type(model).__name__}): L={layers.num_layers} {layers.grouping}s, rule={layers.rule}, "
            f"lr={args.lr:g}, layer_decay={args.layer_decay:g}"
        )
        print(format_lr_table(rows))
    if args.plot:
        plot_lr_profile(rows, args.plot, title=f"{args.model}: layer_decay={args.layer_decay:g}")
        if not args.json:
            print(f"Plot written to {args.plot}")
    return 0


def _plot_run(args: argparse.Namespace) -> int:
    state_path = find_trainer_state(args.run_dir)
    with open(state_path, encoding="utf-8") as handle:
        history = json.load(handle)["log_history"]
    out = args.out or args.run_dir
    os.makedirs(out, exist_ok=True)
    written = []
    for metric, label in (("lr", "learning rate"), ("grad_norm", "gradient norm"), ("update_ratio", "update / weight norm")):
        series = depth_series(history, metric)
        if not series:
            continue
        path = os.path.join(out, f"{metric}_per_depth.png")
        plot_depth_series(series, path, ylabel=label, title=f"{label} per depth ({os.path.basename(os.path.abspath(args.run_dir))})")
        written.append(path)
    if not written:
        raise SystemExit(
            f"{state_path} holds no per-depth values (lr/layer_XX): was the run made by LLRDTrainer with layer-wise "
            "groups (layer_decay < 1 or another layer-wise option)?"
        )
    for path in written:
        print(path)
    return 0


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
                steps, values = series.setdefault(key[len(prefix):], ([], []))
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


def load_model(name_or_path: str, *, task: str = "auto", num_labels: int | None = None, from_config: bool = False):
    """Loads a model (or builds it from its config on the meta device) with the head of ``task``.

    Args:
        name_or_path: local folder or Hub id.
        task: one of ``TASKS``; ``auto`` picks image classification for vision configs, else sequence
            classification.
        num_labels: labels of a classification head.
        from_config: build from the config alone, on the meta device.

    Returns:
        The model.
    """
    import torch
    import transformers
    from transformers import AutoConfig

    kwargs = {} if num_labels is None else {"num_labels": num_labels}
    config = AutoConfig.from_pretrained(name_or_path, **kwargs)
    if task == "auto":
        vision = hasattr(config, "num_channels") or hasattr(getattr(config, "vision_config", None), "num_channels")
        task = "image-classification" if vision else "sequence-classification"
    auto_class = {
        "sequence-classification": transformers.AutoModelForSequenceClassification,
        "image-classification": transformers.AutoModelForImageClassification,
        "token-classification": transformers.AutoModelForTokenClassification,
        "causal-lm": transformers.AutoModelForCausalLM,
        "base": transformers.AutoModel,
    }[task]
    if from_config:
        with torch.device("meta"):
            return auto_class.from_config(config)
    try:
        return auto_class.from_pretrained(name_or_path, config=config)
    except OSError as error:
        if os.path.isdir(name_or_path):
            raise SystemExit(
                f"{name_or_path} holds a config but no model weights that transformers can read ({error}). "
                "Add --from-config to inspect the structure from the config alone, or point at a folder with "
                "model.safetensors / pytorch_model.bin."
            ) from error
        raise


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


if __name__ == "__main__":
    sys.exit(main())

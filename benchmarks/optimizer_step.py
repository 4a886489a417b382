"""Optimizer step cost: one ``optimizer.step()`` with the layer-wise groups against the stock two groups.

Both arms hold the same parameters with the same random gradients and the same weight-decay split; the
only difference is the grouping: the layer-wise arm has one group per (depth, weight-decay) pair (16 for
the 6-layer MiniLM, 28 for a 12-layer BERT-base), the stock arm two (decay / no decay), as the stock
Trainer builds. torch's AdamW is timed in its three implementations: the for-loop (``foreach=False``,
what ``adamw_torch`` runs on CPU), ``foreach=True`` and ``fused=True`` (``adamw_torch_fused``, the
Trainer's default). Steps alternate between the arms (A B B A ...), after a warm-up that creates the
optimizer state; the figure is the ratio of median step times, with the spread of the per-pair ratios.

A second table isolates the fixed cost of one more group: 326 small tensors (4,096 elements each, as many
as a 70B decoder's 163 groups x 2) are split into 2, 8, 32 and 163 groups, and the slope of the median
step time against the group count is the host-side cost per group (on a GPU, with its kernel launches).

Run ``python benchmarks/optimizer_step.py`` (CPU), ``--device cuda --dtype bfloat16`` on a GPU, or
``--quick`` for a miniature.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import bench_utils
import timing
import torch


IMPLEMENTATIONS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
ARMS = ("two_groups", "layerwise")


SIZES = {
    "warmup_steps": (5, 1, "Untimed steps per arm first"),
    "sweep_steps": (300, 3, "Timed steps per group count in the sweep"),
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = timing.build_parser(__doc__, "optimizer_step[_<device>]", SIZES)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="The parameters' dtype.")
    parser.add_argument(
        "--models",
        default=None,
        help="Comma-separated among minilm (the real 6-layer MiniLM) and bert-base (12 layers from config); default both, quick minilm.",
    )
    parser.add_argument(
        "--implementations", default=",".join(IMPLEMENTATIONS), help="Comma-separated among for-loop, foreach, fused."
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="Timed steps per arm, model and implementation (default: see default_steps; quick 4).",
    )
    parser.add_argument("--layer-decay", type=float, default=0.9, help="The layer-wise arm's decay.")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="Weight decay of decayed parameters.")
    parser.add_argument(
        "--sweep-groups", default="2,8,32,163", help="Group counts of the per-group cost sweep (empty: no sweep)."
    )
    return parser


def parse_counts(text: str) -> list[int]:
    """``"2,8,32"`` -> ``[2, 8, 32]``; an empty string gives an empty list."""
    return [int(item) for item in text.split(",") if item.strip()]


def make_model(name: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """The real pretrained MiniLM or a BERT-base from its config, with random gradients on every parameter."""
    model = timing.sequence_classifier(name).to(device=device, dtype=dtype)
    generator = torch.Generator(device="cpu").manual_seed(0)
    for param in model.parameters():
        param.grad = torch.randn(param.shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
    return model


def arm_groups(model: torch.nn.Module, layer_decay: float, weight_decay: float) -> dict[str, list[dict[str, Any]]]:
    """The parameter groups of both arms: the layer-wise groups, and the same tensors merged by weight decay.

    Returns:
        ``{"layerwise": [...], "two_groups": [...]}``.
    """
    from finetune_llrd import param_groups

    layerwise = param_groups(model, lr=5e-5, layer_decay=layer_decay, weight_decay=weight_decay)
    merged: dict[float, list[torch.nn.Parameter]] = {}
    for group in layerwise:
        merged.setdefault(group["weight_decay"], []).extend(group["params"])
    two_groups = [
        {"params": params, "lr": 5e-5, "weight_decay": decay} for decay, params in sorted(merged.items(), reverse=True)
    ]
    return {"layerwise": layerwise, "two_groups": two_groups}


def time_steps(
    optimizers: dict[str, torch.optim.Optimizer], steps: int, warmup: int, device: str
) -> dict[str, list[float]]:
    """Seconds of each ``optimizer.step()``, arms alternating A B B A ..., after ``warmup`` untimed steps each."""
    for _ in range(warmup):
        for optimizer in optimizers.values():
            optimizer.step()
    bench_utils.synchronize(device)

    def step(optimizer: torch.optim.Optimizer) -> float:
        started = time.perf_counter()
        optimizer.step()
        bench_utils.synchronize(device)
        return time.perf_counter() - started

    return timing.interleaved(
        {arm: lambda optimizer=optimizer: step(optimizer) for arm, optimizer in optimizers.items()}, steps
    )


def default_steps(model_name: str, implementation: str) -> int:
    """Timed steps per arm of a full run: about a minute of stepping for each model and implementation on 2 CPU cores."""
    steps = {"minilm": 240, "bert-base": 120}[model_name]
    return steps * 5 if implementation == "fused" else steps


def measure(model_name: str, implementation: str, args: argparse.Namespace, steps: int) -> dict[str, Any]:
    """Times both arms of one model and one AdamW implementation.

    Returns:
        Per arm the group count and the step-time spread in milliseconds; ``ratio`` (layer-wise over two
        groups) of the medians and per pair; ``extra_us_per_group``.
    """
    dtype = getattr(torch, args.dtype)
    model = make_model(model_name, args.device, dtype)
    groups = arm_groups(model, args.layer_decay, args.weight_decay)
    optimizers = {arm: torch.optim.AdamW(groups[arm], lr=5e-5, **IMPLEMENTATIONS[implementation]) for arm in ARMS}
    seconds = time_steps(optimizers, steps, args.warmup_steps, args.device)
    per_pair = [layer / two for two, layer in zip(seconds["two_groups"], seconds["layerwise"])]
    medians = {arm: bench_utils.median_and_spread(seconds[arm])["median"] for arm in ARMS}
    group_counts = {arm: len(groups[arm]) for arm in ARMS}
    extra_groups = group_counts["layerwise"] - group_counts["two_groups"]
    return {
        "model": model_name,
        "implementation": implementation,
        "num_parameters": sum(param.numel() for param in model.parameters()),
        "num_tensors": sum(1 for _ in model.parameters()),
        "groups": group_counts,
        "step_ms": {
            arm: {
                key: value * 1e3 if key != "n" else value
                for key, value in bench_utils.median_and_spread(seconds[arm]).items()
            }
            for arm in ARMS
        },
        "ratio": medians["layerwise"] / medians["two_groups"],
        "ratio_per_pair": bench_utils.median_and_spread(per_pair),
        "ratio_per_pair_median_95ci": bench_utils.bootstrap_median_interval(per_pair),
        "extra_us_per_group": (medians["layerwise"] - medians["two_groups"]) / extra_groups * 1e6,
    }


def sweep_groups(implementation: str, group_counts: list[int], args: argparse.Namespace, steps: int) -> dict[str, Any]:
    """Step time of the same 326 small tensors split into each number of groups, and the cost per group.

    Returns:
        ``step_us`` (median per group count) and ``us_per_group`` (least-squares slope).
    """
    dtype = getattr(torch, args.dtype)
    generator = torch.Generator(device="cpu").manual_seed(0)
    tensors = []
    for _ in range(326):
        param = torch.nn.Parameter(torch.randn(4096, generator=generator).to(device=args.device, dtype=dtype))
        param.grad = torch.randn(4096, generator=generator).to(device=args.device, dtype=dtype)
        tensors.append(param)
    optimizers = {}
    for count in group_counts:
        bounds = [round(index * len(tensors) / count) for index in range(count + 1)]
        groups = [
            {"params": tensors[start:end], "lr": 5e-5 * (1 + index / count)}
            for index, (start, end) in enumerate(zip(bounds, bounds[1:]))
        ]
        optimizers[str(count)] = torch.optim.AdamW(
            groups, lr=5e-5, weight_decay=args.weight_decay, **IMPLEMENTATIONS[implementation]
        )
    seconds = time_steps(optimizers, steps, args.warmup_steps, args.device)
    medians = {count: bench_utils.median_and_spread(values)["median"] * 1e6 for count, values in seconds.items()}
    xs, ys = [int(count) for count in medians], list(medians.values())
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sum((x - mean_x) ** 2 for x in xs)
    return {"implementation": implementation, "step_us": medians, "us_per_group": slope, "steps": steps}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Times every model and implementation, writes the JSON and prints the table; returns the results."""
    session = timing.start("optimizer_step", build_parser(), SIZES, argv)
    args = session.args
    models = (args.models or ("minilm" if args.quick else "minilm,bert-base")).split(",")
    rows = []
    for model_name in models:
        for implementation in args.implementations.split(","):
            steps = args.steps or (4 if args.quick else default_steps(model_name, implementation))
            rows.append(measure(model_name, implementation, args, steps))
    group_counts = parse_counts(args.sweep_groups)
    sweep = (
        [
            sweep_groups(implementation, group_counts, args, args.sweep_steps)
            for implementation in args.implementations.split(",")
        ]
        if group_counts
        else []
    )
    results = {
        "device": args.device,
        "dtype": args.dtype,
        "layer_decay": args.layer_decay,
        "rows": rows,
        "group_sweep": sweep,
    }
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    return session.finish(results, f"optimizer_step{suffix}")


if __name__ == "__main__":
    main()

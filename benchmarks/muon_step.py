"""Muon step cost: one ``LayerwiseMuon.step()`` over the layer-wise groups against torch's ``Muon`` and ``AdamW``
split by hand over the same groups (the Muon side to ``torch.optim.Muon``, the rest to ``torch.optim.AdamW``, both
stepped).

Both arms hold the same parameters (the real MiniLM, or a 12-layer BERT-base from its config) with the same random
gradients, the same groups and the same settings (momentum 0.95, Nesterov, 5 Newton-Schulz steps,
``adjust_lr_fn="match_rms_adamw"``, AdamW's for-loop as ``adamw_torch`` runs on the CPU); each keeps its own state.
Steps alternate between the arms (A B B A ...) after a warm-up that creates the state; the figure is the ratio of the
median step times, with the spread of the per-pair ratios. Goal: at most 1.05.

    python benchmarks/muon_step.py --threads 1            # CPU, both models
    python benchmarks/muon_step.py --quick                # a miniature
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import bench_utils
import timing
import torch


SIZES = {
    "warmup_steps": (3, 1, "Untimed steps per arm first"),
    "steps": (0, 3, "Timed steps per arm and model (0: minilm 40, bert-base 12, about 2 minutes each on one core)"),
}
ARMS = ("by_hand", "layerwise_muon")
MUON = {"momentum": 0.95, "nesterov": True, "ns_steps": 5, "adjust_lr_fn": "match_rms_adamw"}


def build_parser() -> argparse.ArgumentParser:
    parser = timing.build_parser(__doc__, "muon_step", SIZES)
    parser.add_argument("--models", default=None, help="Comma-separated among minilm, bert-base (default both).")
    parser.add_argument("--layer-decay", type=float, default=0.9, help="The groups' decay.")
    return parser


def optimizers(model: torch.nn.Module, layer_decay: float) -> dict[str, Any]:
    """Both arms over the same groups: ``LayerwiseMuon``, and torch's Muon and AdamW split by hand."""
    from finetune_llrd import layer_map, param_groups
    from finetune_llrd.optimizers import LayerwiseMuon, muon_groups

    layers = layer_map(model)
    groups = muon_groups(
        param_groups(model, lr=5e-5, layer_decay=layer_decay, weight_decay=0.01, layers=layers), model, layers
    )
    layerwise = LayerwiseMuon(groups, **MUON, foreach=False)

    def side(use_muon: bool) -> list[dict[str, Any]]:
        return [
            {"params": group["params"], "lr": group["lr"], "weight_decay": group["weight_decay"]}
            for group in groups
            if group["use_muon"] is use_muon
        ]

    muon, adamw = torch.optim.Muon(side(True), **MUON), torch.optim.AdamW(side(False), foreach=False)

    def by_hand() -> None:
        muon.step()
        adamw.step()

    return {
        "by_hand": by_hand,
        "layerwise_muon": layerwise.step,
        "groups": len(groups),
        "muon_tensors": sum(len(group["params"]) for group in groups if group["use_muon"]),
        "adamw_tensors": sum(len(group["params"]) for group in groups if not group["use_muon"]),
    }


DEFAULT_STEPS = {"minilm": 40, "bert-base": 12, "tiny-bert": 3}


def measure(model_name: str, args: argparse.Namespace) -> dict[str, Any]:
    steps = args.steps or DEFAULT_STEPS[model_name]
    model = timing.sequence_classifier(model_name)
    generator = torch.Generator().manual_seed(0)
    for param in model.parameters():
        param.grad = torch.randn(param.shape, generator=generator)
    arms = optimizers(model, args.layer_decay)
    for _ in range(args.warmup_steps):
        for arm in ARMS:
            arms[arm]()

    def timed(step) -> float:
        started = time.perf_counter()
        step()
        return time.perf_counter() - started

    seconds = timing.interleaved({arm: lambda step=arms[arm]: timed(step) for arm in ARMS}, steps)
    per_pair = [ours / theirs for theirs, ours in zip(seconds["by_hand"], seconds["layerwise_muon"])]
    medians = {arm: bench_utils.median_and_spread(seconds[arm])["median"] for arm in ARMS}
    return {
        "model": model_name,
        "num_parameters": sum(param.numel() for param in model.parameters()),
        "groups": arms["groups"],
        "muon_tensors": arms["muon_tensors"],
        "adamw_tensors": arms["adamw_tensors"],
        "step_ms": {arm: medians[arm] * 1e3 for arm in ARMS},
        "ratio": medians["layerwise_muon"] / medians["by_hand"],
        "ratio_per_pair": bench_utils.median_and_spread(per_pair),
        "ratio_per_pair_median_95ci": bench_utils.bootstrap_median_interval(per_pair),
        "steps": steps,
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | groups (Muon / AdamW tensors) | torch Muon + AdamW by hand, ms (median) | LayerwiseMuon, ms (median) "
        "| ratio of medians | per-pair ratio: median [95% interval] |",
        "|---|---|---:|---:|---:|---|",
    ]
    for row in rows:
        low, high = row["ratio_per_pair_median_95ci"]
        lines.append(
            f"| {row['model']} ({row['num_parameters'] / 1e6:.1f}M) | {row['groups']} ({row['muon_tensors']} / "
            f"{row['adamw_tensors']}) | {row['step_ms']['by_hand']:.1f} | {row['step_ms']['layerwise_muon']:.1f} | "
            f"**{row['ratio']:.3f}** | {row['ratio_per_pair']['median']:.3f} [{low:.3f}-{high:.3f}] |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    session = timing.start("muon_step", build_parser(), SIZES, argv)
    args = session.args
    models = (args.models or ("tiny-bert" if args.quick else "minilm,bert-base")).split(",")
    rows = [measure(model_name, args) for model_name in models]
    results = {"layer_decay": args.layer_decay, "muon": MUON, "rows": rows}
    output = args.output or bench_utils.default_output("muon_step", args.quick)
    bench_utils.write_result(output, "muon_step", session.argv, args.quick, session.machine, results, session.started)
    print(table(rows))
    return results


if __name__ == "__main__":
    main()

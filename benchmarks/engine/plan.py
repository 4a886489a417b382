"""The planner: each arm's grid on the grid seeds, each arm's point chosen by the study's rule, the other seeds at
the chosen point only.

The rule is written once (:func:`chosen_point`); what varies by study is stated in its declaration: the metric it
chooses on (``choose_on``: the reported split, or a selection split) and the seeds it averages over
(``choice_seeds``). The best mean wins; a tie goes by ``(mean, -rate)``, then to the first point of the grid: to
the lower rate when greater is better (evidence.py's rule; quality.py took the first point of its grid, which differs
only on a tie between (4e-4, decay 0.8) and (2e-4, decay 0.9)), to the higher rate when lower is better (``min`` of
the same key, recipe_study.py's rule for the SFT study's loss). Two committed choices are ties, both resolved to the
lowest rate as evidence.py resolved them: ``cola_e5``'s uniform and decay 0.9 arms (selection MCC 0.0 at every rate).
A failed run counts as the worst score: a point with a failed run among the seeds averaged is never chosen.
"""

from __future__ import annotations

import statistics
from typing import Any

from engine.declaration import Point, Study
from engine.store import Run, run_id, score


def choice_seeds(study: Study, arm: str, results: dict[str, dict[str, Any]]) -> list[int]:
    """The seeds the choice of ``arm``'s point averages over: the grid seeds, or (``common seeds``) every seed of
    the study that all points of the arm's grid have run."""
    if study.choice_seeds == "grid seeds":
        return list(study.grid_seeds)
    return [seed for seed in study.seeds if all(run_id(arm, point, seed) in results for point in study.points(arm))]


def chosen_point(study: Study, arm: str, results: dict[str, dict[str, Any]]) -> Point | None:
    """The point of ``arm`` whose mean ``study.choice_metric`` over :func:`choice_seeds` is best; None until every
    point has run on every grid seed (an arm of one point has nothing to wait for: it needs one run of it), or when
    every point has a failed run among those seeds."""
    points = study.points(arm)
    if len(points) > 1 and any(
        run_id(arm, point, seed) not in results for point in points for seed in study.grid_seeds
    ):
        return None
    seeds = choice_seeds(study, arm, results)
    if not seeds or not all(run_id(arm, point, seed) in results for point in points for seed in seeds):
        return None
    means = {}
    for point in points:
        values = [score(results[run_id(arm, point, seed)], study.choice_metric) for seed in seeds]
        if all(value is not None for value in values):
            means[point] = statistics.fmean(values)
    if not means:
        return None
    pick = max if study.greater_is_better else min
    return pick(means, key=lambda point: (means[point], -point.learning_rate))


def planned_runs(study: Study, results: dict[str, dict[str, Any]]) -> list[Run]:
    """The runs of the study that can run now, in order: the grid first, then each arm's other seeds at its chosen
    point (once its grid has finished), then the points that run on every seed. Finished runs are left out."""
    plan = [Run(arm, point, seed) for seed in study.grid_seeds for arm in study.arms for point in study.points(arm)]
    later = [seed for seed in study.seeds if seed not in study.grid_seeds]
    for seed in later:
        for arm in study.arms:
            point = chosen_point(study, arm, results)
            if point is not None:
                plan.append(Run(arm, point, seed))
    for seed in study.seeds:
        for arm in study.rates_on_every_seed:
            plan.extend(
                Run(arm, point, seed) for point in study.every_seed_points(arm) if Run(arm, point, seed) not in plan
            )
    return [run for run in plan if run_id(*run) not in results]

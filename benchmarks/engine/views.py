"""The views of the in-process studies that the renderers draw: ``report.py`` writes them as Markdown, ``plots.py``
as figures; neither computes a figure of its own, and nothing here writes a file.

* :func:`section_studies`: the studies that declare a section (:mod:`engine.sections`), in their declared order;
* :func:`quality_view`: uniform against layer-wise at one budget, each arm's configuration chosen on the selection
  split, the time to accuracy, each adaptation against its twin;
* :func:`evidence_view`: each arm at its rate chosen on the selection split, rate spans, paired differences, the
  lr x decay heatmap;
* :func:`search_comparisons`: a study's lr x decay searches against the grid they are measured on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bench_utils

from engine.classification import lr_decay_grid
from engine.declaration import Point, Study, load_study, study_names
from engine.plan import planned_runs
from engine.runner import miniature
from engine.sections import Section, section_named
from engine.store import Run, RunStore, safe
from engine.summary import mean_over, paired, rate_span, runs_of, summarize, time_to_score


def section_studies(section: Section, quick: bool = False) -> list[Study]:
    """The studies whose declaration names ``section`` (their miniatures with ``quick``), by ``section_order`` and
    then name."""
    studies = [load_study(name) for name in study_names()]
    members = sorted(
        (study for study in studies if study.section == section.name),
        key=lambda study: (study.section_order, study.name),
    )
    return [miniature(study) if quick else study for study in members]


def study_results(study: Study, results_dir: Path) -> dict[str, dict[str, Any]]:
    """The records of ``study`` under ``<results_dir>/studies`` (refused when stale)."""
    store = RunStore(study, results_dir / "studies")
    results = store.load()
    store.refuse_stale(results)
    return results


def view_of(study: Study) -> str:
    """How the study is viewed: its section's view (``quality`` or ``evidence``), or ``""`` for a study reported on
    its own."""
    return section_named(study.section).view if study.section else ""


def complete(study: Study, results: dict[str, dict[str, Any]]) -> bool:
    """Whether every run the study plans has run."""
    return not planned_runs(study, results)


def quality_label(study: Study, run: Run) -> str:
    """A quality configuration's label: ``uniform lr=1e-04``, ``layerwise lr=2e-04 decay=0.8``, with ``+<method>``
    for an adaptation."""
    settings = study.executor.settings(study, run)
    if settings["kind"] == "layerwise":
        base = f"layerwise lr={run.point.learning_rate:.0e} decay={settings['layer_decay']:g}"
    else:
        base = f"uniform lr={run.point.learning_rate:.0e}"
    return base if settings["adaptation"] == "none" else f"{base} +{settings['adaptation']}"


def label_of(study: Study):
    """The label function of the study's configurations: :func:`quality_label` for a quality study, else its
    executor's."""
    return quality_label if view_of(study) == "quality" else study.executor.label


def labelled_configurations(study: Study, results: dict[str, dict[str, Any]], label) -> list[dict[str, Any]]:
    """The study's configurations that have runs, in its order, each as :func:`engine.summary.configurations` gives
    it with its ``label`` (``label(study, run)``), ``settings``, ``runs`` (by seed), ``report`` (by seed) and
    ``select`` (by seed)."""
    configs = []
    for key, config in summarize(study, results)["configs"].items():
        run = Run(config["arm"], Point.from_dict(config["point"]), 0)
        configs.append(
            config
            | {
                "key": key,
                "label": label(study, run),
                "settings": study.executor.settings(study, run),
                "runs": runs_of(study, results, config),
                "report": config["by_seed"],
                "select": config["choice_by_seed"],
            }
        )
    return configs


def arm_order(name: str) -> tuple[int, str]:
    """Uniform first, then the probe, then the other arms alphabetically."""
    return ({"uniform": 0, "probe": 1}.get(name, 2), name)


def by_label(config: dict[str, Any]) -> str:
    """The sort key of an evidence configuration (or grid run): its label as a run id writes it."""
    return safe(config["label"]) + "__"


def evidence_view(study: Study, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One evidence study's figures: its configurations (in the order of their labels), each arm at its rate chosen
    on the selection split (with the rate span and the paired difference to uniform), and the lr x decay heatmap
    over the uniform and plain decay arms."""
    summary = summarize(study, results)
    configs = sorted(labelled_configurations(study, results, study.executor.label), key=by_label)
    by_key = {config["key"]: config for config in configs}
    arms = {}
    for name in sorted({config["arm"] for config in configs}, key=arm_order):
        row = summary["arms"][name]
        members = [config for config in configs if config["arm"] == name]
        seeds = row["chosen_on_seeds"]
        arms[name] = {
            "best": by_key[row["config"]],
            "rate_span": rate_span(
                {config["point"]["learning_rate"]: mean_over(config["report"], seeds) for config in members}
            ),
            "grid_seeds": seeds,
            "paired_difference": row.get("paired_difference"),
        }
    members = [
        config
        for config in configs
        if config["settings"]["kind"] == "uniform"
        or (
            config["settings"]["kind"] == "layerwise"
            and lr_decay_grid(config["settings"])
            and config["settings"]["layer_grouping"] == "block"
        )
    ]
    seeds = sorted(set.intersection(*(set(config["select"]) for config in members))) if members else []
    cells = {
        (config["settings"]["layer_decay"], config["point"]["learning_rate"]): mean_over(config["report"], seeds)
        for config in members
    }
    rates = sorted({rate for _, rate in cells})
    decays = sorted({decay for decay, _ in cells}, reverse=True)
    heatmap = {
        "rates": rates,
        "decays": decays,
        "scores": [[cells.get((decay, rate)) for rate in rates] for decay in decays],
        "seeds": seeds,
    }
    records = list(results.values())
    first = next(record for record in records if record.get("status") == "ok")
    return {
        "configs": configs,
        "arms": arms,
        "heatmap": heatmap,
        "seeds": sorted({record["seed"] for record in records}),
        "records": records,
        "setup": first["arguments"]["setup"],
        "steps": first["arguments"]["steps"],
        "num_blocks": first["num_blocks"],
    }


def quality_view(study: Study, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One quality study's figures: its configurations, each base arm's configuration chosen on the selection split
    with its best single run and the mean over its grid, the paired difference, the time to accuracy, and each
    adaptation against its twin (the same configuration without it) and against uniform's chosen one."""
    summary = summarize(study, results)
    configs = labelled_configurations(study, results, quality_label)
    by_key = {config["key"]: config for config in configs}
    arms = {}
    for arm in ("uniform", "layerwise"):
        members = [config for config in configs if config["arm"] == arm]
        runs = sorted((run for config in members for run in config["runs"]), key=lambda run: run["seed"])
        best = by_key[summary["arms"][arm]["config"]]
        single = max(runs, key=lambda run: run["metrics"]["report_score"])
        arms[arm] = {
            "best": best,
            "best_single": (single, next(config["label"] for config in members if single in config["runs"])),
            "grid": bench_utils.mean_and_std([run["metrics"]["report_score"] for run in runs]),
        }
    uniform, layerwise = arms["uniform"]["best"], arms["layerwise"]["best"]
    twins = {"adaptive": "uniform", "layerwise": "layerwise"}
    adaptive = [
        {
            "config": config,
            "minus_twin": paired(
                config["report"],
                next(
                    twin["report"]
                    for twin in configs
                    if twin["arm"] == twins[config["settings"]["kind"]] and twin["point"] == config["point"]
                ),
            ),
            "minus_uniform_best": paired(config["report"], uniform["report"]),
        }
        for config in configs
        if config["settings"]["adaptation"] != "none"
    ]
    return {
        "configs": configs,
        "arms": arms,
        "paired_difference": paired(layerwise["report"], uniform["report"]),
        "time_to_accuracy": time_to_score(
            uniform["runs"], {"uniform": uniform["runs"], "layerwise": layerwise["runs"]}
        ),
        "adaptive": adaptive,
        "setup": next(iter(results.values()))["arguments"]["setup"],
    }


def search_grid(study: Study, results: dict[str, dict[str, Any]], label) -> list[dict[str, Any]]:
    """The lr x decay grid's runs on seed 0 (uniform and plain decay arms), each with its ``label``, selection score
    and steps, in the order of :func:`labelled_configurations`."""
    return [
        {
            "label": config["label"],
            "select_score": config["select"][0],
            "steps": config["runs"][0]["arguments"]["steps"],
        }
        for config in labelled_configurations(study, results, label)
        if lr_decay_grid(config["settings"]) and 0 in config["select"]
    ]


def search_comparisons(
    study: Study, results: dict[str, dict[str, Any]], results_dir: Path, quick: bool = False
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each lr x decay search of ``study`` with the grid it is measured against (seed 0, selection split): the grid
    of the study its declaration's ``search_grid`` names, else its own, labelled and ordered as that study's view
    does (an evidence grid by label). Empty when the study has no search or the grid no run.

    Args:
        study: the study (its miniature with ``quick``).
        results: its records.
        results_dir: the folder of ``studies/``, where the grid's study is read from.
        quick: whether ``study`` is a miniature (the grid's study is read as one too).

    Returns:
        ``(search record, grid runs)`` pairs, in the order the searches ran.
    """
    searches = RunStore(study, results_dir / "studies").searches()
    if not searches:
        return []
    if study.search_grid and study.search_grid != study.name:
        grid_study = miniature(load_study(study.search_grid)) if quick else load_study(study.search_grid)
        grid_results = study_results(grid_study, results_dir)
    else:
        grid_study, grid_results = study, results
    grid = search_grid(grid_study, grid_results, label_of(grid_study))
    if view_of(grid_study) == "evidence":
        grid = sorted(grid, key=by_label)
    return [(search, grid) for search in searches] if grid else []

"""One-off: converts the result files of the three old runners (evidence.py, quality.py, recipe_study.py) into the
study engine's run store, one JSON file per run under ``benchmarks/results/studies/<study>/``. Run once:

    python benchmarks/convert_results.py

Nothing is rerun: every figure is copied. Each converted record gets the ``arguments`` its old runner used (read
from the old record: the evidence runs' spec and setup, the quality runs' configuration and task, the recipe runs'
command), in the engine's terms; the engine then refuses any record whose arguments differ from its study's
declaration, so the conversion also checks that every declaration in ``benchmarks/studies/`` states the settings
its committed runs ran with. The old files are left for ``git rm``.
"""

from __future__ import annotations

import json
import sys

import bench_utils
from engine import load_study, study_names
from engine.classification import describe_settings
from engine.declaration import Point
from engine.plan import planned_runs
from engine.store import RunStore, run_id, write_json


RESULTS = bench_utils.RESULTS_DIR
EVIDENCE_STUDIES = {
    ("vit", "dinov2-small-imgfocus", "cifar10", "standard"): "vit",
    ("cnn", "efficientnet-lite0", "cifar10", "standard"): "cnn",
    ("text", "e5-small", "rte", "standard"): "rte_e5",
    ("text", "e5-small", "cola", "standard"): "cola_e5",
    ("text", "e5-small", "cola", "long"): "cola_long_e5",
    ("text", "e5-small", "cola-full", "standard"): "cola_full_e5",
    ("text", "minilm-l6", "cola-full", "standard"): "cola_full_minilm",
    ("text", "minilm-l6", "cola", "standard"): "cola_minilm",
    ("text", "minilm-l6", "sst2", "standard"): "sst2_minilm",
}


def evidence_setup(setup: dict) -> dict:
    """An evidence run's setup with the fields the engine's TaskSetup added, at the values evidence.py implied: the
    selection held out from the training file and used as the curve, group_by_length sampling for text and random
    for images (as evidence.py's training_arguments set it in every revision)."""
    return (
        {"data": ""}
        | setup
        | {
            "select_split": "",
            "curve_split": "",
            "curve_size": None,
            "sampling": "random" if setup["image_size"] else "group_by_length",
        }
    )


def quality_setup(setup: dict) -> dict:
    """A quality task's setup in the engine's terms (quality.py's TaskSetup, with its fixed metric and sampling)."""
    fields = dict(setup)
    return {
        "task": fields.pop("name"),
        "metric": "accuracy",
        "train_size": fields.pop("train_size"),
        "select_size": fields.pop("select_size"),
        "report_split": fields.pop("report_split"),
        "report_size": fields.pop("report_size"),
        "batch_size": fields.pop("batch_size"),
        "max_steps": fields.pop("max_steps"),
        "eval_every": fields.pop("eval_every"),
        "max_length": fields.pop("max_length"),
        "image_size": 0,
        "data": "",
        "select_split": fields.pop("select_split"),
        "curve_split": fields.pop("curve_split"),
        "curve_size": fields.pop("curve_size"),
        "sampling": "random",
    } | fields


def record(study: str, arm: str, point: Point, seed: int, arguments, **rest) -> tuple[str, dict]:
    head = {"study": study, "arm": arm, "learning_rate": point.learning_rate}
    if point.settings:
        head["settings"] = dict(point.settings)
    return run_id(arm, point, seed), head | {"seed": seed, "arguments": arguments} | rest


def convert_evidence() -> dict[str, dict[str, dict]]:
    converted: dict[str, dict[str, dict]] = {}
    for path in sorted((RESULTS / "evidence").glob("*/*.json")):
        if path.parent.name == "search":
            continue
        run = json.loads(path.read_text(encoding="utf-8"))
        spec = run["spec"]
        study = EVIDENCE_STUDIES[spec["study"], spec["model"], spec["task"], spec["budget"]]
        settings = {
            "kind": spec["arm"],
            "layer_decay": spec["layer_decay"],
            "layer_grouping": spec["layer_grouping"],
            "reinit_top_layers": spec["reinit_top_layers"],
            "adaptation": spec.get("adaptation", "none"),
        }
        setup = evidence_setup(run["setup"])
        point = Point(spec["learning_rate"])
        arguments = {
            "model": spec["model"],
            "setup": setup,
            "steps": run["steps"],
            "settings": settings,
            "learning_rate": spec["learning_rate"],
            "seed": spec["seed"],
        }
        key, converted_run = record(
            study,
            describe_settings(settings),
            point,
            spec["seed"],
            arguments,
            command=run["command"],
            git_revision=run["git_revision"],
            started_utc=run["started_utc"],
            wall_seconds=run["wall_seconds"],
            threads=run["torch_threads"],
            status="ok",
            metrics={
                "select_score": run["select_score"],
                "report_score": run["report_score"],
                "final_train_loss": run["final_train_loss"],
            },
            curve=run["curve"],
            train_seconds=run["train_seconds"],
            lr_per_depth=run["lr_per_depth"],
            model_folder=run["model_folder"],
            num_blocks=run["num_blocks"],
            trainable_params=run["trainable_params"],
        )
        assert key not in converted.setdefault(study, {}), (study, key)
        converted[study][key] = converted_run
    for path in sorted((RESULTS / "evidence" / "search").glob("*.json")):
        search = json.loads(path.read_text(encoding="utf-8"))
        study = EVIDENCE_STUDIES["text", search["model"], search["task"], "standard"]
        search = {"study": study} | search | {"setup": evidence_setup(search["setup"])}
        write_json(RESULTS / "studies" / study / f"search__trials{len(search['trials'])}__seed0.json", search)
    return converted


def quality_settings(config: dict) -> tuple[str, dict, Point]:
    """A quality run's arm name, settings (the point's decay included) and point."""
    adaptation = config.get("layer_lr_adaptation", "none")
    kind = config["arm"] if config["arm"] == "layerwise" or adaptation == "none" else "adaptive"
    arm_settings = {
        "kind": kind,
        "layer_decay": 1.0,
        "layer_grouping": "block",
        "reinit_top_layers": 0,
        "adaptation": adaptation,
    }
    point = Point(config["learning_rate"], (("layer_decay", config["layer_decay"]),) if kind == "layerwise" else ())
    return describe_settings(arm_settings), arm_settings | dict(point.settings), point


def convert_quality(file_name: str, studies: dict[str, str]) -> dict[str, dict[str, dict]]:
    payload = json.loads((RESULTS / file_name).read_text(encoding="utf-8"))
    machine = payload["machine"]
    session = {
        "command": payload["command"],
        "git_revision": payload["git_revision"],
        "started_utc": payload["started_utc"],
        "wall_seconds": payload["wall_seconds"],
        "logical_cpus": machine["logical_cpus"],
        "load_average_at_start": machine["load_average_at_start"],
        "load_average_at_end": machine["load_average_at_end"],
    }
    converted: dict[str, dict[str, dict]] = {}
    for task, result in payload["results"]["tasks"].items():
        study = studies[task]
        setup = quality_setup(result["setup"])
        for run in result["runs"]:
            arm, settings, point = quality_settings(run["config"])
            arguments = {
                "model": "minilm-l6",
                "setup": setup,
                "steps": setup["max_steps"],
                "settings": settings,
                "learning_rate": point.learning_rate,
                "seed": run["seed"],
            }
            key, converted_run = record(
                study,
                arm,
                point,
                run["seed"],
                arguments,
                command=payload["command"],
                git_revision=payload["git_revision"],
                started_utc=payload["started_utc"],
                wall_seconds=None,
                threads=machine["torch_threads"],
                session=session,
                status="ok",
                metrics={
                    "select_score": run["select_accuracy"],
                    "report_score": run["report_accuracy"],
                    "final_train_loss": run["final_train_loss"],
                },
                curve=run["curve"],
                train_seconds=run["train_seconds"],
                lr_per_depth=run.get("lr_per_depth"),
                model_folder="model",
            )
            assert key not in converted.setdefault(study, {}), (study, key)
            converted[study][key] = converted_run
        if "search" in result:
            search = result["search"]
            write_json(
                RESULTS / "studies" / study / f"search__trials{len(search['trials'])}__seed0.json",
                {"study": study, "model": "minilm-l6", "task": f"quality-{task}", "metric": "accuracy", "setup": setup}
                | search
                | {"git_revision": payload["git_revision"], "command": payload["command"], "session": session},
            )
    return converted


def convert_recipe_studies() -> dict[str, dict[str, dict]]:
    converted = {}
    for name in ("audio", "qa", "segmentation", "sft"):
        study = load_study(name)
        records = RunStore(study).load()
        converted[name] = {
            key: dict(
                list(run.items())[:4]
                + [("arguments", study.executor.recorded_arguments(run["command"]))]
                + list(run.items())[4:]
            )
            for key, run in records.items()
        }
    return converted


def main() -> None:
    converted = convert_evidence()
    converted |= convert_quality("quality.json", {"sst2": "quality_sst2", "rte": "quality_rte"})
    converted |= convert_quality("quality_adaptive.json", {"sst2": "quality_adaptive_sst2"})
    converted |= convert_recipe_studies()
    for study, runs in converted.items():
        for key, run in runs.items():
            write_json(RESULTS / "studies" / study / f"{key}.json", run)
    for name in study_names():
        study = load_study(name)
        store = RunStore(study)
        results = store.load()
        stale = store.stale(results)
        print(f"{name}: {len(results)} runs, {len(stale)} stale, {len(planned_runs(study, results))} planned now")
        if stale:
            sys.exit(f"{name}: stale {stale[:5]}")


if __name__ == "__main__":
    main()

"""The protocol of the studies (benchmarks/engine) on recipe studies: the grid, the choice of each arm's rate, the
later seeds, failures, the paired differences, the recipe's command, the refusal of stale records, the claims of
runners sharing a machine, and the tables BENCHMARKS.md holds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_utils
import report
import study as study_cli
from engine import Point, Study, load_study
from engine.plan import chosen_point, planned_runs
from engine.recipe import RUN_SETTINGS, Recipe, recorded_command
from engine.runner import Options, run_study
from engine.store import Run, RunStore, run_id, score
from engine.summary import summarize


REPO_ROOT = Path(__file__).resolve().parent.parent


def _study(**overrides):
    settings = dict(
        name="demo",
        executor=Recipe(
            "text_classification.py",
            model="minilm-l6",
            common_args=["--train_file", "{data}/sst2/train.tsv", "--max_steps", "10"],
        ),
        arms={"uniform": [], "decay0.8": ["--layer_decay", "0.8"]},
        learning_rates=(1e-4, 3e-4),
        metric="eval_f1",
        seeds=(0, 1, 2),
    )
    return Study(**(settings | overrides))


def _ok(value):
    return {"status": "ok", "metrics": {"eval_f1": value}}


def _id(arm, rate, seed):
    return run_id(arm, Point(rate), seed)


def _runs(*runs):
    return [Run(arm, Point(rate), seed) for arm, rate, seed in runs]


FAILED = {"status": "failed", "returncode": 1}


def test_the_grid_runs_first_on_the_grid_seeds():
    assert planned_runs(_study(), {}) == _runs(
        ("uniform", 1e-4, 0), ("uniform", 3e-4, 0), ("decay0.8", 1e-4, 0), ("decay0.8", 3e-4, 0)
    )


def test_later_seeds_run_each_arm_at_its_chosen_rate_once_its_grid_has_finished():
    results = {
        _id("uniform", 1e-4, 0): _ok(0.60),
        _id("uniform", 3e-4, 0): _ok(0.55),
        _id("decay0.8", 1e-4, 0): _ok(0.58),
    }
    assert chosen_point(_study(), "uniform", results) == Point(1e-4)
    assert chosen_point(_study(), "decay0.8", results) is None
    assert planned_runs(_study(), results) == _runs(("decay0.8", 3e-4, 0), ("uniform", 1e-4, 1), ("uniform", 1e-4, 2))


def test_lower_is_better_picks_the_smallest_loss_and_a_failed_rate_is_never_chosen():
    study = _study(metric="eval_loss", greater_is_better=False)
    results = {
        _id("uniform", 1e-4, 0): {"status": "ok", "metrics": {"eval_loss": 2.5}},
        _id("uniform", 3e-4, 0): FAILED,
    }
    assert chosen_point(study, "uniform", results) == Point(1e-4)
    results[_id("uniform", 1e-4, 0)] = {"status": "ok", "metrics": {"eval_loss": float("nan")}}
    assert chosen_point(study, "uniform", results) is None


def test_the_rate_is_chosen_on_the_studys_metric_and_seeds():
    def run(select, report):
        return {"status": "ok", "metrics": {"select_score": select, "report_score": report}}

    study = _study(metric="report_score", choose_on="select_score", grid_seeds=(0,), choice_seeds="common seeds")
    results = {
        _id("uniform", 1e-4, 0): run(0.60, 0.50),  # best on selection, not on report
        _id("uniform", 3e-4, 0): run(0.55, 0.70),
    }
    assert chosen_point(study, "uniform", results) == Point(1e-4)
    assert chosen_point(_study(metric="report_score", grid_seeds=(0,)), "uniform", results) == Point(3e-4)
    # common seeds: a seed every rate has run (beyond the grid seeds) joins the choice
    results |= {_id("uniform", 1e-4, 1): run(0.40, 0.5), _id("uniform", 3e-4, 1): run(0.60, 0.5)}
    assert chosen_point(study, "uniform", results) == Point(3e-4)
    assert chosen_point(_study(metric="report_score", choose_on="select_score"), "uniform", results) == Point(1e-4)
    with pytest.raises(ValueError, match="choice_seeds must be one of"):
        _study(choice_seeds="all seeds")


def test_per_arm_grids_and_run_ids():
    study = _study(arm_learning_rates={"decay0.8": (5e-4,)})
    assert study.points("uniform") == (Point(1e-4), Point(3e-4))
    assert study.points("decay0.8") == (Point(5e-4),)
    assert _id("decay0.8", 5e-4, 2) == "decay0.8__lr0.0005__seed2"
    assert run_id("layerwise decay=0.9", Point(2e-4, (("layer_decay", 0.8),)), 0) == (
        "layerwise_decay0.9__lr0.0002__layer_decay0.8__seed0"
    )


def test_a_study_that_names_unknown_arms_or_grid_seeds_outside_its_seeds_is_refused():
    with pytest.raises(ValueError, match="arms it does not have: \\['probe'\\]"):
        _study(arm_learning_rates={"probe": (1e-3,)})
    with pytest.raises(ValueError, match="grid_seeds \\(5,\\) must be among seeds"):
        _study(grid_seeds=(5,))


def test_summary_pairs_seeds_with_the_reference_arm():
    results = {
        _id("uniform", 1e-4, 0): _ok(0.60),
        _id("uniform", 3e-4, 0): _ok(0.50),
        _id("uniform", 1e-4, 1): _ok(0.62),
        _id("uniform", 1e-4, 2): _ok(0.58),
        _id("decay0.8", 1e-4, 0): _ok(0.61),
        _id("decay0.8", 3e-4, 0): _ok(0.65),
        _id("decay0.8", 3e-4, 1): _ok(0.66),
        _id("decay0.8", 3e-4, 2): FAILED,
    }
    summary = summarize(_study(), results)
    assert summary["grid"] == {
        "uniform": {"0.0001": 0.60, "0.0003": 0.50},
        "decay0.8": {"0.0001": 0.61, "0.0003": 0.65},
    }
    uniform, decay = summary["arms"]["uniform"], summary["arms"]["decay0.8"]
    assert uniform["chosen_rate"] == 1e-4 and uniform["by_seed"] == {0: 0.60, 1: 0.62, 2: 0.58}
    assert uniform["mean"] == pytest.approx(0.60) and uniform["std"] == pytest.approx(0.02)
    assert decay["chosen_rate"] == 3e-4 and decay["by_seed"] == {0: 0.65, 1: 0.66} and decay["failed_seeds"] == [2]
    difference = decay["paired_difference"]
    assert difference["seeds"] == [0, 1]
    assert difference["mean"] == pytest.approx(0.045)
    # t(0.975, 1 dof) = 12.706; differences 0.05 and 0.04: half-width 12.706 * 0.00707 / sqrt(2) = 0.0635.
    assert difference["interval_95"] == pytest.approx([0.045 - 0.063531, 0.045 + 0.063531], abs=1e-6)
    assert summary["failed_runs"] == [_id("decay0.8", 3e-4, 2)]
    table = report.study_table(summary)
    assert "|---|---|---|---|---|---|---|\n| uniform |" in table
    assert (
        "| decay0.8 | 0.0003 | 0, 1 (failed: 2) | 0.6500, 0.6600 | 0.6550 | 0.0071 | +0.0450 [-0.0185, +0.1085] (2 seeds) |"
        in table
    )
    assert "| uniform | 0.0001 | 0, 1, 2 | 0.6000, 0.6200, 0.5800 | 0.6000 | 0.0200 | reference |" in table


def test_other_metrics_are_reported_beside_the_metric_and_do_not_choose_rates():
    def run(f1, exact_match):
        return {"status": "ok", "metrics": {"eval_f1": f1, "eval_exact_match": exact_match}}

    study = _study(
        arms={"uniform": []}, learning_rates=(1e-4, 3e-4), seeds=(0, 1), other_metrics=("eval_exact_match",)
    )
    results = {
        _id("uniform", 1e-4, 0): run(0.60, 0.9),
        _id("uniform", 3e-4, 0): run(0.50, 1.0),
        _id("uniform", 1e-4, 1): run(0.70, 0.5),
    }
    summary = summarize(study, results)
    assert summary["arms"]["uniform"]["chosen_rate"] == 1e-4
    assert summary["arms"]["uniform"]["other_metrics"] == {"eval_exact_match": pytest.approx(0.7)}
    table = report.study_table(summary)
    header = "| arm | chosen lr | seeds | by seed | mean | std | mean eval_exact_match | paired difference to uniform [95% interval] |"
    lines = table.splitlines()
    assert lines[lines.index(header) + 1] == "|---|---|---|---|---|---|---|---|"
    assert "| uniform | 0.0001 | 0, 1 | 0.6000, 0.7000 | 0.6500 | 0.0707 | 0.7000 | reference |" in table


def test_the_command_of_a_run_fills_the_data_folder_and_ends_with_the_run_settings(tmp_path):
    study = _study()
    command = study.executor.command(study, Run("decay0.8", Point(3e-4), 2), "/models/minilm", tmp_path)
    assert command[:4] == ["python", "recipes/text_classification.py", "--model_name_or_path", "/models/minilm"]
    assert command[4:9] == [
        "--train_file",
        f"{bench_utils.DATA_DIR}/sst2/train.tsv",
        "--max_steps",
        "10",
        "--layer_decay",
    ]
    assert command[command.index("--seed") + 1] == "2"
    assert command[command.index("--learning_rate") + 1] == "0.0003"
    assert command[command.index("--output_dir") + 1].endswith("out/studies/demo/decay0.8__lr0.0003__seed2")
    assert tuple(command[-len(RUN_SETTINGS) :]) == RUN_SETTINGS
    assert study.executor.arguments(study, Run("decay0.8", Point(3e-4), 2)) == [
        "--train_file",
        "../shared/data/sst2/train.tsv",
        "--max_steps",
        "10",
        "--layer_decay",
        "0.8",
        "--seed",
        "2",
        "--learning_rate",
        "0.0003",
    ]


def test_a_study_file_is_loaded_by_name_and_an_unknown_one_is_named(tmp_path):
    (tmp_path / "mine.py").write_text(
        "from engine import Study\nfrom engine.recipe import Recipe\n"
        "STUDY = Study(name='mine', executor=Recipe('r.py', model='m', common_args=[]), arms={'uniform': []}, "
        "learning_rates=(1e-4,), metric='eval_accuracy')\n",
        encoding="utf-8",
    )
    assert load_study("mine", tmp_path).name == "mine"
    with pytest.raises(ValueError, match="No study 'other'.*Known studies: mine"):
        load_study("other", tmp_path)


def test_records_are_read_without_the_summary_and_the_searches(tmp_path):
    store = RunStore(_study(), tmp_path)
    store.directory.mkdir()
    (store.directory / "uniform__lr0.0001__seed0.json").write_text(json.dumps(_ok(0.5)), encoding="utf-8")
    (store.directory / "summary.json").write_text("{}", encoding="utf-8")
    (store.directory / "search__trials2__seed0.json").write_text('{"trials": []}', encoding="utf-8")
    assert store.load() == {"uniform__lr0.0001__seed0": _ok(0.5)}
    assert store.searches() == [{"trials": []}]
    assert score(_ok(0.5), "eval_f1") == 0.5


def _record(study, arm, rate, seed, value=0.5):
    run = Run(arm, Point(rate), seed)
    command = study.executor.command(study, run, "/models/minilm", Path("/tmp/models"))
    return {
        "arm": arm,
        "learning_rate": rate,
        "seed": seed,
        "arguments": study.executor.arguments(study, run),
        "command": recorded_command(command),
    } | _ok(value)


def test_results_of_other_settings_or_outside_the_grid_are_named_and_refused(tmp_path):
    study = _study()
    results = {_id("uniform", 1e-4, 0): _record(study, "uniform", 1e-4, 0)}
    assert RunStore(study).stale(results) == []

    changed = _study(
        executor=Recipe(
            "text_classification.py", "minilm-l6", ["--train_file", "{data}/sst2/train.tsv", "--max_steps", "20"]
        )
    )
    stray = {_id("probe", 1e-3, 0): _record(_study(arms={"probe": ["--freeze_base_model"]}), "probe", 1e-3, 0)}
    assert RunStore(changed).stale(results | stray) == [_id("uniform", 1e-4, 0), _id("probe", 1e-3, 0)]
    assert RunStore(_study(arms={"uniform": ["--layer_decay", "0.9"]})).stale(results) == [_id("uniform", 1e-4, 0)]
    assert RunStore(_study(learning_rates=(3e-4,))).stale(results) == [_id("uniform", 1e-4, 0)]

    RunStore(study, tmp_path).write(Run("uniform", Point(1e-4), 0), results[_id("uniform", 1e-4, 0)])
    with pytest.raises(
        SystemExit,
        match=r"demo: 1 result file\(s\) in .* ran with other arguments .*: uniform__lr0.0001__seed0\. Delete",
    ):
        study_cli.report_study(changed, RunStore(changed, tmp_path), plot=False)
    assert "| uniform | 0.5000 | - |" in study_cli.report_study(study, RunStore(study, tmp_path), plot=False)
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["grid"]["uniform"] == {
        "0.0001": 0.5,
        "0.0003": None,
    }


def test_runners_on_one_machine_skip_the_runs_another_live_runner_claimed(tmp_path, monkeypatch):
    executed = []
    study = _study()

    def execute(study, run, options, context):
        executed.append(run_id(*run))
        assert store.claim_path(run_id(*run)).read_text() == str(os.getpid())
        return {"command": "python recipes/...", "status": "ok", "metrics": {"eval_f1": 0.5}}

    monkeypatch.setattr(Recipe, "execute", lambda self, *args: execute(*args))
    monkeypatch.setattr(Recipe, "prepare", lambda self, study, options: {"model_path": "/models/minilm"})
    options = Options(root=tmp_path / "results", scratch=tmp_path / "out", max_runs=2)
    store = RunStore(study, options.root, options.scratch)
    first, second, third = planned_runs(study, {})[:3]
    held = store.claim_path(run_id(*first))
    held.parent.mkdir(parents=True)
    held.write_text(str(os.getppid()))  # a live process: the runner that started the first run
    stale = store.claim_path(run_id(*second))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale.write_text(str(dead.pid))  # a runner that died without removing its claim

    assert run_study(study, options) == 2
    assert executed == [run_id(*second), run_id(*third)]
    assert held.exists() and not stale.exists() and not store.claim_path(run_id(*third)).exists()
    records = store.load()
    assert sorted(records) == sorted([run_id(*second), run_id(*third)])
    assert records[run_id(*second)]["arguments"] == study.executor.arguments(study, second)
    assert store.stale(records) == []


def test_the_report_replaces_the_table_between_the_study_markers_only(tmp_path):
    document = tmp_path / "BENCHMARKS.md"
    document.write_text("# B\n<!-- demo-study results begin -->\nold table\n<!-- demo-study results end -->\nafter\n")
    report.update_document(document, "demo", "| new |")
    assert (
        document.read_text()
        == "# B\n<!-- demo-study results begin -->\n| new |\n<!-- demo-study results end -->\nafter\n"
    )
    with pytest.raises(ValueError, match="needs one line '<!-- other-study results begin -->'"):
        report.update_document(document, "other", "| new |")


def test_a_rate_passed_over_can_also_run_on_every_seed_as_a_row_of_its_own():
    study = _study(rates_on_every_seed={"decay0.8": (1e-4,)})
    grid = {
        _id("uniform", 1e-4, 0): _ok(0.60),
        _id("uniform", 3e-4, 0): _ok(0.50),
        _id("decay0.8", 1e-4, 0): _ok(0.61),
        _id("decay0.8", 3e-4, 0): _ok(0.65),
    }
    assert planned_runs(study, grid) == _runs(
        ("uniform", 1e-4, 1),
        ("decay0.8", 3e-4, 1),
        ("uniform", 1e-4, 2),
        ("decay0.8", 3e-4, 2),
        ("decay0.8", 1e-4, 1),
        ("decay0.8", 1e-4, 2),
    )
    results = grid | {
        _id("uniform", 1e-4, 1): _ok(0.62),
        _id("decay0.8", 3e-4, 1): _ok(0.20),
        _id("decay0.8", 1e-4, 1): _ok(0.64),
    }
    summary = summarize(study, results)
    assert summary["arms"]["decay0.8"]["chosen_rate"] == 3e-4
    passed_over = summary["arms"]["decay0.8 at 0.0001"]
    assert passed_over["chosen_rate"] == 1e-4 and passed_over["by_seed"] == {0: 0.61, 1: 0.64}
    assert passed_over["paired_difference"]["mean"] == pytest.approx(0.015)
    assert "| decay0.8 at 0.0001 | 0.0001 | 0, 1 | 0.6100, 0.6400 | 0.6250 |" in report.study_table(summary)
    with pytest.raises(
        ValueError, match="rates_on_every_seed names 'decay0.8' \\(0.001,\\), not an arm and rates of its grid"
    ):
        _study(rates_on_every_seed={"decay0.8": (1e-3,)})


@pytest.mark.parametrize("name", ["qa", "audio"])
def test_benchmarks_md_holds_each_recipe_studys_table_of_the_committed_results(name):
    study = load_study(name)
    store = RunStore(study)
    results = store.load()
    assert store.stale(results) == [] and planned_runs(study, results) == []
    document = (REPO_ROOT / "BENCHMARKS.md").read_text(encoding="utf-8")
    begin, end = f"<!-- {name}-study results begin -->\n", f"\n<!-- {name}-study results end -->"
    pasted = document[document.index(begin) + len(begin) : document.index(end)]
    assert pasted == report.study_table(summarize(study, results)), (
        f"BENCHMARKS.md is out of date: python benchmarks/study.py report {name} --update BENCHMARKS.md"
    )


@pytest.mark.parametrize("name", ["segmentation", "sft"])
def test_the_recipe_studies_without_markers_agree_with_their_committed_summary(name):
    study = load_study(name)
    store = RunStore(study)
    results = store.load()
    assert store.stale(results) == [] and planned_runs(study, results) == []
    committed = json.loads((store.directory / "summary.json").read_text(encoding="utf-8"))
    assert json.loads(json.dumps(summarize(study, results))) == committed


def test_an_arm_added_to_the_sft_study_is_one_entry_with_its_grid_and_leaves_the_committed_runs_valid():
    sft = load_study("sft")
    loraplus = ["--use_peft", "--lora_r", "16", "--lora_alpha", "32", "--loraplus_lr_ratio", "16"]
    study = Study(
        **{field: getattr(sft, field) for field in sft.__dataclass_fields__}
        | {
            "arms": sft.arms | {"loraplus16": loraplus},
            "arm_learning_rates": sft.arm_learning_rates | {"loraplus16": (1e-4, 3e-4)},
        }
    )
    results = RunStore(study).load()
    assert RunStore(study).stale(results) == []
    assert planned_runs(study, results) == _runs(("loraplus16", 1e-4, 0), ("loraplus16", 3e-4, 0))
    run = planned_runs(study, results)[0]
    assert study.executor.arguments(study, run)[-len(loraplus) - 4 :] == [
        *loraplus,
        "--seed",
        "0",
        "--learning_rate",
        "0.0001",
    ]
    assert "| loraplus16 | - | - | - | - | - | - |" in report.study_table(summarize(study, results))


FAKE_RECIPE = """import argparse, json, os, sys
parser = argparse.ArgumentParser()
for flag in ("--model_name_or_path", "--seed", "--learning_rate", "--output_dir", "--save_strategy", "--report_to",
             "--disable_tqdm", "--layer_decay", "--fail_above"):
    parser.add_argument(flag)
parser.add_argument("--overwrite_output_dir", action="store_true")
args = parser.parse_args()
if args.fail_above and float(args.learning_rate) > float(args.fail_above):
    sys.exit("loss diverged")
os.makedirs(args.output_dir, exist_ok=True)
score = float(args.learning_rate) * 1000 + int(args.seed) / 100 + (0.1 if args.layer_decay else 0.0)
json.dump({"eval_f1": score}, open(os.path.join(args.output_dir, "all_results.json"), "w"))
"""


def test_the_recipe_executor_runs_each_configuration_as_a_subprocess_and_records_failures(tmp_path):
    recipe = tmp_path / "fake_recipe.py"
    recipe.write_text(FAKE_RECIPE, encoding="utf-8")
    study = _study(
        executor=Recipe(
            os.path.relpath(recipe, REPO_ROOT / "recipes"), model=str(tmp_path), common_args=["--fail_above", "2e-4"]
        )
    )
    options = Options(root=tmp_path / "results", scratch=tmp_path / "out")
    assert run_study(study, options) == 4 + 4  # the grid (3e-4 fails for both arms), then seeds 1-2 at 1e-4
    records = RunStore(study, options.root).load()
    ok, failed = records[_id("decay0.8", 1e-4, 2)], records[_id("decay0.8", 3e-4, 0)]
    assert ok["status"] == "ok" and ok["metrics"]["eval_f1"] == pytest.approx(0.22)
    assert ok["command"].startswith(f"python recipes/{study.executor.recipe} --model_name_or_path {tmp_path}")
    assert ok["arguments"][-6:] == ["--layer_decay", "0.8", "--seed", "2", "--learning_rate", "0.0001"]
    assert failed["status"] == "failed" and failed["returncode"] == 1 and "loss diverged" in failed["log_tail"][-1]
    summary = summarize(study, records)
    assert summary["failed_runs"] == [_id("decay0.8", 3e-4, 0), _id("uniform", 3e-4, 0)]
    assert summary["arms"]["decay0.8"]["paired_difference"]["mean"] == pytest.approx(0.1)

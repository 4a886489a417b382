"""The protocol of the recipe studies (benchmarks/recipe_study.py): the grid, the choice of each arm's rate,
the later seeds, failures, and the paired differences."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import recipe_study
from recipe_study import RecipeStudy, run_id


def _study(**overrides):
    settings = dict(
        name="demo",
        recipe="text_classification.py",
        model="minilm-l6",
        common_args=["--train_file", "{data}/sst2/train.tsv", "--max_steps", "10"],
        arms={"uniform": [], "decay0.8": ["--layer_decay", "0.8"]},
        learning_rates=(1e-4, 3e-4),
        metric="eval_f1",
        seeds=(0, 1, 2),
    )
    return RecipeStudy(**(settings | overrides))


def _ok(value):
    return {"status": "ok", "metrics": {"eval_f1": value}}


FAILED = {"status": "failed", "returncode": 1}


def test_the_grid_runs_first_on_the_grid_seeds():
    assert recipe_study.planned_runs(_study(), {}) == [
        ("uniform", 1e-4, 0),
        ("uniform", 3e-4, 0),
        ("decay0.8", 1e-4, 0),
        ("decay0.8", 3e-4, 0),
    ]


def test_later_seeds_run_each_arm_at_its_chosen_rate_once_its_grid_has_finished():
    results = {
        run_id("uniform", 1e-4, 0): _ok(0.60),
        run_id("uniform", 3e-4, 0): _ok(0.55),
        run_id("decay0.8", 1e-4, 0): _ok(0.58),
    }
    assert recipe_study.chosen_rate(_study(), "uniform", results) == 1e-4
    assert recipe_study.chosen_rate(_study(), "decay0.8", results) is None
    assert recipe_study.planned_runs(_study(), results) == [
        ("decay0.8", 3e-4, 0),
        ("uniform", 1e-4, 1),
        ("uniform", 1e-4, 2),
    ]


def test_lower_is_better_picks_the_smallest_loss_and_a_failed_rate_is_never_chosen():
    study = _study(metric="eval_loss", greater_is_better=False)
    results = {
        run_id("uniform", 1e-4, 0): {"status": "ok", "metrics": {"eval_loss": 2.5}},
        run_id("uniform", 3e-4, 0): FAILED,
    }
    assert recipe_study.chosen_rate(study, "uniform", results) == 1e-4
    results[run_id("uniform", 1e-4, 0)] = {"status": "ok", "metrics": {"eval_loss": float("nan")}}
    assert recipe_study.chosen_rate(study, "uniform", results) is None


def test_per_arm_grids_and_run_ids():
    study = _study(arm_learning_rates={"decay0.8": (5e-4,)})
    assert study.rates("uniform") == (1e-4, 3e-4)
    assert study.rates("decay0.8") == (5e-4,)
    assert run_id("decay0.8", 5e-4, 2) == "decay0.8__lr0.0005__seed2"


def test_a_study_that_names_unknown_arms_or_grid_seeds_outside_its_seeds_is_refused():
    with pytest.raises(ValueError, match="arms it does not have: \\['probe'\\]"):
        _study(arm_learning_rates={"probe": (1e-3,)})
    with pytest.raises(ValueError, match="grid_seeds \\(5,\\) must be among seeds"):
        _study(grid_seeds=(5,))


def test_summary_pairs_seeds_with_the_reference_arm():
    results = {
        run_id("uniform", 1e-4, 0): _ok(0.60),
        run_id("uniform", 3e-4, 0): _ok(0.50),
        run_id("uniform", 1e-4, 1): _ok(0.62),
        run_id("uniform", 1e-4, 2): _ok(0.58),
        run_id("decay0.8", 1e-4, 0): _ok(0.61),
        run_id("decay0.8", 3e-4, 0): _ok(0.65),
        run_id("decay0.8", 3e-4, 1): _ok(0.66),
        run_id("decay0.8", 3e-4, 2): FAILED,
    }
    summary = recipe_study.summarize(_study(), results)
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
    assert summary["failed_runs"] == [run_id("decay0.8", 3e-4, 2)]
    table = recipe_study.markdown(summary)
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
        run_id("uniform", 1e-4, 0): run(0.60, 0.9),
        run_id("uniform", 3e-4, 0): run(0.50, 1.0),
        run_id("uniform", 1e-4, 1): run(0.70, 0.5),
    }
    summary = recipe_study.summarize(study, results)
    assert summary["arms"]["uniform"]["chosen_rate"] == 1e-4
    assert summary["arms"]["uniform"]["other_metrics"] == {"eval_exact_match": pytest.approx(0.7)}
    table = recipe_study.markdown(summary)
    header = "| arm | chosen lr | seeds | by seed | mean | std | mean eval_exact_match | paired difference to uniform [95% interval] |"
    lines = table.splitlines()
    assert lines[lines.index(header) + 1] == "|---|---|---|---|---|---|---|---|"
    assert "| uniform | 0.0001 | 0, 1 | 0.6000, 0.7000 | 0.6500 | 0.0707 | 0.7000 | reference |" in table


def test_the_command_of_a_run_fills_the_data_folder_and_ends_with_the_run_settings(tmp_path):
    command = recipe_study.run_command(_study(), "decay0.8", 3e-4, 2, "/models/minilm", tmp_path)
    assert command[:4] == ["python", "recipes/text_classification.py", "--model_name_or_path", "/models/minilm"]
    assert command[4:9] == [
        "--train_file",
        f"{recipe_study.bench_utils.DATA_DIR}/sst2/train.tsv",
        "--max_steps",
        "10",
        "--layer_decay",
    ]
    assert command[command.index("--seed") + 1] == "2"
    assert command[command.index("--learning_rate") + 1] == "0.0003"
    assert command[command.index("--output_dir") + 1].endswith("out/studies/demo/decay0.8__lr0.0003__seed2")
    assert tuple(command[-len(recipe_study.RUN_SETTINGS) :]) == recipe_study.RUN_SETTINGS


def test_a_study_file_is_loaded_by_name_and_an_unknown_one_is_named(tmp_path):
    (tmp_path / "mine.py").write_text(
        "from recipe_study import RecipeStudy\n"
        "STUDY = RecipeStudy(name='mine', recipe='r.py', model='m', common_args=[], arms={'uniform': []}, "
        "learning_rates=(1e-4,), metric='eval_accuracy')\n",
        encoding="utf-8",
    )
    assert recipe_study.load_study("mine", tmp_path).name == "mine"
    with pytest.raises(ValueError, match="No study 'other'.*Known studies: mine"):
        recipe_study.load_study("other", tmp_path)


def test_results_are_read_without_the_summary(tmp_path):
    (tmp_path / "uniform__lr0.0001__seed0.json").write_text(json.dumps(_ok(0.5)), encoding="utf-8")
    (tmp_path / "summary.json").write_text("{}", encoding="utf-8")
    assert recipe_study.load_results(tmp_path) == {"uniform__lr0.0001__seed0": _ok(0.5)}
    assert math.isclose(recipe_study.score(_ok(0.5), "eval_f1"), 0.5)


def _record(study, arm, rate, seed, value=0.5):
    command = recipe_study.run_command(study, arm, rate, seed, "/models/minilm", Path("/tmp/models"))
    return {"arm": arm, "learning_rate": rate, "seed": seed, "command": recipe_study.recorded_command(command)} | _ok(
        value
    )


def test_results_of_other_settings_are_named_and_refused(tmp_path, monkeypatch):
    study = _study()
    results = {run_id("uniform", 1e-4, 0): _record(study, "uniform", 1e-4, 0)}
    assert recipe_study.stale_runs(study, results) == []

    changed = _study(common_args=["--train_file", "{data}/sst2/train.tsv", "--max_steps", "20"])
    stray = {run_id("probe", 1e-3, 0): _record(_study(arms={"probe": ["--freeze_base_model"]}), "probe", 1e-3, 0)}
    assert recipe_study.stale_runs(changed, results | stray) == [run_id("uniform", 1e-4, 0), run_id("probe", 1e-3, 0)]
    assert recipe_study.stale_runs(_study(arms={"uniform": ["--layer_decay", "0.9"]}), results) == [
        run_id("uniform", 1e-4, 0)
    ]

    monkeypatch.setattr(recipe_study, "STUDY_RESULTS_DIR", tmp_path)
    (tmp_path / "demo").mkdir()
    for key, result in results.items():
        (tmp_path / "demo" / f"{key}.json").write_text(json.dumps(result), encoding="utf-8")
    with pytest.raises(
        SystemExit,
        match=r"demo: 1 result file\(s\) in .* ran with other arguments .*: uniform__lr0.0001__seed0\. Delete",
    ):
        recipe_study.report(changed, plot=False)
    assert "| uniform | 0.5000 | - |" in recipe_study.report(study, plot=False)


def test_runners_on_one_machine_skip_the_runs_another_live_runner_claimed(tmp_path, monkeypatch):
    monkeypatch.setattr(recipe_study, "STUDY_RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(recipe_study, "STUDY_OUTPUT_DIR", tmp_path / "out")
    monkeypatch.setattr(recipe_study, "model_folder", lambda model, models_dir: "/models/minilm")
    executed = []

    def execute(study, arm, rate, seed, model_path, models_dir, threads):
        executed.append(run_id(arm, rate, seed))
        assert recipe_study.claim_path(study, (arm, rate, seed)).read_text() == str(os.getpid())
        return _record(study, arm, rate, seed) | {"wall_seconds": 1.0}

    monkeypatch.setattr(recipe_study, "execute", execute)
    study = _study()
    first, second, third = recipe_study.planned_runs(study, {})[:3]
    held = recipe_study.claim_path(study, first)
    held.parent.mkdir(parents=True)
    held.write_text(str(os.getppid()))  # a live process: the runner that started the first run
    stale = recipe_study.claim_path(study, second)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale.write_text(str(dead.pid))  # a runner that died without removing its claim

    recipe_study.run_study(study, Path("/models"), threads=1, dry_run=False, retry_failed=False, max_runs=2)
    assert executed == [run_id(*second), run_id(*third)]
    assert held.exists() and not stale.exists() and not recipe_study.claim_path(study, third).exists()
    assert sorted(path.stem for path in (tmp_path / "results" / "demo").glob("*.json")) == sorted(
        [run_id(*second), run_id(*third)]
    )


def test_the_report_replaces_the_table_between_the_study_markers_only(tmp_path):
    document = tmp_path / "BENCHMARKS.md"
    document.write_text("# B\n<!-- demo-study results begin -->\nold table\n<!-- demo-study results end -->\nafter\n")
    recipe_study.update_document(document, "demo", "| new |")
    assert (
        document.read_text()
        == "# B\n<!-- demo-study results begin -->\n| new |\n<!-- demo-study results end -->\nafter\n"
    )
    with pytest.raises(ValueError, match="needs one line '<!-- other-study results begin -->'"):
        recipe_study.update_document(document, "other", "| new |")


def test_a_rate_passed_over_can_also_run_on_every_seed_as_a_row_of_its_own():
    study = _study(rates_on_every_seed={"decay0.8": (1e-4,)})
    grid = {
        run_id("uniform", 1e-4, 0): _ok(0.60),
        run_id("uniform", 3e-4, 0): _ok(0.50),
        run_id("decay0.8", 1e-4, 0): _ok(0.61),
        run_id("decay0.8", 3e-4, 0): _ok(0.65),
    }
    assert recipe_study.planned_runs(study, grid) == [
        ("uniform", 1e-4, 1),
        ("decay0.8", 3e-4, 1),
        ("uniform", 1e-4, 2),
        ("decay0.8", 3e-4, 2),
        ("decay0.8", 1e-4, 1),
        ("decay0.8", 1e-4, 2),
    ]
    results = grid | {
        run_id("uniform", 1e-4, 1): _ok(0.62),
        run_id("decay0.8", 3e-4, 1): _ok(0.20),
        run_id("decay0.8", 1e-4, 1): _ok(0.64),
    }
    summary = recipe_study.summarize(study, results)
    assert summary["arms"]["decay0.8"]["chosen_rate"] == 3e-4
    passed_over = summary["arms"]["decay0.8 at 0.0001"]
    assert passed_over["chosen_rate"] == 1e-4 and passed_over["by_seed"] == {0: 0.61, 1: 0.64}
    assert passed_over["paired_difference"]["mean"] == pytest.approx(0.015)
    assert "| decay0.8 at 0.0001 | 0.0001 | 0, 1 | 0.6100, 0.6400 | 0.6250 |" in recipe_study.markdown(summary)
    with pytest.raises(
        ValueError, match="rates_on_every_seed names 'decay0.8' \\(0.001,\\), not an arm and rates of its grid"
    ):
        _study(rates_on_every_seed={"decay0.8": (1e-3,)})

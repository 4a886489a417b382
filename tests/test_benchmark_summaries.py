"""The arithmetic behind the BENCHMARKS.md figures: spreads, best-configuration choice, time to accuracy."""

import json
import math
import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_utils
import quality


def _run(arm, lr, seed, curve, select, report, decay=1.0, adaptation="none"):
    config = quality.ArmConfig(arm, lr, decay, adaptation)
    return {
        "config": {"arm": arm, "learning_rate": lr, "layer_decay": decay, "layer_lr_adaptation": adaptation},
        "label": config.label,
        "seed": seed,
        "curve": curve,
        "select_accuracy": select,
        "report_accuracy": report,
        "train_seconds": 10.0,
    }


def test_median_and_spread_uses_inclusive_quartiles():
    assert bench_utils.median_and_spread([4.0, 1.0, 3.0, 2.0, 5.0]) == {
        "median": 3.0,
        "q1": 2.0,
        "q3": 4.0,
        "min": 1.0,
        "max": 5.0,
        "n": 5,
    }
    assert bench_utils.median_and_spread([7.0]) == {
        "median": 7.0,
        "q1": 7.0,
        "q3": 7.0,
        "min": 7.0,
        "max": 7.0,
        "n": 1,
    }


def test_bootstrap_interval_of_a_constant_sample_is_that_constant():
    assert bench_utils.bootstrap_median_interval([2.0] * 9) == [2.0, 2.0]


def test_bootstrap_interval_is_seeded():
    values = [0.9, 0.95, 1.0, 1.0, 1.02, 1.05, 1.1, 0.97, 1.01, 0.99]
    # the median is 1.0; the 2.5th and 97.5th percentiles of 2,000 seeded resampled medians
    assert bench_utils.bootstrap_median_interval(values) == [0.97, pytest.approx(1.03)]
    assert bench_utils.bootstrap_median_interval(values, seed=0) == bench_utils.bootstrap_median_interval(values)


def test_mean_and_std_is_the_sample_standard_deviation():
    assert bench_utils.mean_and_std([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(2**0.5), "n": 2}
    assert bench_utils.mean_and_std([0.5]) == {"mean": 0.5, "std": 0.0, "n": 1}


def test_first_step_reaching_returns_the_first_evaluation_at_or_above_the_target():
    curve = [[16, 0.70], [32, 0.80], [48, 0.79], [64, 0.81]]
    assert quality.first_step_reaching(curve, 0.80) == 32
    assert quality.first_step_reaching(curve, 0.805) == 64
    assert quality.first_step_reaching(curve, 0.9) is None


def test_arm_labels_name_the_rates():
    assert quality.ArmConfig("uniform", 1e-4).label == "uniform lr=1e-04"
    assert quality.ArmConfig("layerwise", 2e-4, 0.8).label == "layerwise lr=2e-04 decay=0.8"


def test_summary_picks_the_best_configuration_on_the_selection_split_not_the_report_split():
    runs = [
        # uniform 1e-4 is better on the selection split, uniform 2e-4 on the report split
        _run("uniform", 1e-4, 0, [[2, 0.60], [4, 0.70]], select=0.80, report=0.70),
        _run("uniform", 1e-4, 1, [[2, 0.62], [4, 0.72]], select=0.82, report=0.72),
        _run("uniform", 2e-4, 0, [[2, 0.70], [4, 0.75]], select=0.70, report=0.75),
        _run("uniform", 2e-4, 1, [[2, 0.70], [4, 0.77]], select=0.70, report=0.77),
        _run("layerwise", 2e-4, 0, [[2, 0.71], [4, 0.74]], select=0.81, report=0.74, decay=0.8),
        _run("layerwise", 2e-4, 1, [[2, 0.69], [4, 0.78]], select=0.83, report=0.78, decay=0.8),
    ]
    arms = quality.summarize_task(runs)["arms"]
    assert arms["uniform"]["best_config"] == "uniform lr=1e-04"
    assert arms["uniform"]["best_config_on_report_split"] == "uniform lr=2e-04"
    assert arms["uniform"]["best_config_report"]["mean"] == pytest.approx(0.71)
    assert arms["uniform"]["best_single_run"] == {"label": "uniform lr=2e-04", "seed": 1, "report_accuracy": 0.77}
    assert arms["uniform"]["grid_report"]["mean"] == pytest.approx(0.735)
    assert arms["layerwise"]["best_config"] == "layerwise lr=2e-04 decay=0.8"
    # target: the uniform best configuration's mean final curve accuracy, (0.70 + 0.72) / 2
    assert arms["time_to_accuracy"]["target"] == pytest.approx(0.71)
    # seed 0 of the uniform arm ends below the mean of both seeds, so it never reaches it
    assert arms["time_to_accuracy"]["uniform"] == {"mean_curve_steps": 4, "per_seed_steps": {"0": None, "1": 4}}
    assert arms["time_to_accuracy"]["layerwise"] == {"mean_curve_steps": 4, "per_seed_steps": {"0": 2, "1": 4}}
    assert arms["paired_difference"]["per_seed"] == pytest.approx([0.04, 0.06])
    assert arms["paired_difference"]["mean"] == pytest.approx(0.05)


def test_adaptive_configurations_are_compared_with_their_twins_and_stay_out_of_the_arms_choice():
    runs = [
        _run("uniform", 1e-4, 0, [[4, 0.70]], select=0.80, report=0.70),
        _run("uniform", 1e-4, 1, [[4, 0.72]], select=0.82, report=0.72),
        _run("layerwise", 2e-4, 0, [[4, 0.74]], select=0.81, report=0.74, decay=0.8),
        _run("layerwise", 2e-4, 1, [[4, 0.78]], select=0.83, report=0.78, decay=0.8),
        # the best selection score of all, but an adaptation: not a candidate for either arm's best
        _run("uniform", 1e-4, 0, [[4, 0.73]], select=0.90, report=0.73, adaptation="lars"),
        _run("uniform", 1e-4, 1, [[4, 0.71]], select=0.90, report=0.71, adaptation="lars"),
        _run("layerwise", 2e-4, 0, [[4, 0.70]], select=0.70, report=0.70, decay=0.8, adaptation="lars"),
        _run("layerwise", 2e-4, 1, [[4, 0.80]], select=0.70, report=0.80, decay=0.8, adaptation="lars"),
    ]
    summary = quality.summarize_task(runs)
    assert summary["arms"]["uniform"]["best_config"] == "uniform lr=1e-04"
    assert summary["arms"]["uniform"]["grid_report"]["mean"] == pytest.approx(0.71)
    assert [entry["label"] for entry in summary["adaptive"]] == [
        "uniform lr=1e-04 +lars",
        "layerwise lr=2e-04 decay=0.8 +lars",
    ]
    on_uniform, on_layerwise = summary["adaptive"]
    assert on_uniform["twin"] == "uniform lr=1e-04"
    assert on_uniform["minus_twin"]["per_seed"] == pytest.approx([0.03, -0.01])
    assert on_layerwise["twin"] == "layerwise lr=2e-04 decay=0.8"
    assert on_layerwise["minus_twin"]["per_seed"] == pytest.approx([-0.04, 0.02])
    assert on_layerwise["minus_uniform_best"]["per_seed"] == pytest.approx([0.00, 0.08])


def test_adaptive_grid_adds_each_method_on_top_of_each_configuration_and_refuses_unknown_methods():
    args = quality.build_parser().parse_args(
        ["--uniform-lrs", "1e-4", "--layerwise-lrs", "2e-4", "--layer-decays", "0.8", "--adaptations", "lars,autolr"]
    )
    assert [config.label for config in quality.grid(args)] == [
        "uniform lr=1e-04",
        "layerwise lr=2e-04 decay=0.8",
        "uniform lr=1e-04 +lars",
        "layerwise lr=2e-04 decay=0.8 +lars",
        "uniform lr=1e-04 +autolr",
        "layerwise lr=2e-04 decay=0.8 +autolr",
    ]
    with pytest.raises(SystemExit, match=r"--adaptations: unknown method\(s\) \['lamb'\]"):
        quality.grid(quality.build_parser().parse_args(["--adaptations", "lars,lamb"]))


def test_search_cost_counts_trials_and_steps_until_within_half_a_point_of_the_grids_seed0_best():
    grid_runs = [
        _run("uniform", 1e-4, 0, [[4, 0.70]], select=0.850, report=0.70),
        _run("uniform", 1e-4, 1, [[4, 0.70]], select=0.990, report=0.70),  # seed 1: not the reference
        _run("layerwise", 2e-4, 0, [[4, 0.74]], select=0.860, report=0.74, decay=0.8),
        _run("uniform", 1e-4, 0, [[4, 0.70]], select=0.950, report=0.70, adaptation="lars"),  # adaptive: left out
    ]
    trial = lambda state, value, steps: {"state": state, "value": value, "last_reported_value": value, "steps": steps}  # noqa: E731
    search = {
        "steps_per_trial": 64,
        "best_params": {"learning_rate": 2e-4},
        "best_value": 0.858,
        "trials": [
            trial("COMPLETE", 0.80, 64),
            trial("PRUNED", None, 16),
            trial("COMPLETE", 0.855, 64),
            trial("COMPLETE", 0.858, 64),
        ],
    }
    search["trials"][1]["last_reported_value"] = 0.9  # pruned trials never count as reaching it
    cost = quality.search_cost(search, grid_runs, grid_max_steps=64)
    assert cost == {
        "grid_best": {"label": "layerwise lr=2e-04 decay=0.8", "select_accuracy": 0.860},
        "grid_configs": 2,
        "grid_steps": 128,
        "trials_needed": 3,
        "steps_needed": 144,
        "trials": 4,
        "steps": 208,
        "best_params": {"learning_rate": 2e-4},
        "best_value": 0.858,
    }


def test_benchmarks_md_holds_the_report_of_the_committed_results(capsys):
    import report

    text = report.main([])
    capsys.readouterr()
    document = (Path(__file__).resolve().parent.parent / "BENCHMARKS.md").read_text(encoding="utf-8")
    begin, end = "<!-- report.py begins -->\n", "<!-- report.py ends -->"
    pasted = document[document.index(begin) + len(begin) : document.index(end)]
    assert pasted.strip() == text.strip(), (
        "BENCHMARKS.md is out of date: paste the output of python benchmarks/report.py"
    )


import evidence  # noqa: E402
import evidence_summary  # noqa: E402


def _evidence_run(arm, lr, seed, select, report, decay=1.0, reinit=0, curve=None):
    spec = evidence.RunSpec("text", "e5-small", "rte", arm, lr, decay, reinit_top_layers=reinit, seed=seed)
    return {
        "spec": {
            "study": "text",
            "model": "e5-small",
            "task": "rte",
            "arm": arm,
            "learning_rate": lr,
            "layer_decay": decay,
            "layer_grouping": "block",
            "reinit_top_layers": reinit,
            "budget": "standard",
            "seed": seed,
        },
        "config_label": spec.config_label,
        "curve": curve or [[10, select - 0.1], [20, select]],
        "select_score": select,
        "report_score": report,
    }


def test_evidence_run_files_name_every_setting():
    spec = evidence.RunSpec("cnn", "efficientnet-lite0", "cifar10", "layerwise", 1e-3, 0.7, "stage", seed=2)
    assert spec.config_label == "layerwise lr=1e-03 decay=0.7 grouping=stage"
    assert spec.file_name == "efficientnet-lite0__cifar10__layerwise_lr1e-03_decay0.7_groupingstage__seed2.json"
    reinit = evidence.RunSpec(
        "text", "e5-small", "rte", "layerwise+reinit", 1e-4, 0.9, reinit_top_layers=2, budget="long"
    )
    assert reinit.file_name == "e5-small__rte__layerwise-reinit_lr1e-04_decay0.9_reinit2_budgetlong__seed0.json"


def test_rate_span_keeps_the_rates_within_one_point_of_the_best():
    span = evidence_summary.rate_span({1e-4: 0.80, 3e-4: 0.7905, 1e-3: 0.7895})
    assert span == {"rates": [1e-4, 3e-4], "span": pytest.approx(3.0), "grid": [1e-4, 3e-4, 1e-3]}


def test_t_interval_of_two_values_uses_one_degree_of_freedom():
    low, high = evidence_summary.t_interval([0.01, 0.03])
    half = 12.706204736 * 0.0141421356 / 1.4142135624  # t(0.975, 1) * std / sqrt(n)
    assert (low, high) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    assert evidence_summary.t_interval([0.5]) is None


def test_evidence_summary_picks_each_arms_rate_on_selection_and_pairs_by_seed():
    runs = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        runs += [
            _evidence_run("uniform", 1e-5, seed, select=0.60, report=0.61 + shift),
            _evidence_run("uniform", 1e-4, seed, select=0.65, report=0.60 + shift),  # best on selection, not on report
            _evidence_run("layerwise", 1e-5, seed, select=0.62, report=0.64 + shift, decay=0.8),
            _evidence_run("layerwise", 1e-4, seed, select=0.66, report=0.66 + shift + 0.01 * seed, decay=0.8),
            _evidence_run("reinit", 1e-4, seed, select=0.50, report=0.55 + shift, reinit=2),
        ]
    summary = evidence_summary.summarize_group(runs)
    arms = summary["arms"]
    assert list(arms) == ["uniform", "layerwise decay=0.8", "reinit reinit=2"]
    assert arms["uniform"]["best_config"] == "uniform lr=1e-04"
    assert arms["uniform"]["best_report"]["mean"] == pytest.approx(0.61)
    assert arms["layerwise decay=0.8"]["best_config"] == "layerwise lr=1e-04 decay=0.8"
    difference = arms["layerwise decay=0.8"]["paired_difference"]
    assert difference["mean"] == pytest.approx(0.065) and difference["n"] == 2
    assert arms["reinit reinit=2"]["paired_difference"]["mean"] == pytest.approx(-0.05)
    assert arms["uniform"]["rate_span"]["rates"] == [1e-5, 1e-4]
    assert arms["layerwise decay=0.8"]["rate_span"]["rates"] == [1e-4]
    assert arms["uniform"]["best_curve"] == [[10, pytest.approx(0.55), 0.0], [20, pytest.approx(0.65), 0.0]]
    assert summary["heatmap"] == {
        "rates": [1e-5, 1e-4],
        "decays": [1.0, 0.8],
        "scores": [[pytest.approx(0.62), pytest.approx(0.61)], [pytest.approx(0.65), pytest.approx(0.675)]],
        "seeds": [0, 1],
    }


def test_a_staged_grid_selects_and_spans_on_the_seeds_that_ran_every_rate():
    runs = [
        _evidence_run("uniform", 1e-5, 0, select=0.60, report=0.62),
        _evidence_run("uniform", 1e-4, 0, select=0.65, report=0.63),
        # seeds 1 and 2 ran the selected rate only; their low selection scores must not move the choice
        _evidence_run("uniform", 1e-4, 1, select=0.50, report=0.57),
        _evidence_run("uniform", 1e-4, 2, select=0.52, report=0.59),
    ]
    summary = evidence_summary.summarize_group(runs)
    uniform = summary["arms"]["uniform"]
    assert uniform["best_config"] == "uniform lr=1e-04"
    assert uniform["grid_seeds"] == [0]
    assert uniform["best_report"]["mean"] == pytest.approx((0.63 + 0.57 + 0.59) / 3)
    assert uniform["rate_span"]["rates"] == [1e-5, 1e-4]
    assert summary["heatmap"]["scores"] == [[pytest.approx(0.62), pytest.approx(0.63)]]
    assert summary["heatmap"]["seeds"] == [0]


def _write_run(directory, spec, select):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / spec.file_name).write_text(json.dumps({"select_score": select}))


def test_text_grid_seeds_hold_later_seeds_back_until_the_grid_has_run_then_run_the_selected_rates(tmp_path):
    args = evidence.build_parser().parse_args(
        [
            "--studies",
            "text",
            "--tasks",
            "rte",
            "--text-seeds",
            "3",
            "--text-grid-seeds",
            "1",
            "--text-lrs",
            "1e-5,1e-4",
            "--text-decays",
            "0.9",
            "--reinit-ks",
            "1,2",
            "--reinit-lrs",
            "1e-5,1e-4",
            "--output-dir",
            str(tmp_path),
        ]
    )
    args.output_dir = tmp_path
    specs = evidence.all_specs(args)
    assert {spec.seed for spec in specs} == {0}
    assert len(specs) == 2 * 2 + 2 * 2 + 2  # two rates x (uniform, decay 0.9, re-init k = 1, 2, decay + re-init)

    selection = {
        ("uniform", 1e-5): 0.61,
        ("uniform", 1e-4): 0.60,
        ("layerwise", 1e-5): 0.60,
        ("layerwise", 1e-4): 0.60,
        ("reinit", 1e-5): 0.58,
        ("reinit", 1e-4): 0.62,
        ("layerwise+reinit", 1e-5): 0.63,
        ("layerwise+reinit", 1e-4): 0.59,
    }
    unfinished = next(spec for spec in specs if spec.arm == "layerwise+reinit")
    for spec in specs:
        if spec != unfinished:
            _write_run(tmp_path / "text", spec, selection[spec.arm, spec.learning_rate])
    assert {spec.seed for spec in evidence.all_specs(args)} == {0}  # one grid run missing holds every later seed back

    _write_run(tmp_path / "text", unfinished, selection[unfinished.arm, unfinished.learning_rate])
    later = [spec for spec in evidence.all_specs(args) if spec.seed > 0]
    assert {(spec.seed, spec.config_label) for spec in later} == {
        (seed, label)
        for seed in (1, 2)
        for label in (
            "uniform lr=1e-05",
            "layerwise lr=1e-05 decay=0.9",  # a tie picks the lower rate
            "reinit lr=1e-04 reinit=1",
            "reinit lr=1e-04 reinit=2",
            "layerwise+reinit lr=1e-05 decay=0.9 reinit=2",
        )
    }
    assert len(later) == 2 * 5


def test_search_cost_counts_trials_and_steps_until_half_a_point_of_the_grids_best():
    grid = [
        _evidence_run("uniform", 1e-4, 0, select=0.60, report=0.6) | {"steps": 100},
        _evidence_run("layerwise", 1e-4, 0, select=0.64, report=0.6, decay=0.9) | {"steps": 100},
        _evidence_run("layerwise", 1e-4, 1, select=0.90, report=0.6, decay=0.9)
        | {"steps": 100},  # seed 1: not compared
        _evidence_run("reinit", 1e-4, 0, select=0.99, report=0.6, reinit=2)
        | {"steps": 100},  # not in the lr x decay grid
    ]
    trial = {"state": "COMPLETE", "params": {}, "last_reported_value": None}
    search = {
        "best_params": {"learning_rate": 2e-4, "layer_decay": 0.8},
        "best_value": 0.64,
        "trials": [
            trial | {"value": 0.50, "steps": 100},
            {"state": "PRUNED", "params": {}, "value": None, "last_reported_value": 0.7, "steps": 25},
            trial | {"value": 0.636, "steps": 100},
            trial | {"value": 0.64, "steps": 100},
        ],
    }
    cost = evidence_summary.search_cost(search, grid)
    assert cost["grid_best"] == {"label": "layerwise lr=1e-04 decay=0.9", "select_score": 0.64}
    assert (cost["grid_configs"], cost["grid_steps"]) == (2, 200)
    assert (cost["trials_needed"], cost["steps_needed"]) == (3, 225)
    assert (cost["trials"], cost["steps"]) == (4, 325)


def test_vit_uniform_lrs_extend_the_uniform_arm_only():
    args = evidence.build_parser().parse_args(
        ["--studies", "vit", "--vit-seeds", "1", "--vit-uniform-lrs", "1e-5,2e-5"]
    )
    labels = [spec.config_label for spec in evidence.all_specs(args)]
    assert [label for label in labels if label.startswith("uniform")] == [
        "uniform lr=5e-05",
        "uniform lr=2e-04",
        "uniform lr=8e-04",
        "uniform lr=1e-05",
        "uniform lr=2e-05",
    ]
    assert len(labels) == 1 + 5 + 3 * 3  # probe, uniform, three decays x three rates


@pytest.mark.skipif(
    not (bench_utils.DATA_DIR / "cola" / "train.tsv").is_file(), reason="../shared/data/cola is missing"
)
def test_cola_full_trains_on_the_whole_cola_training_file_for_three_epochs():
    setup = evidence.SETUPS["cola-full"]
    texts, labels = evidence.text_rows(setup.data, "train")
    assert (setup.data, setup.metric, setup.report_split) == ("cola", "matthews_correlation", "dev")
    assert setup.train_size + setup.select_size == len(texts) == len(labels) == 8551
    assert setup.max_steps == math.ceil(3 * setup.train_size / setup.batch_size) == 1510
    assert evidence.SETUPS["cola"].data == ""

"""The arithmetic behind the BENCHMARKS.md figures: spreads, best-configuration choice, time to accuracy."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_utils  # noqa: E402
import quality  # noqa: E402


def _run(arm, lr, seed, curve, select, report, decay=1.0):
    config = quality.ArmConfig(arm, lr, decay)
    return {
        "config": {"arm": arm, "learning_rate": lr, "layer_decay": decay},
        "label": config.label,
        "seed": seed,
        "curve": curve,
        "select_accuracy": select,
        "report_accuracy": report,
        "train_seconds": 10.0,
    }


def test_median_and_spread_uses_inclusive_quartiles():
    assert bench_utils.median_and_spread([4.0, 1.0, 3.0, 2.0, 5.0]) == {
        "median": 3.0, "q1": 2.0, "q3": 4.0, "min": 1.0, "max": 5.0, "n": 5,
    }
    assert bench_utils.median_and_spread([7.0]) == {"median": 7.0, "q1": 7.0, "q3": 7.0, "min": 7.0, "max": 7.0, "n": 1}


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


def test_benchmarks_md_holds_the_report_of_the_committed_results(capsys):
    import report

    text = report.main([])
    capsys.readouterr()
    document = (Path(__file__).resolve().parent.parent / "BENCHMARKS.md").read_text(encoding="utf-8")
    begin, end = "<!-- report.py begins -->\n", "<!-- report.py ends -->"
    pasted = document[document.index(begin) + len(begin):document.index(end)]
    assert pasted.strip() == text.strip(), "BENCHMARKS.md is out of date: paste the output of python benchmarks/report.py"

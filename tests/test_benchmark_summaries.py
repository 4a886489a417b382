"""The arithmetic behind the BENCHMARKS.md figures: spreads, the configuration chosen on the selection split, paired
differences, rate spans, the heatmap, time to accuracy, the search's cost; and BENCHMARKS.md against the committed
results."""

import math
import sys
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_utils
import report
from engine import Point, Study, grid, load_study, views
from engine.classification import SETUPS, Classification, arm, arms, text_rows
from engine.plan import planned_runs
from engine.store import Run, run_id
from engine.summary import first_step_reaching, rate_span, search_cost


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


def test_t_interval_of_two_values_uses_one_degree_of_freedom():
    low, high = bench_utils.t_interval([0.01, 0.03])
    half = 12.706204736 * 0.0141421356 / 1.4142135624  # t(0.975, 1) * std / sqrt(n)
    assert (low, high) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    assert bench_utils.t_interval([0.5]) is None


def test_first_step_reaching_returns_the_first_evaluation_at_or_above_the_target():
    curve = [[16, 0.70], [32, 0.80], [48, 0.79], [64, 0.81]]
    assert first_step_reaching(curve, 0.80) == 32
    assert first_step_reaching(curve, 0.805) == 64
    assert first_step_reaching(curve, 0.9) is None


def test_rate_span_keeps_the_rates_within_one_point_of_the_best():
    span = rate_span({1e-4: 0.80, 3e-4: 0.7905, 1e-3: 0.7895})
    assert span == {"rates": [1e-4, 3e-4], "span": pytest.approx(3.0), "grid": [1e-4, 3e-4, 1e-3]}


def _results(study, runs):
    """Records of ``study`` from ``(arm, point, seed, select, report, curve)``."""
    results = {}
    for arm_name, point, seed, select, report_score, curve in runs:
        point = point if isinstance(point, Point) else Point(point)
        run = Run(arm_name, point, seed)
        results[run_id(*run)] = {
            "arm": arm_name,
            "learning_rate": point.learning_rate,
            "seed": seed,
            "arguments": study.executor.arguments(study, run),
            "status": "ok",
            "metrics": {"select_score": select, "report_score": report_score},
            "curve": curve or [[10, select - 0.1], [20, select]],
            "git_revision": "abc",
            "wall_seconds": 10.0,
            "num_blocks": 4,
        }
    return results


def _quality_study(**overrides):
    settings = dict(
        name="quality_demo",
        executor=Classification("minilm-l6", "quality-sst2"),
        **arms(arm("uniform"), arm("layerwise", rates=grid((2e-4,), layer_decay=(0.8,)))),
        learning_rates=(1e-4, 2e-4),
        grid_seeds=(0, 1),
        seeds=(0, 1),
        metric="report_score",
        choose_on="select_score",
        choice_seeds="common seeds",
    )
    return Study(**(settings | overrides))


LAYERWISE = Point(2e-4, (("layer_decay", 0.8),))


def test_the_quality_arms_are_chosen_on_the_selection_split_not_the_report_split():
    study = _quality_study()
    results = _results(
        study,
        [
            # uniform 1e-4 is better on the selection split, uniform 2e-4 on the report split
            ("uniform", 1e-4, 0, 0.80, 0.70, [[2, 0.60], [4, 0.70]]),
            ("uniform", 1e-4, 1, 0.82, 0.72, [[2, 0.62], [4, 0.72]]),
            ("uniform", 2e-4, 0, 0.70, 0.75, [[2, 0.70], [4, 0.75]]),
            ("uniform", 2e-4, 1, 0.70, 0.77, [[2, 0.70], [4, 0.77]]),
            ("layerwise", LAYERWISE, 0, 0.81, 0.74, [[2, 0.71], [4, 0.74]]),
            ("layerwise", LAYERWISE, 1, 0.83, 0.78, [[2, 0.69], [4, 0.78]]),
        ],
    )
    view = views.quality_view(study, results)
    uniform = view["arms"]["uniform"]
    assert uniform["best"]["label"] == "uniform lr=1e-04"
    assert bench_utils.mean_and_std(list(uniform["best"]["report"].values()))["mean"] == pytest.approx(0.71)
    single, label = uniform["best_single"]
    assert (label, single["seed"], single["metrics"]["report_score"]) == ("uniform lr=2e-04", 1, 0.77)
    assert uniform["grid"]["mean"] == pytest.approx(0.735)
    assert view["arms"]["layerwise"]["best"]["label"] == "layerwise lr=2e-04 decay=0.8"
    tta = view["time_to_accuracy"]
    # target: the uniform best configuration's mean final curve accuracy, (0.70 + 0.72) / 2
    assert tta["target"] == pytest.approx(0.71)
    # seed 0 of the uniform arm ends below the mean of both seeds, so it never reaches it
    assert tta["uniform"] == {"mean_curve_steps": 4, "per_seed_steps": {"0": None, "1": 4}}
    assert tta["layerwise"] == {"mean_curve_steps": 4, "per_seed_steps": {"0": 2, "1": 4}}
    assert view["paired_difference"]["differences"] == pytest.approx([0.04, 0.06])
    assert view["paired_difference"]["mean"] == pytest.approx(0.05)


def test_adaptations_are_compared_with_their_twins_and_stay_out_of_the_arms_choice():
    study = _quality_study(
        **arms(
            arm("uniform"),
            arm("layerwise", rates=(LAYERWISE,)),
            arm("adaptive", adaptation="lars"),
            arm("layerwise", adaptation="lars", rates=(LAYERWISE,)),
        ),
        learning_rates=(1e-4,),
    )
    results = _results(
        study,
        [
            ("uniform", 1e-4, 0, 0.80, 0.70, None),
            ("uniform", 1e-4, 1, 0.82, 0.72, None),
            ("layerwise", LAYERWISE, 0, 0.81, 0.74, None),
            ("layerwise", LAYERWISE, 1, 0.83, 0.78, None),
            # the best selection score of all, but an adaptation: not a candidate for either arm's best
            ("adaptive adapt=lars", 1e-4, 0, 0.90, 0.73, None),
            ("adaptive adapt=lars", 1e-4, 1, 0.90, 0.71, None),
            ("layerwise adapt=lars", LAYERWISE, 0, 0.70, 0.70, None),
            ("layerwise adapt=lars", LAYERWISE, 1, 0.70, 0.80, None),
        ],
    )
    view = views.quality_view(study, results)
    assert view["arms"]["uniform"]["best"]["label"] == "uniform lr=1e-04"
    assert view["arms"]["uniform"]["grid"]["mean"] == pytest.approx(0.71)
    on_uniform, on_layerwise = view["adaptive"]
    assert on_uniform["config"]["label"] == "uniform lr=1e-04 +lars"
    assert on_uniform["minus_twin"]["differences"] == pytest.approx([0.03, -0.01])
    assert on_layerwise["config"]["label"] == "layerwise lr=2e-04 decay=0.8 +lars"
    assert on_layerwise["minus_twin"]["differences"] == pytest.approx([-0.04, 0.02])
    assert on_layerwise["minus_uniform_best"]["differences"] == pytest.approx([0.00, 0.08])


def test_the_quality_grids_list_their_configurations_in_the_reports_order():
    study = load_study("quality_adaptive_sst2")
    labels = [views.quality_label(study, Run(name, point, 0)) for name in study.arms for point in study.points(name)]
    assert labels[:4] == [
        "uniform lr=1e-04",
        "layerwise lr=2e-04 decay=0.8",
        "uniform lr=1e-04 +singh2015",
        "layerwise lr=2e-04 decay=0.8 +singh2015",
    ]
    grid_study = load_study("quality_sst2")
    assert [
        views.quality_label(grid_study, Run("layerwise", point, 0)) for point in grid_study.points("layerwise")
    ] == [
        "layerwise lr=2e-04 decay=0.8",
        "layerwise lr=4e-04 decay=0.8",
        "layerwise lr=2e-04 decay=0.9",
        "layerwise lr=4e-04 decay=0.9",
    ]


def test_search_cost_counts_trials_and_steps_until_within_half_a_point_of_the_grids_best():
    grid_runs = [
        {"label": "uniform lr=1e-04", "select_score": 0.850, "steps": 64},
        {"label": "layerwise lr=2e-04 decay=0.8", "select_score": 0.860, "steps": 64},
    ]
    trial = lambda state, value, steps: {"state": state, "value": value, "last_reported_value": value, "steps": steps}  # noqa: E731
    search = {
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
    assert search_cost(search, grid_runs) == {
        "grid_best": {"label": "layerwise lr=2e-04 decay=0.8", "select_score": 0.860},
        "grid_configs": 2,
        "grid_steps": 128,
        "trials_needed": 3,
        "steps_needed": 144,
        "trials": 4,
        "steps": 208,
        "best_params": {"learning_rate": 2e-4},
        "best_value": 0.858,
    }


def test_the_search_is_measured_against_the_seed_0_runs_of_the_lr_x_decay_grid_only():
    study = _text_study(seeds=(0, 1))
    results = _results(
        study,
        [
            ("uniform", 1e-4, 0, 0.60, 0.6, None),
            ("layerwise decay=0.9", 1e-4, 0, 0.64, 0.6, None),
            ("layerwise decay=0.9", 1e-4, 1, 0.90, 0.6, None),  # seed 1: not compared
            ("reinit reinit=2", 1e-4, 0, 0.99, 0.6, None),  # not in the lr x decay grid
        ],
    )
    grid_runs = views.search_grid(study, results, study.executor.label)
    assert grid_runs == [
        {"label": "uniform lr=1e-04", "select_score": 0.60, "steps": 188},
        {"label": "layerwise lr=1e-04 decay=0.9", "select_score": 0.64, "steps": 188},
    ]


def _text_study(**overrides):
    settings = dict(
        name="text_demo",
        title="text",
        executor=Classification("e5-small", "rte"),
        **arms(arm("uniform"), arm("layerwise", 0.9), arm("reinit", reinit_top_layers=2, rates=(1e-4,))),
        learning_rates=(1e-5, 1e-4),
        grid_seeds=(0,),
        seeds=(0, 1, 2),
        metric="report_score",
        choose_on="select_score",
        choice_seeds="common seeds",
    )
    return Study(**(settings | overrides))


def test_classification_arms_and_run_files_name_every_setting():
    name, _, _ = arm("layerwise", 0.7, "stage")
    assert name == "layerwise decay=0.7 grouping=stage"
    assert run_id(name, Point(1e-3), 2) == "layerwise_decay0.7_groupingstage__lr0.001__seed2"
    study = Study(
        name="long", executor=Classification("e5-small", "cola", "long"), **arms(arm("layerwise+reinit", 0.9, reinit_top_layers=2)),
        learning_rates=(1e-4,), metric="report_score",
    )  # fmt: skip
    assert study.executor.label(study, Run("layerwise+reinit decay=0.9 reinit=2", Point(1e-4), 0)) == (
        "layerwise+reinit lr=1e-04 decay=0.9 reinit=2 budget=long"
    )
    assert (
        study.executor.arguments(study, Run("layerwise+reinit decay=0.9 reinit=2", Point(1e-4), 0))["steps"] == 3 * 188
    )


def test_the_evidence_view_picks_each_arms_rate_on_selection_and_pairs_by_seed():
    study = _text_study(
        grid_seeds=(0, 1),
        seeds=(0, 1),
        **arms(arm("uniform"), arm("layerwise", 0.8), arm("reinit", reinit_top_layers=2, rates=(1e-4,))),
    )
    runs = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        runs += [
            ("uniform", 1e-5, seed, 0.60, 0.61 + shift, None),
            ("uniform", 1e-4, seed, 0.65, 0.60 + shift, None),  # best on selection, not on report
            ("layerwise decay=0.8", 1e-5, seed, 0.62, 0.64 + shift, None),
            ("layerwise decay=0.8", 1e-4, seed, 0.66, 0.66 + shift + 0.01 * seed, None),
            ("reinit reinit=2", 1e-4, seed, 0.50, 0.55 + shift, None),
        ]
    view = views.evidence_view(study, _results(study, runs))
    chosen = view["arms"]
    assert list(chosen) == ["uniform", "layerwise decay=0.8", "reinit reinit=2"]
    assert chosen["uniform"]["best"]["label"] == "uniform lr=1e-04"
    assert chosen["layerwise decay=0.8"]["best"]["label"] == "layerwise lr=1e-04 decay=0.8"
    difference = chosen["layerwise decay=0.8"]["paired_difference"]
    assert difference["mean"] == pytest.approx(0.065) and len(difference["seeds"]) == 2
    assert chosen["reinit reinit=2"]["paired_difference"]["mean"] == pytest.approx(-0.05)
    assert chosen["uniform"]["rate_span"]["rates"] == [1e-5, 1e-4]
    assert chosen["layerwise decay=0.8"]["rate_span"]["rates"] == [1e-4]
    assert bench_utils.mean_curve(chosen["uniform"]["best"]["runs"]) == [
        [10, pytest.approx(0.55), 0.0],
        [20, pytest.approx(0.65), 0.0],
    ]
    assert view["heatmap"] == {
        "rates": [1e-5, 1e-4],
        "decays": [1.0, 0.8],
        "scores": [[pytest.approx(0.62), pytest.approx(0.61)], [pytest.approx(0.65), pytest.approx(0.675)]],
        "seeds": [0, 1],
    }


def test_a_staged_grid_chooses_and_spans_on_the_seeds_that_ran_every_rate():
    study = _text_study(**arms(arm("uniform")))
    results = _results(
        study,
        [
            ("uniform", 1e-5, 0, 0.60, 0.62, None),
            ("uniform", 1e-4, 0, 0.65, 0.63, None),
            # seeds 1 and 2 ran the chosen rate only; their low selection scores must not move the choice
            ("uniform", 1e-4, 1, 0.50, 0.57, None),
            ("uniform", 1e-4, 2, 0.52, 0.59, None),
        ],
    )
    assert planned_runs(study, results) == []
    uniform = views.evidence_view(study, results)["arms"]["uniform"]
    assert uniform["best"]["label"] == "uniform lr=1e-04" and uniform["grid_seeds"] == [0]
    assert bench_utils.mean_and_std(list(uniform["best"]["report"].values()))["mean"] == pytest.approx(
        (0.63 + 0.57 + 0.59) / 3
    )
    assert uniform["rate_span"]["rates"] == [1e-5, 1e-4]
    assert "| uniform | 1e-04 (chosen on seeds 0) | 0.5967 +- 0.0306 | 3 |" in report.evidence_section(study, results)


def test_a_staged_grid_holds_later_seeds_back_until_every_arm_has_its_grid_then_runs_the_chosen_rates():
    study = _text_study()
    selection = {("uniform", 1e-5): 0.61, ("uniform", 1e-4): 0.60, ("layerwise decay=0.9", 1e-5): 0.60}
    selection |= {("layerwise decay=0.9", 1e-4): 0.60, ("reinit reinit=2", 1e-4): 0.62}
    grid_runs = [(name, rate, 0, value, 0.5, None) for (name, rate), value in selection.items()]
    assert {run.seed for run in planned_runs(study, _results(study, grid_runs[:-1]))} == {0, 1, 2}
    assert [run for run in planned_runs(study, _results(study, grid_runs[:-1])) if run.arm == "reinit reinit=2"] == [
        Run("reinit reinit=2", Point(1e-4), 0)
    ]  # an arm whose grid has not run waits; the others go on
    later = planned_runs(study, _results(study, grid_runs))
    assert later == [
        Run(name, Point(rate), seed)
        for seed in (1, 2)
        for name, rate in (("uniform", 1e-5), ("layerwise decay=0.9", 1e-5), ("reinit reinit=2", 1e-4))
    ]  # a tie picks the lower rate


@pytest.mark.skipif(
    not (bench_utils.DATA_DIR / "cola" / "train.tsv").is_file(), reason="../shared/data/cola is missing"
)
def test_cola_full_trains_on_the_whole_cola_training_file_for_three_epochs():
    setup = SETUPS["cola-full"]
    texts, labels = text_rows(setup.data, "train")
    assert (setup.data, setup.metric, setup.report_split) == ("cola", "matthews_correlation", "dev")
    assert setup.train_size + setup.select_size == len(texts) == len(labels) == 8551
    assert setup.max_steps == math.ceil(3 * setup.train_size / setup.batch_size) == 1510
    assert SETUPS["cola"].data == ""


def test_benchmarks_md_holds_the_report_of_the_committed_results(capsys):
    text = report.main([])
    capsys.readouterr()
    document = (Path(__file__).resolve().parent.parent / "BENCHMARKS.md").read_text(encoding="utf-8")
    begin, end = "<!-- report.py begins -->\n", "<!-- report.py ends -->"
    pasted = document[document.index(begin) + len(begin) : document.index(end)]
    assert pasted.strip() == text.strip(), (
        "BENCHMARKS.md is out of date: paste the output of python benchmarks/report.py"
    )

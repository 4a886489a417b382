"""A new study is one declaration: a tiny study of two arms declared in a file, planned, run by a stub executor on
stubbed scores (seconds), stored, summarized and reported; and the shared timing helpers of the benchmarks."""

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest


sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import report
import study as study_cli
import timing
from engine import Point, load_study
from engine.plan import chosen_point, planned_runs
from engine.runner import Options, run_study
from engine.sections import SECTIONS
from engine.store import Run, RunStore, run_id
from engine.summary import summarize
from engine.views import section_studies, view_of


@dataclass(frozen=True)
class Stub:
    """An executor whose runs score by formula: uniform peaks at 1e-4, decay at 3e-4 and a little higher, and every
    arm of a seed shifts together (the seeds pair the arms); the selection split ranks like the report split."""

    model: str = "tiny"

    def describe(self):
        return {"model": self.model}

    def arguments(self, study, run):
        return {"settings": study.arms[run.arm], "learning_rate": run.point.learning_rate, "seed": run.seed}

    def miniature(self):
        return self

    def prepare(self, study, options):
        return {}

    def describe_run(self, study, run, options, context):
        return run_id(*run)

    def execute(self, study, run, options, context):
        best = 3e-4 if study.arms[run.arm]["layer_decay"] < 1 else 1e-4
        score = 0.8 - 0.1 * abs(run.point.learning_rate - best) / best + 0.01 * run.seed
        score += 0.02 if best == 3e-4 else 0.0
        return {"status": "ok", "metrics": {"select_score": score - 0.05, "report_score": score}}


DECLARATION = '''"""Tiny: uniform rates against decay 0.8, two rates each on seed 0, then seeds 1-2 at each arm's choice."""

from engine import Study
from test_study_engine import Stub

STUDY = Study(
    name="tiny",
    executor=Stub(),
    arms={"uniform": {"layer_decay": 1.0}, "decay0.8": {"layer_decay": 0.8}},
    learning_rates=(1e-4, 3e-4),
    metric="report_score",
    choose_on="select_score",
    seeds=(0, 1, 2),
)
'''


@pytest.fixture
def tiny(tmp_path):
    (tmp_path / "tiny.py").write_text(DECLARATION, encoding="utf-8")
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    return load_study("tiny", tmp_path)


def test_a_study_declared_in_one_file_is_planned_run_stored_summarized_and_reported(tiny, tmp_path):
    options = Options(root=tmp_path / "results", scratch=tmp_path / "scratch")
    store = RunStore(tiny, options.root, options.scratch)
    assert planned_runs(tiny, {}) == [
        Run(arm, Point(rate), 0) for arm in ("uniform", "decay0.8") for rate in (1e-4, 3e-4)
    ]

    assert run_study(tiny, Options(root=options.root, scratch=options.scratch, max_runs=4)) == 4
    results = store.load()
    assert chosen_point(tiny, "uniform", results) == Point(1e-4)
    assert chosen_point(tiny, "decay0.8", results) == Point(3e-4)
    assert planned_runs(tiny, results) == [Run("uniform", Point(1e-4), 1), Run("decay0.8", Point(3e-4), 1)] + [
        Run("uniform", Point(1e-4), 2),
        Run("decay0.8", Point(3e-4), 2),
    ]

    assert run_study(tiny, options) == 4  # the later seeds, then nothing is left
    results = store.load()
    assert len(results) == 8 and planned_runs(tiny, results) == [] and store.stale(results) == []
    record = results["decay0.8__lr0.0003__seed2"]
    assert record["arguments"] == {"settings": {"layer_decay": 0.8}, "learning_rate": 3e-4, "seed": 2}
    assert record["status"] == "ok" and record["wall_seconds"] >= 0 and record["git_revision"]

    summary = summarize(tiny, results)
    decay = summary["arms"]["decay0.8"]
    assert decay["by_seed"] == {0: pytest.approx(0.82), 1: pytest.approx(0.83), 2: pytest.approx(0.84)}
    assert decay["paired_difference"]["differences"] == pytest.approx([0.02, 0.02, 0.02])
    assert decay["paired_difference"]["interval_95"] == pytest.approx([0.02, 0.02])

    table = study_cli.report_study(tiny, store, plot=False)
    assert table.startswith("tiny: model `tiny`, report_score (higher is better), rate chosen per arm on seed(s) 0.")
    assert (
        "| decay0.8 | 0.0003 | 0, 1, 2 | 0.8200, 0.8300, 0.8400 | 0.8300 | 0.0100 | +0.0200 [+0.0200, +0.0200] (3 seeds) |"
        in table
    )
    assert json.loads((store.directory / "summary.json").read_text())["arms"]["uniform"]["chosen_rate"] == 1e-4
    document = tmp_path / "BENCHMARKS.md"
    document.write_text("<!-- tiny-study results begin -->\n<!-- tiny-study results end -->\n", encoding="utf-8")
    report.update_document(document, "tiny", table)
    assert table in document.read_text()


def test_each_report_section_holds_the_studies_that_declare_it_in_their_declared_order():
    assert {section.name: [study.name for study in section_studies(section)] for section in SECTIONS} == {
        "quality": ["quality_sst2", "quality_rte"],
        "quality_adaptive": ["quality_adaptive_sst2"],
        "evidence": [
            "vit",
            "cnn",
            "cola_full_e5",
            "cola_e5",
            "cola_long_e5",
            "rte_e5",
            "cola_full_minilm",
            "cola_minilm",
            "sst2_minilm",
        ],
    }
    assert [view_of(load_study(name)) for name in ("quality_rte", "vit", "sft")] == ["quality", "evidence", ""]


def test_a_study_without_a_section_is_reported_on_its_own_and_an_unknown_section_is_refused(tiny):
    assert (tiny.section, view_of(tiny)) == ("", "")  # study.py report renders its study_table (test above)
    with pytest.raises(ValueError, match=r"^Study tiny: No report section 'detection': declare one of quality, "):
        replace(tiny, section="detection")


def test_a_dry_run_prints_what_would_run_and_runs_nothing(tiny, tmp_path, capsys):
    options = Options(root=tmp_path / "results", scratch=tmp_path / "scratch", dry_run=True)
    assert run_study(tiny, options) == 0
    assert capsys.readouterr().out.split() == [
        "uniform__lr0.0001__seed0",
        "uniform__lr0.0003__seed0",
        "decay0.8__lr0.0001__seed0",
        "decay0.8__lr0.0003__seed0",
    ]
    assert not (tmp_path / "results").exists()


def test_the_miniature_keeps_each_arms_first_point_on_seed_0(tiny):
    from engine.runner import miniature

    small = miniature(tiny)
    assert [small.points(arm) for arm in small.arms] == [(Point(1e-4),), (Point(1e-4),)]
    assert (small.grid_seeds, small.seeds) == ((0,), (0,))


def test_every_declared_study_loads_and_its_committed_runs_match_its_declaration(capsys):
    listing = study_cli.main(["list"])
    capsys.readouterr()
    lines = dict(line.split(": ", 1) for line in listing.splitlines())
    assert set(lines) >= {"vit", "cnn", "rte_e5", "quality_sst2", "quality_adaptive_sst2", "qa", "sft"}
    assert lines["vit"].endswith("13 arms, 47 runs, 22 to run now")  # the adaptive arms not run yet
    assert lines["quality_sst2"].endswith("2 arms, 24 runs, 0 to run now")


def test_interleaved_timing_alternates_or_rotates_the_order():
    calls, order = {}, []
    for name in "abc":
        calls[name] = lambda name=name: order.append(name) or len(order)
    samples = timing.interleaved(calls, 3)
    assert "".join(order) == "abccbaabc" and samples == {"a": [1, 6, 7], "b": [2, 5, 8], "c": [3, 4, 9]}
    order.clear()
    timing.interleaved(calls, 3, rotate=True)
    assert "".join(order) == "abcbcacab"


def test_lockstep_rounds_pool_into_ratios_of_medians_per_step_and_per_round():
    rounds = [
        {
            "stock": {"step_seconds": [1.0, 1.0, 1.0], "optimizer_groups": 2},
            "llrd": {"step_seconds": [1.0, 2.0, 1.0], "optimizer_groups": 16},
        },
        {
            "stock": {"step_seconds": [2.0, 2.0, 2.0], "optimizer_groups": 2},
            "llrd": {"step_seconds": [2.0, 2.0, 4.0], "optimizer_groups": 16},
        },
    ]
    arms, ratio = timing.summarize_rounds(rounds, batch_size=8)
    assert arms["stock"]["optimizer_groups"] == 2 and arms["llrd"]["optimizer_groups"] == 16
    assert arms["stock"]["step_ms"]["median"] == 1500.0 and arms["llrd"]["step_ms"]["median"] == 2000.0
    assert ratio["of_medians"] == pytest.approx(0.75)
    assert ratio["per_round"] == [1.0, 1.0]
    assert ratio["per_step"]["n"] == 6 and ratio["per_step"]["median"] == 1.0

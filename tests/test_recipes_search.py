"""``--search_trials``: every recipe searches learning rate x layer decay, then trains the best to the end."""

import os

import pytest
import torch
from launch import accelerate_launch
from recipe_helpers import QUIET, RECIPES_DIR, read_json, run_recipe, save_tiny_text_model, shared_data, sst2_sentences


SST2_TRAIN, SST2_DEV = shared_data("sst2", "train.tsv"), shared_data("sst2", "test.tsv")

pytestmark = pytest.mark.skipif(not os.path.isfile(SST2_TRAIN), reason="../shared/data/sst2 is missing")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_text_model(str(tmp_path_factory.mktemp("tiny-bert")), sst2_sentences(2000))


def test_search_trials_writes_every_trial_and_trains_the_best_configuration(tiny_bert, tmp_path):
    pytest.importorskip("optuna")
    pytest.importorskip("matplotlib")
    output_dir = tmp_path / "out"
    arguments = f"""
        --model_name_or_path {tiny_bert} --output_dir {output_dir} --task_name sst2 --train_file {SST2_TRAIN}
        --validation_file {SST2_DEV} --max_train_samples 64 --max_eval_samples 64 --per_device_train_batch_size 16
        --num_train_epochs 1 --learning_rate 1e-3 --layer_decay 0.5 --eval_strategy steps --eval_steps 1
        --search_trials 3 --search_max_steps 2 --metric_for_best_model accuracy --logging_steps 1
    """.split()
    run_recipe("text_classification", arguments + QUIET)

    results = read_json(output_dir, "search_results.json")
    assert results["metric"] == "eval_accuracy" and results["direction"] == "maximize"
    assert len(results["trials"]) == 3
    assert all(trial["steps"] == 2 for trial in results["trials"] if trial["state"] == "COMPLETE")
    complete = [trial for trial in results["trials"] if trial["state"] == "COMPLETE"]
    best = max(complete, key=lambda trial: trial["value"])
    assert results["best_params"] == best["params"]
    assert results["best_command"].endswith(
        f"--learning_rate {best['params']['learning_rate']:.6g} --layer_decay {best['params']['layer_decay']:.6g}"
    )
    assert "--search_trials" not in results["best_command"]
    assert (output_dir / "search_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The final run trained the best configuration for the full budget (64 examples / 16 = 4 steps).
    final_args = torch.load(output_dir / "training_args.bin", weights_only=False)
    assert final_args.learning_rate == best["params"]["learning_rate"]
    assert final_args.layer_decay == best["params"]["layer_decay"]
    assert read_json(output_dir, "trainer_state.json")["global_step"] == 4
    head_rate = [
        entry["lr/head"] for entry in read_json(output_dir, "trainer_state.json")["log_history"] if "lr/head" in entry
    ]
    assert head_rate[0] == pytest.approx(best["params"]["learning_rate"], rel=1e-12)  # step 1: the peak, no warm-up
    assert (output_dir / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "flags, message",
    [
        ("--search_trials -1", "search_trials must be an integer >= 1"),
        ("--search_trials 2 --search_max_steps 0", "search_max_steps must be >= 1"),
    ],
)
def test_bad_search_flags_stop_before_any_training(tiny_bert, tmp_path, flags, message):
    arguments = (
        f"--model_name_or_path {tiny_bert} --output_dir {tmp_path / 'out'} --train_file {SST2_TRAIN} {flags}".split()
    )
    with pytest.raises(ValueError, match=message):
        run_recipe("text_classification", arguments + QUIET)
    assert not (tmp_path / "out" / "trainer_state.json").exists()


def test_search_under_two_ranks_writes_every_trial_and_trains_the_best_configuration(tiny_bert, tmp_path):
    pytest.importorskip("optuna")
    pytest.importorskip("matplotlib")
    output_dir = tmp_path / "ddp"
    accelerate_launch(
        os.path.join(RECIPES_DIR, "text_classification.py"),
        *f"""
        --model_name_or_path {tiny_bert} --output_dir {output_dir} --task_name sst2 --train_file {SST2_TRAIN}
        --validation_file {SST2_DEV} --max_train_samples 64 --max_eval_samples 32 --per_device_train_batch_size 8
        --num_train_epochs 1 --learning_rate 1e-3 --layer_decay 0.5 --eval_strategy steps --eval_steps 2
        --search_trials 2 --search_max_steps 2 --metric_for_best_model accuracy --logging_steps 1
        --cache_dir {tmp_path / "cache"}
        """.split(),
        *QUIET,
    )
    results = read_json(output_dir, "search_results.json")
    assert [trial["state"] for trial in results["trials"]] == ["COMPLETE", "COMPLETE"]  # no pruning across ranks
    assert [trial["steps"] for trial in results["trials"]] == [2, 2]
    best = max(results["trials"], key=lambda trial: trial["value"])
    assert results["best_params"] == best["params"]
    final_args = torch.load(output_dir / "training_args.bin", weights_only=False)
    assert (final_args.learning_rate, final_args.layer_decay) == (
        best["params"]["learning_rate"],
        best["params"]["layer_decay"],
    )
    # 64 examples in batches of 8 on each of 2 ranks: 4 steps, so both ranks ran the final configuration together.
    assert read_json(output_dir, "trainer_state.json")["global_step"] == 4

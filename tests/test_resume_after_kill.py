"""A recipe run killed with SIGKILL after a checkpoint and resumed ends exactly where an uninterrupted run
ends: layer-wise groups, gradual unfreezing and adaptive rates included."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from recipe_helpers import RECIPES_DIR, save_tiny_text_model, shared_data, sst2_sentences
from safetensors.torch import load_file


def _command(model_dir, output_dir):
    return [
        sys.executable,
        os.path.join(RECIPES_DIR, "text_classification.py"),
        "--model_name_or_path",
        model_dir,
        "--output_dir",
        output_dir,
        "--task_name",
        "sst2",
        "--train_file",
        shared_data("sst2", "train.tsv"),
        "--validation_file",
        shared_data("sst2", "test.tsv"),
        "--max_train_samples",
        "960",
        "--max_eval_samples",
        "64",
        "--max_seq_length",
        "32",
        "--per_device_train_batch_size",
        "8",
        "--num_train_epochs",
        "1",
        "--learning_rate",
        "1e-3",
        "--layer_decay",
        "0.5",
        "--weight_decay",
        "0.01",
        "--gradual_unfreeze_steps",
        "10",
        "--layer_lr_adaptation",
        "singh2015",
        "--log_layer_grad_norms",
        "true",
        "--save_strategy",
        "steps",
        "--save_steps",
        "20",
        "--logging_steps",
        "5",
        "--seed",
        "0",
        "--full_determinism",
        "true",
        "--use_cpu",
        "true",
        "--disable_tqdm",
        "true",
        "--report_to",
        "none",
        "--dataloader_num_workers",
        "0",
    ]


# A minute of real training: the resume it checks is covered in the default run by tests/test_preemption.py (a
# SIGKILL during the save, SIGTERM on two ranks, exact resumes) and test_adaptation.py (each adaptation resumed).
@pytest.mark.slow
def test_killed_run_resumes_to_the_same_weights_and_metrics(tmp_path):
    model_dir = save_tiny_text_model(str(tmp_path / "tiny-bert"), sst2_sentences(3000))
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])),
    )

    straight = str(tmp_path / "straight")
    subprocess.run(_command(model_dir, straight), check=True, capture_output=True, env=env, timeout=900)

    interrupted = str(tmp_path / "interrupted")
    process = subprocess.Popen(
        _command(model_dir, interrupted), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    first_checkpoint = os.path.join(interrupted, "checkpoint-20", "trainer_state.json")
    deadline = time.monotonic() + 600
    while not os.path.isfile(first_checkpoint) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    assert not os.path.isfile(os.path.join(interrupted, "all_results.json"))

    # The recipe resumes from the newest complete checkpoint in its output folder.
    resumed = subprocess.run(_command(model_dir, interrupted), capture_output=True, text=True, env=env, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected, got = (load_file(os.path.join(run, "model.safetensors")) for run in (straight, interrupted))
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-6, rtol=0), name
    with (
        open(os.path.join(straight, "all_results.json")) as a,
        open(os.path.join(interrupted, "all_results.json")) as b,
    ):
        straight_results, resumed_results = json.load(a), json.load(b)
    assert resumed_results["eval_accuracy"] == straight_results["eval_accuracy"]
    assert resumed_results["eval_loss"] == pytest.approx(straight_results["eval_loss"], abs=1e-6)
    with (
        open(os.path.join(straight, "trainer_state.json")) as a,
        open(os.path.join(interrupted, "trainer_state.json")) as b,
    ):
        straight_logs = [e for e in json.load(a)["log_history"] if "loss" in e]
        resumed_logs = [e for e in json.load(b)["log_history"] if "loss" in e]
    assert len(straight_logs) == len(resumed_logs) == 24
    for before, after in zip(straight_logs, resumed_logs):  # the same rates, norms and losses at every logging step
        for key in before:
            if key.startswith(("lr/", "grad_norm/", "update_ratio/")) or key in ("loss", "step"):
                assert after[key] == pytest.approx(before[key], rel=1e-5, abs=1e-8), (before["step"], key)

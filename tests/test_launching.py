"""Processes a launcher starts together join one run or are refused, in any script built on the library's
arguments and Trainer (finetune_llrd.launching), not only in the recipes."""

import json
import os
import types

import pytest
from launch import accelerate_launch

from finetune_llrd import LLRDTrainingArguments, launching


SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "user_script.py")
COMMON = [
    "--report_to",
    "none",
    "--save_strategy",
    "no",
    "--disable_tqdm",
    "true",
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "4",
    "--learning_rate",
    "1e-3",
    "--layer_decay",
    "0.5",
    "--logging_steps",
    "1",
]


def _rank_results(output_dir, world_size):
    results = []
    for rank in range(world_size):
        with open(os.path.join(output_dir, f"rank{rank}.json"), encoding="utf-8") as handle:
            results.append(json.load(handle))
    return results


def test_a_user_script_launched_on_two_cpu_processes_trains_as_one_run_of_two(tmp_path):
    # No --use_cpu: the layer-wise arguments set it, since this machine has no accelerator.
    accelerate_launch(SCRIPT, "--output_dir", tmp_path, *COMMON)
    ranks = _rank_results(tmp_path, 2)
    assert [(rank["world_size"], rank["use_cpu"], rank["device"]) for rank in ranks] == [(2, True, "cpu")] * 2
    # One run: both ranks took the same 2 steps at the same per-depth rates (tiny BERT: 3 blocks, decay 0.5).
    first_steps = [rank["log_history"][0] for rank in ranks]
    assert first_steps[0]["lr/head"] == first_steps[1]["lr/head"] == pytest.approx(1e-3)
    assert first_steps[0]["lr/layer_00"] == first_steps[1]["lr/layer_00"] == pytest.approx(1e-3 * 0.5**4)
    assert [rank["log_history"][-1]["step"] for rank in ranks] == [2, 2]


def test_launched_processes_that_cannot_join_are_refused_before_training(tmp_path):
    # Plain TrainingArguments under LLRDTrainer: nothing sets use_cpu, so each process would train alone.
    stock_flags = [flag for flag in COMMON if flag not in ("--layer_decay", "0.5")]
    completed = accelerate_launch(
        SCRIPT, "--plain_training_arguments", "--output_dir", tmp_path, *stock_flags, check=False
    )
    assert completed.returncode != 0
    output = completed.stdout + completed.stderr
    assert (
        "ProcessesNotJoinedError: The launcher started 2 processes, but they did not join one distributed run "
        f"(world size 1): each would train alone on all the data and write into {tmp_path}; pass --use_cpu "
        "(use_cpu=True) so that they join over gloo on the CPU." in output
    )
    assert not any(name.startswith("rank") for name in os.listdir(tmp_path))


def test_a_single_process_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(launching, "accelerator_available", lambda: False)
    args = LLRDTrainingArguments(output_dir=str(tmp_path), report_to=[])
    assert args.use_cpu is False and args.world_size == 1


@pytest.mark.parametrize(
    ("world_size", "use_cpu", "deepspeed", "accelerator", "joins_on_cpu"),
    [
        ("2", False, None, False, True),
        ("1", False, None, False, False),  # one process: nothing to join
        (None, False, None, False, False),  # no launcher
        ("2", True, None, False, False),  # already on the CPU
        ("2", False, "ds_config.json", False, False),  # DeepSpeed joins its processes itself
        ("2", False, None, True, False),  # the accelerator's backend joins them
    ],
)
def test_which_launched_processes_are_joined_on_the_cpu(
    monkeypatch, world_size, use_cpu, deepspeed, accelerator, joins_on_cpu
):
    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)
    monkeypatch.setattr(launching, "accelerator_available", lambda: accelerator)
    args = types.SimpleNamespace(use_cpu=use_cpu, deepspeed=deepspeed)
    assert launching.join_launched_processes_on_cpu(args) is joins_on_cpu
    assert args.use_cpu is (use_cpu or joins_on_cpu)


def test_processes_on_an_accelerator_that_cannot_join_them_are_told_so(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = types.SimpleNamespace(world_size=1, device=types.SimpleNamespace(type="mps"), output_dir="out")
    with pytest.raises(launching.ProcessesNotJoinedError) as refusal:
        launching.check_processes_joined(args)
    assert str(refusal.value) == (
        "The launcher started 2 processes, but they did not join one distributed run (world size 1): each would "
        "train alone on all the data and write into out; accelerate cannot join processes over this machine's mps "
        "device: launch one process, or pass --use_cpu to join them over gloo on the CPU."
    )

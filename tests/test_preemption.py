"""save_on_preemption: a SIGTERM or SIGUSR1 finishes the optimizer step, writes one complete checkpoint in the
periodic format and ends the run with exit code 75; resuming from it ends where an uninterrupted run ends.

The logic runs in this process (a signal sent to itself); the signals, the launcher and the ranks are real in
the tests that start `accelerate launch` or a separate Python process.
"""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
import transformers
from launch import free_port
from tiny_models import tiny_model
from training import RandomTokens, training_args
from transformers import TrainerCallback, TrainerState

from finetune_llrd import LLRDTrainer
from finetune_llrd.callbacks import NonFiniteLossCallback, NonFiniteLossError
from finetune_llrd.checkpoints import complete_checkpoints, load_optimizer_groups
from finetune_llrd.preemption import PREEMPTED_EXIT_CODE, PREEMPTED_MARKER, PreemptionCallback, TrainingPreempted


SCRIPT = os.path.join(os.path.dirname(__file__), "scripts", "preemptible_run.py")
CHECKPOINT_FILES = {
    "config.json",
    "model.safetensors",
    "optimizer.pt",
    "scheduler.pt",
    "trainer_state.json",
    "training_args.bin",
}
# One process with 2 accumulation steps takes the global batch of 2 ranks with 4 samples each.
ONE_PROCESS = ("--gradient_accumulation_steps", "2")


class SignalAt(TrainerCallback):
    """Sends ``signum`` to this process at the end of optimizer step ``step`` (before the preemption callback
    looks, as a signal arriving during that step would)."""

    def __init__(self, step, signum=signal.SIGTERM):
        self.step = step
        self.signum = signum

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            os.kill(os.getpid(), self.signum)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train several times faster on one thread when other processes keep the cores busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sentinel_handlers():
    """Python handlers in place of the defaults, to check that training puts them back."""

    def sentinel(signum, frame):
        raise AssertionError(f"signal {signum} reached the handler from before training")

    previous = {signum: signal.signal(signum, sentinel) for signum in (signal.SIGTERM, signal.SIGUSR1)}
    yield sentinel
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def _trainer(output_dir, callbacks=(), train_dataset=None, eval_dataset=None, model=None, **overrides):
    settings = dict(
        layer_decay=0.5,
        num_train_epochs=1,
        max_steps=-1,
        per_device_train_batch_size=4,
        save_strategy="steps",
        save_steps=4,
        save_on_preemption=True,
    )
    settings.update(overrides)
    return LLRDTrainer(
        model=model or tiny_model("bert"),
        args=training_args(output_dir, **settings),
        train_dataset=train_dataset or RandomTokens(size=64),
        eval_dataset=eval_dataset,
        callbacks=list(callbacks),
    )


def _read_json(*parts):
    with open(os.path.join(*parts), encoding="utf-8") as handle:
        return json.load(handle)


# ---- the callback, in this process ----


def test_the_callback_is_added_only_when_asked_and_before_the_per_step_checks(tmp_path):
    names = [type(c).__name__ for c in _trainer(tmp_path, save_on_preemption=False).callback_handler.callbacks]
    assert "PreemptionCallback" not in names
    callbacks = _trainer(tmp_path).callback_handler.callbacks
    kinds = [type(c) for c in callbacks]
    assert kinds.count(PreemptionCallback) == 1
    # The non-finite-loss check at step end must see the save the preemption callback asks for.
    assert kinds.index(PreemptionCallback) < kinds.index(NonFiniteLossCallback)


def test_a_signal_mid_epoch_stops_at_that_step_with_a_complete_checkpoint(tmp_path, sentinel_handlers):
    trainer = _trainer(tmp_path, callbacks=[SignalAt(6, signal.SIGUSR1)])
    with pytest.raises(TrainingPreempted) as stop:
        trainer.train()
    assert isinstance(stop.value, SystemExit) and stop.value.code == PREEMPTED_EXIT_CODE == 75
    assert (stop.value.step, stop.value.signal_name) == (6, "SIGUSR1")
    assert str(stop.value) == (
        f"Training was preempted (SIGUSR1) and stopped after optimizer step 6; the checkpoint {tmp_path / 'checkpoint-6'} "
        "is complete. Run the same command again to resume from it (exit code 75)."
    )
    assert trainer.state.global_step == 6
    assert complete_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-4"), str(tmp_path / "checkpoint-6")]
    periodic, preempted = (set(os.listdir(tmp_path / f"checkpoint-{step}")) for step in (4, 6))
    assert preempted == periodic == CHECKPOINT_FILES | {"rng_state.pth"}
    groups = load_optimizer_groups(str(tmp_path / "checkpoint-6" / "optimizer.pt"))
    assert [(g["layer"], g["initial_lr"]) for g in groups] == [
        (g["layer"], g["initial_lr"]) for g in load_optimizer_groups(str(tmp_path / "checkpoint-4" / "optimizer.pt"))
    ]
    assert sorted({g["layer"] for g in groups}) == [0, 1, 2, 3, 4]
    state = _read_json(tmp_path, "checkpoint-6", "trainer_state.json")
    assert state["global_step"] == 6
    assert {"preempted": "SIGUSR1", "epoch": 0.375, "step": 6} in state["log_history"]
    assert _read_json(tmp_path, PREEMPTED_MARKER) == {
        "signal": "SIGUSR1",
        "step": 6,
        "checkpoint": str(tmp_path / "checkpoint-6"),
        "exit_code": 75,
    }
    assert signal.getsignal(signal.SIGTERM) is sentinel_handlers
    assert signal.getsignal(signal.SIGUSR1) is sentinel_handlers


def test_resuming_in_one_process_ends_where_an_uninterrupted_run_ends(tmp_path):
    options = dict(
        gradual_unfreeze_steps=3, layer_lr_adaptation="singh2015", log_layer_grad_norms=True, logging_steps=1
    )
    straight = _trainer(tmp_path / "straight", **options)
    straight.train()
    with pytest.raises(TrainingPreempted):
        _trainer(tmp_path / "run", callbacks=[SignalAt(7)], **options).train()
    resumed = _trainer(tmp_path / "run", **options)
    resumed.train(resume_from_checkpoint=True)
    assert not (tmp_path / "run" / PREEMPTED_MARKER).exists()  # a new run removes the marker of the last one
    assert resumed.state.global_step == straight.state.global_step == 16
    expected, got = dict(straight.model.named_parameters()), dict(resumed.model.named_parameters())
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-6, rtol=0), name
    logs = [[e for e in trainer.state.log_history if "loss" in e] for trainer in (straight, resumed)]
    assert len(logs[0]) == len(logs[1]) == 16
    for before, after in zip(*logs):
        for key in before:
            if key.startswith(("lr/", "grad_norm/", "update_ratio/")) or key in ("loss", "step"):
                assert after[key] == pytest.approx(before[key], rel=1e-5, abs=1e-8), (before["step"], key)


def test_a_signal_at_the_last_step_of_an_epoch_saves_after_that_epochs_evaluation(tmp_path):
    trainer = _trainer(
        tmp_path,
        callbacks=[SignalAt(16)],
        num_train_epochs=2,
        save_strategy="no",
        eval_strategy="epoch",
        eval_dataset=RandomTokens(size=8, seed=1),
    )
    with pytest.raises(TrainingPreempted) as stop:
        trainer.train()
    assert stop.value.step == 16
    assert complete_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-16")]
    history = _read_json(tmp_path, "checkpoint-16", "trainer_state.json")["log_history"]
    assert [e["step"] for e in history if "eval_loss" in e] == [16]


def test_a_signal_mid_epoch_skips_the_evaluation_of_the_partial_epoch(tmp_path):
    trainer = _trainer(
        tmp_path,
        callbacks=[SignalAt(5)],
        num_train_epochs=2,
        save_strategy="epoch",
        eval_strategy="epoch",
        eval_dataset=RandomTokens(size=8, seed=1),
    )
    with pytest.raises(TrainingPreempted):
        trainer.train()
    assert complete_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-5")]
    assert not [e for e in trainer.state.log_history if "eval_loss" in e]


def test_with_save_strategy_best_a_stop_on_an_evaluation_step_waits_one_step(tmp_path):
    trainer = _trainer(
        tmp_path,
        callbacks=[SignalAt(8)],
        save_strategy="best",
        eval_strategy="steps",
        eval_steps=4,
        metric_for_best_model="loss",
        eval_dataset=RandomTokens(size=8, seed=1),
    )
    with pytest.raises(TrainingPreempted) as stop:
        trainer.train()
    assert stop.value.step == 9
    assert str(tmp_path / "checkpoint-9") in complete_checkpoints(str(tmp_path))
    history = _read_json(tmp_path, "checkpoint-9", "trainer_state.json")["log_history"]
    assert [e["step"] for e in history if "eval_loss" in e] == [4, 8]


def test_a_second_signal_during_the_save_changes_nothing(tmp_path, monkeypatch):
    save_to_json = TrainerState.save_to_json

    def signalled_save_to_json(self, json_path):
        if "checkpoint-6" in json_path:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGUSR1)
        save_to_json(self, json_path)

    monkeypatch.setattr(TrainerState, "save_to_json", signalled_save_to_json)
    with pytest.raises(TrainingPreempted) as stop:
        _trainer(tmp_path, callbacks=[SignalAt(6)]).train()
    assert (stop.value.step, stop.value.signal_name) == (6, "SIGTERM")
    assert complete_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-4"), str(tmp_path / "checkpoint-6")]


class _Regression(torch.utils.data.IterableDataset):
    """Random tokens with float targets in a fixed order; record 21 (in the sixth batch of 4) is infinite."""

    def __iter__(self):
        tokens = RandomTokens(size=32)
        for index in range(len(tokens)):
            item = tokens[index]
            target = float("inf") if index == 21 else float(item["labels"])
            yield {"input_ids": item["input_ids"], "labels": torch.tensor([target])}


def test_nothing_is_written_from_a_step_whose_loss_was_not_finite(tmp_path, monkeypatch, sentinel_handlers):
    # As on an accelerator, where the flag is read only at steps that log, evaluate, save or stop: the stop
    # that the preemption callback asks for at step 6 must make the check run before the save.
    monkeypatch.setattr(NonFiniteLossCallback, "checks_before_every_step", lambda self: False)
    trainer = _trainer(
        tmp_path,
        callbacks=[SignalAt(6)],
        train_dataset=_Regression(),
        max_steps=8,
        save_steps=100,
        logging_steps=100,
        model=tiny_model("bert", num_labels=1, problem_type="regression"),
    )
    with pytest.raises(NonFiniteLossError, match=r"at one of optimizer steps 1-6 "):
        trainer.train()
    assert complete_checkpoints(str(tmp_path)) == []
    assert not (tmp_path / "checkpoint-6").exists()
    assert not (tmp_path / PREEMPTED_MARKER).exists()
    assert signal.getsignal(signal.SIGTERM) is sentinel_handlers


def test_without_a_signal_training_ends_as_usual_and_puts_the_handlers_back(tmp_path, sentinel_handlers):
    (tmp_path / PREEMPTED_MARKER).write_text("{}")  # left by an earlier, preempted run
    trainer = _trainer(tmp_path, save_strategy="no")
    trainer.train()
    assert trainer.state.global_step == 16
    assert not (tmp_path / PREEMPTED_MARKER).exists()
    assert signal.getsignal(signal.SIGTERM) is sentinel_handlers
    assert signal.getsignal(signal.SIGUSR1) is sentinel_handlers


def test_jit_checkpointing_of_the_stock_trainer_is_refused_beside_it(tmp_path):
    with pytest.raises(ValueError, match=r"save_on_preemption and enable_jit_checkpoint both handle SIGTERM"):
        _trainer(tmp_path, enable_jit_checkpoint=True).train()


# ---- real processes: tests/scripts/preemptible_run.py, one epoch of 24 steps, checkpoints every 8 ----


def _environment(**extra):
    paths = [os.getcwd(), os.environ.get("PYTHONPATH")]
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, paths)), **extra)


def _start(output_dir, *options, ranks=2, **environment):
    """Starts the script under `accelerate launch` with 2 CPU ranks, or as one plain process."""
    os.makedirs(output_dir, exist_ok=True)
    if ranks == 2:
        accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
        command = [
            accelerate,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(free_port()),
            SCRIPT,
            str(output_dir),
            *options,
        ]
    else:
        command = [sys.executable, SCRIPT, str(output_dir), *ONE_PROCESS, *options]
    log = open(f"{output_dir}.log", "w")  # noqa: SIM115 - the child writes into it for its whole life
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_environment(**environment))


def _run(output_dir, *options, ranks=2):
    process = _start(output_dir, *options, ranks=ranks)
    assert process.wait(timeout=900) == 0, _log(output_dir)


def _log(output_dir):
    with open(f"{output_dir}.log") as handle:
        return handle.read()[-6000:]


def _read_int(path):
    try:
        with open(path) as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return None


def _wait_until(condition, process, what, timeout=600):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _wait_for_step(output_dir, rank, step, process):
    """Waits until ``rank`` has finished optimizer step ``step`` (and so the checkpoints before it)."""
    _wait_until(lambda: (_read_int(os.path.join(output_dir, f"progress{rank}")) or 0) >= step, process, f"step {step}")


def _weights(output_dir, rank=0):
    return torch.load(os.path.join(output_dir, f"rank{rank}.pt"))


def _loss_logs(output_dir, rank=0):
    return [e for e in _read_json(output_dir, f"rank{rank}.json")["log_history"] if "loss" in e]


def _assert_same_weights(got, expected):
    assert got.keys() == expected.keys()
    for name in expected:
        assert torch.allclose(got[name], expected[name], atol=1e-6, rtol=0), name


def _assert_same_logs(got, expected, rel, first_step=1):
    expected = [e for e in expected if e["step"] >= first_step]
    got = [e for e in got if e["step"] >= first_step]
    assert [e["step"] for e in got] == [e["step"] for e in expected]
    keys = [k for k in expected[0] if k.startswith(("lr/", "grad_norm/")) or k == "loss"]
    assert len(keys) == 11
    for before, after in zip(expected, got):
        for key in keys:
            assert after[key] == pytest.approx(before[key], rel=rel, abs=1e-9), (before["step"], key)


def _root_cause_exit_code(launcher_log):
    match = re.search(r"Root Cause \(first observed failure\):.*?exitcode\s*:\s*(-?\d+)", launcher_log, re.S)
    return int(match.group(1)) if match else None


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """An uninterrupted 2-rank run (checkpoints 8, 16, 24)."""
    output_dir = tmp_path_factory.mktemp("two-ranks") / "run"
    _run(output_dir)
    return output_dir


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """An uninterrupted run of one process, in this process, with the same global batch (checkpoints 8, 16, 24)."""
    output_dir = tmp_path_factory.mktemp("one-process") / "run"
    _run_here(output_dir)
    return output_dir


def _run_here(output_dir, *options):
    spec = importlib.util.spec_from_file_location("preemptible_run", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    verbosity, threads = transformers.logging.get_verbosity(), torch.get_num_threads()
    torch.set_num_threads(1)  # as in the processes started with OMP_NUM_THREADS=1: the same sums
    try:
        script.run(str(output_dir), [*ONE_PROCESS, *map(str, options)])
    finally:
        transformers.logging.set_verbosity(verbosity)
        torch.set_num_threads(threads)


def test_sigterm_to_one_of_two_ranks_stops_both_at_one_step_and_resumes_exactly(two_ranks, tmp_path):
    output_dir = tmp_path / "run"
    process = _start(output_dir, PREEMPT_TEST_STEP_SECONDS="0.4")
    _wait_for_step(output_dir, 1, 9, process)  # past checkpoint-8, well before checkpoint-16
    os.kill(_read_int(output_dir / "pid1"), signal.SIGTERM)  # rank 1 only: rank 0 hears of it through the collective
    assert process.wait(timeout=300) != 0  # the launcher reports any rank that exits non-zero as its own failure 1
    log = _log(output_dir)
    assert _root_cause_exit_code(log) == PREEMPTED_EXIT_CODE, log

    marker = _read_json(output_dir, PREEMPTED_MARKER)
    stop = marker["step"]
    assert 9 <= stop < 16 and marker == {
        "signal": "SIGTERM",
        "step": stop,
        "checkpoint": str(output_dir / f"checkpoint-{stop}"),
        "exit_code": 75,
    }
    assert (
        _read_int(output_dir / "progress0") == _read_int(output_dir / "progress1") == stop
    )  # both ranks stopped there
    assert complete_checkpoints(str(output_dir)) == [str(output_dir / f"checkpoint-{step}") for step in (8, stop)]
    assert set(os.listdir(output_dir / f"checkpoint-{stop}")) == CHECKPOINT_FILES | {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }

    _run(output_dir, "--resume_from_checkpoint", "true")  # as a command line gives it: the newest complete checkpoint
    assert not (output_dir / PREEMPTED_MARKER).exists()
    for rank in (0, 1):
        _assert_same_weights(_weights(output_dir, rank), _weights(two_ranks))
    assert len(_loss_logs(output_dir)) == 24
    _assert_same_logs(_loss_logs(output_dir), _loss_logs(two_ranks), rel=1e-5)


# A second signal during the save is checked in-process by test_a_second_signal_during_the_save_changes_nothing.
@pytest.mark.slow
def test_sigterm_twice_exits_75_with_a_complete_checkpoint(tmp_path):
    output_dir = tmp_path / "run"
    process = _start(output_dir, ranks=1, PREEMPT_TEST_STEP_SECONDS="0.4", PREEMPT_TEST_STATE_WRITE_SECONDS="2")
    _wait_for_step(output_dir, 0, 9, process)
    process.send_signal(signal.SIGTERM)
    checkpoint = _wait_for_the_preemption_save(output_dir, process)
    process.send_signal(signal.SIGTERM)  # while the save waits before writing trainer_state.json
    assert process.wait(timeout=300) == PREEMPTED_EXIT_CODE, _log(output_dir)
    assert complete_checkpoints(str(output_dir)) == [str(output_dir / "checkpoint-8"), checkpoint]


def test_sigkill_during_the_save_leaves_a_checkpoint_resume_skips(one_process, tmp_path):
    output_dir = tmp_path / "run"
    process = _start(output_dir, ranks=1, PREEMPT_TEST_STEP_SECONDS="0.4", PREEMPT_TEST_STATE_WRITE_SECONDS="2")
    _wait_for_step(output_dir, 0, 9, process)
    process.send_signal(signal.SIGTERM)
    incomplete = _wait_for_the_preemption_save(output_dir, process)
    process.send_signal(signal.SIGKILL)  # the end of the grace period, in the middle of the save
    assert process.wait(timeout=60) == -signal.SIGKILL
    assert not os.path.exists(os.path.join(incomplete, "trainer_state.json"))
    assert not (output_dir / PREEMPTED_MARKER).exists()
    assert complete_checkpoints(str(output_dir)) == [str(output_dir / "checkpoint-8")]

    _run_here(output_dir, "--resume_from_checkpoint", "True")  # takes checkpoint-8, not the newer incomplete one
    _assert_same_weights(_weights(output_dir), _weights(one_process))
    _assert_same_logs(_loss_logs(output_dir), _loss_logs(one_process), rel=1e-5)


def _wait_for_the_preemption_save(output_dir, process):
    """Waits until the preemption checkpoint has its weights but not yet its trainer_state.json; returns it."""

    def preemption_checkpoint():
        for entry in os.listdir(output_dir):
            weights = os.path.join(output_dir, entry, "model.safetensors")
            if entry.startswith("checkpoint-") and int(entry.split("-")[1]) % 8 and os.path.exists(weights):
                return os.path.join(output_dir, entry)
        return None

    _wait_until(lambda: preemption_checkpoint() is not None, process, "the preemption save")
    return preemption_checkpoint()


def test_a_two_rank_checkpoint_resumes_on_one_process(two_ranks, tmp_path):
    output_dir = tmp_path / "run"
    _run_here(output_dir, "--resume_from_checkpoint", str(two_ranks / "checkpoint-8"))
    assert [e["step"] for e in _loss_logs(output_dir)] == list(range(1, 25))
    # Both world sizes compute the same global batch; the sums differ in order only (as in the 2-vs-1-rank test).
    _assert_same_logs(_loss_logs(output_dir), _loss_logs(two_ranks), rel=1e-4)


@pytest.mark.slow
def test_a_one_process_checkpoint_resumes_on_two_ranks(one_process, two_ranks, tmp_path):
    output_dir = tmp_path / "run"
    _run(output_dir, "--resume_from_checkpoint", str(one_process / "checkpoint-8"))
    for rank in (0, 1):
        assert [e["step"] for e in _loss_logs(output_dir, rank)] == list(range(1, 25))
    _assert_same_logs(_loss_logs(output_dir), _loss_logs(one_process), rel=1e-4)


@pytest.mark.slow
def test_sigkill_to_one_rank_ends_the_launcher_soon_and_resume_is_exact(two_ranks, tmp_path):
    output_dir = tmp_path / "run"
    process = _start(output_dir, PREEMPT_TEST_STEP_SECONDS="0.4", TORCH_ELASTIC_SHUTDOWN_TIMEOUT="20")
    _wait_for_step(output_dir, 1, 9, process)
    killed = time.monotonic()
    os.kill(_read_int(output_dir / "pid1"), signal.SIGKILL)
    returncode = process.wait(timeout=300)
    seconds = time.monotonic() - killed
    assert returncode != 0
    # Bounded by the launcher: it sees the dead rank within its monitor interval, sends SIGTERM to the other and
    # kills it after TORCH_ELASTIC_SHUTDOWN_TIMEOUT (20 s here); gloo fails the survivor's next collective sooner.
    assert seconds < 30, seconds
    assert not (output_dir / PREEMPTED_MARKER).exists()
    assert complete_checkpoints(str(output_dir)) == [str(output_dir / "checkpoint-8")]
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state_0.pth", "rng_state_1.pth"):
        with open(output_dir / "checkpoint-8" / name, "rb") as a, open(two_ranks / "checkpoint-8" / name, "rb") as b:
            assert a.read() == b.read(), name

    _run(output_dir, "--resume_from_checkpoint", "True")
    _assert_same_weights(_weights(output_dir), _weights(two_ranks))
    _assert_same_logs(_loss_logs(output_dir), _loss_logs(two_ranks), rel=1e-5)
    print(f"launcher exit {returncode} {seconds:.1f} s after SIGKILL to rank 1")


@pytest.mark.slow
def test_sigterm_to_the_launcher_reaches_every_rank(tmp_path):
    # What Kubernetes and SLURM's time limit do: SIGTERM to `accelerate launch`, which passes it to the ranks and
    # kills them after TORCH_ELASTIC_SHUTDOWN_TIMEOUT; here they save and exit long before that.
    output_dir = tmp_path / "run"
    process = _start(output_dir, PREEMPT_TEST_STEP_SECONDS="0.4", TORCH_ELASTIC_SHUTDOWN_TIMEOUT="60")
    _wait_for_step(output_dir, 1, 9, process)
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) != 0
    assert time.monotonic() - signalled < 60
    marker = _read_json(output_dir, PREEMPTED_MARKER)
    stop = marker["step"]
    assert 9 <= stop < 16 and marker["signal"] == "SIGTERM"
    assert _read_int(output_dir / "progress0") == _read_int(output_dir / "progress1") == stop
    assert complete_checkpoints(str(output_dir)) == [str(output_dir / f"checkpoint-{step}") for step in (8, stop)]

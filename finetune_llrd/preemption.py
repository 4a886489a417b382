"""Saving on a preemption notice: SIGTERM or SIGUSR1 finish the current optimizer step, write one complete
checkpoint and end the run with a distinct exit code, so that a job script can requeue it.

Clusters announce preemption with a signal and a grace period: Kubernetes and most schedulers send SIGTERM,
SLURM sends what ``--signal`` asks for (often SIGUSR1) some time before the end. The stock Trainer does not
handle either: the run dies, and every step since the last periodic checkpoint is lost.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Sequence
from datetime import timedelta

import torch
import torch.distributed as dist
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, IntervalStrategy, SaveStrategy

from .checkpoints import TRAINER_STATE


logger = logging.getLogger(__name__)

# EX_TEMPFAIL of sysexits.h: "temporary failure, try again later".
PREEMPTED_EXIT_CODE = 75
# Written into output_dir once the checkpoint of a preempted run is complete; removed when a run starts.
PREEMPTED_MARKER = "preempted.json"
PREEMPTION_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))


class TrainingPreempted(SystemExit):
    """Ends a preempted run with exit code ``PREEMPTED_EXIT_CODE`` (75) once its checkpoint is complete.

    A ``SystemExit``, so that a script ends with that code and no traceback. Under ``accelerate launch`` or
    ``torchrun`` every rank exits with 75 and the launcher itself exits with 1, as for any failed rank;
    ``output_dir/preempted.json`` then tells a job script that the run was preempted.

    Attributes:
        step: the optimizer step at which the run stopped.
        checkpoint: the checkpoint written at that step.
        signal_name: the signal that asked for the stop, e.g. ``"SIGTERM"``.
    """

    def __init__(self, step: int, checkpoint: str, signal_name: str):
        super().__init__(PREEMPTED_EXIT_CODE)
        self.step = step
        self.checkpoint = checkpoint
        self.signal_name = signal_name

    def __str__(self) -> str:
        return (
            f"Training was preempted ({self.signal_name}) and stopped after optimizer step {self.step}; the checkpoint "
            f"{self.checkpoint} is complete. Run the same command again to resume from it (exit code "
            f"{PREEMPTED_EXIT_CODE})."
        )


class PreemptionCallback(TrainerCallback):
    """Stops training at the end of the current optimizer step when the process gets a preemption signal,
    and has the Trainer write one complete checkpoint there, in the periodic format.

    The signal handlers, installed at the start of training and removed at its end, only set a flag. At the
    end of every optimizer step the ranks agree, with one small all-reduce, whether any of them got a signal:
    a signal that reaches one rank stops all of them at the same step. Under NCCL that all-reduce runs on a
    CPU (gloo) group created once, so it adds no device synchronisation.

    At the agreed step the callback sets ``should_save`` and ``should_training_stop``, and records the stop
    in the log history. At the last step of an epoch the checkpoint is written after the epoch's evaluation,
    as in an uninterrupted run. With ``save_strategy="best"``, where the Trainer saves only after a better
    evaluation, a stop that falls on an evaluation step waits one more step. Once the checkpoint is complete,
    the main process writes ``output_dir/preempted.json``; :meth:`exit_if_preempted`, called after ``train``
    returns, waits for all ranks and raises :class:`TrainingPreempted` (exit code 75).

    Further signals during the save change nothing; a SIGKILL during the save leaves a folder without
    ``trainer_state.json``, which the Trainer writes last and ``resume_from_checkpoint=True`` skips.

    Args:
        signals: the signals that announce preemption; default SIGTERM and SIGUSR1.
    """

    def __init__(self, signals: Sequence[int] = PREEMPTION_SIGNALS):
        self.signals = tuple(signals)
        self.stop_step: int | None = None
        self.signal_name: str | None = None
        self._received: int = 0
        self._previous_handlers: dict[int, object] = {}
        self._group = None
        self._group_created = False
        self._save_at_epoch_end = False
        self._waited_for_evaluation = False
        self._saved_step: int | None = None
        self._output_dir: str | None = None
        self._logs_here = True

    # ---- signals ----

    def _handle_signal(self, signum, frame) -> None:
        # Only a flag: the work happens at the next step boundary, and a second signal changes nothing.
        if not self._received:
            self._received = signum

    def install_signal_handlers(self) -> None:
        """Installs the flag-setting handlers, remembering the previous ones; only the main thread can."""
        if self._previous_handlers:
            return
        if threading.current_thread() is not threading.main_thread():
            logger.warning(
                "Training runs outside the main thread, where no signal handler can be installed: this process "
                "will not save on preemption itself (it still stops with the other ranks when one of them does)."
            )
            return
        for signum in self.signals:
            self._previous_handlers[signum] = signal.signal(signum, self._handle_signal)

    def restore_signal_handlers(self) -> None:
        """Puts back the handlers that were there before training; safe to call more than once."""
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    # ---- agreement across ranks ----

    def _create_group(self, args) -> None:
        if self._group_created or not _distributed(args):
            return
        if dist.get_backend() != "gloo" and dist.is_gloo_available():
            # NCCL and other device backends: a CPU group, so that the flag never waits on the device.
            self._group = dist.new_group(backend="gloo", timeout=timedelta(seconds=args.ddp_timeout))
        self._group_created = True

    def _any_rank_signalled(self, args) -> int:
        """The signal number any rank got (the largest), or 0; a collective when there are several ranks."""
        if not _distributed(args):
            return self._received
        device = "cpu" if self._group is not None or dist.get_backend() == "gloo" else args.device
        flag = torch.tensor([self._received], dtype=torch.int32, device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        return int(flag.item())

    # ---- the Trainer's events ----

    def on_train_begin(self, args, state, control, **kwargs):
        if getattr(args, "enable_jit_checkpoint", False):
            raise ValueError(
                "save_on_preemption and enable_jit_checkpoint both handle SIGTERM; keep save_on_preemption (it also "
                "handles SIGUSR1, stops all ranks at the same step and ends with exit code 75) and set "
                "enable_jit_checkpoint to False."
            )
        self.stop_step = None
        self.signal_name = None
        self._received = 0
        self._save_at_epoch_end = False
        self._waited_for_evaluation = False
        self._saved_step = None
        self._output_dir = args.output_dir
        self._logs_here = args.should_save
        self._create_group(args)
        if args.should_save:
            _remove(os.path.join(args.output_dir, PREEMPTED_MARKER))
            if args.save_only_model:
                logger.warning(
                    "save_only_model=True: a checkpoint written on preemption holds no optimizer, scheduler or RNG "
                    "state, so a resumed run will not continue exactly."
                )
        self.install_signal_handlers()

    def on_step_end(self, args, state, control, **kwargs):
        if self.stop_step is not None:
            return
        signum = self._any_rank_signalled(args)
        if not signum:
            return
        epoch_end = state.epoch is not None and float(state.epoch).is_integer()
        if self._evaluation_decides_the_save(args, state, control, epoch_end):
            if not self._waited_for_evaluation:
                self._waited_for_evaluation = True
                self._received = signum
                return
            control.should_evaluate = False
        self.stop_step = state.global_step
        self.signal_name = signal.Signals(signum).name
        control.should_training_stop = True
        if epoch_end:
            self._save_at_epoch_end = True  # after the epoch's evaluation, as an uninterrupted run would
        else:
            control.should_save = True
        state.log_history.append({"preempted": self.signal_name, "epoch": state.epoch, "step": state.global_step})
        if self._logs_here:
            logger.warning(
                "%s received: stopping after optimizer step %d and saving a checkpoint.",
                self.signal_name,
                self.stop_step,
            )

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.stop_step is None:
            return
        if self._save_at_epoch_end:
            if self._waited_for_evaluation and args.save_strategy == SaveStrategy.BEST:
                control.should_evaluate = False
            control.should_save = self._saved_step != self.stop_step
        else:
            # The loop stopped mid-epoch: no evaluation, log or second save of a partial epoch.
            control.should_evaluate = False
            control.should_log = False
            control.should_save = False

    def on_save(self, args, state, control, **kwargs):
        if self.stop_step is None or state.global_step != self.stop_step:
            return
        self._saved_step = state.global_step
        if args.should_save:
            checkpoint = self.checkpoint_path()
            if os.path.isfile(os.path.join(checkpoint, TRAINER_STATE)):
                _write_json_atomically(
                    os.path.join(args.output_dir, PREEMPTED_MARKER),
                    {
                        "signal": self.signal_name,
                        "step": self.stop_step,
                        "checkpoint": checkpoint,
                        "exit_code": PREEMPTED_EXIT_CODE,
                    },
                )

    def on_train_end(self, args, state, control, **kwargs):
        self.restore_signal_handlers()

    # ---- the end of a preempted run ----

    def checkpoint_path(self) -> str:
        """The folder of the checkpoint written at the stop step."""
        return os.path.join(self._output_dir or "", f"{PREFIX_CHECKPOINT_DIR}-{self.stop_step}")

    def exit_if_preempted(self) -> None:
        """After ``train`` returns: when the run stopped on a signal, waits until every rank has finished
        saving, then raises :class:`TrainingPreempted`. Does nothing otherwise.

        Raises:
            TrainingPreempted: a ``SystemExit`` with code 75.
        """
        self.restore_signal_handlers()
        if self.stop_step is None:
            return
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.barrier(group=self._group)
        preempted = TrainingPreempted(self.stop_step, self.checkpoint_path(), self.signal_name)
        if self._logs_here:
            if self._saved_step != self.stop_step:
                logger.error(
                    "No checkpoint was written at step %d: resuming will redo the steps since the last one.",
                    self.stop_step,
                )
            logger.warning("%s", preempted)
        raise preempted

    def _evaluation_decides_the_save(self, args, state, control, epoch_end: bool) -> bool:
        # With save_strategy="best" the Trainer replaces should_save by "was this evaluation the best?"; at the
        # last step there is no next one to wait for.
        if args.save_strategy != SaveStrategy.BEST or state.global_step >= state.max_steps:
            return False
        evaluates_at_epoch_end = (
            epoch_end and args.eval_strategy == IntervalStrategy.EPOCH and args.eval_delay <= (state.epoch or 0)
        )
        return bool(control.should_evaluate or evaluates_at_epoch_end)


def _distributed(args) -> bool:
    return args.world_size > 1 and dist.is_available() and dist.is_initialized()


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _write_json_atomically(path: str, content: dict) -> None:
    partial = f"{path}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2)
    os.replace(partial, path)

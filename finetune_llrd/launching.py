"""Processes that a launcher (``accelerate launch``, ``torchrun``) started together: joined into one run, or refused.

``accelerate launch --multi_gpu --num_processes 2 script.py`` on a machine without an accelerator starts two
processes that join over gloo on the CPU only when the Trainer is told ``use_cpu=True``; without it each process
trains alone on all the data and writes into the same ``output_dir``. :func:`join_launched_processes_on_cpu` sets
``use_cpu`` there (what every layer-wise arguments class does before transformers sets up its devices), and
:func:`check_processes_joined` refuses, before training, processes that still did not join (an accelerator that
accelerate cannot join processes over, arguments that are not layer-wise ones).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from transformers.utils import is_torch_xla_available


logger = logging.getLogger(__name__)

__all__ = ["ProcessesNotJoinedError", "accelerator_available", "check_processes_joined", "launched_processes"]


class ProcessesNotJoinedError(RuntimeError):
    """Processes a launcher started together did not join one distributed run."""


def launched_processes() -> int:
    """How many processes the launcher started together: its ``WORLD_SIZE`` (1 without a launcher)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def accelerator_available() -> bool:
    """Whether torch sees an accelerator (CUDA, MPS, XPU, HPU, NPU, ...) or an XLA device."""
    return torch.accelerator.is_available() or is_torch_xla_available()


def join_launched_processes_on_cpu(args: Any) -> bool:
    """Sets ``args.use_cpu`` where launched processes could join only over gloo on the CPU.

    That is: a launcher started several processes, torch sees no accelerator, and neither ``use_cpu`` nor a
    DeepSpeed config (which joins its processes itself, ``DS_ACCELERATOR=cpu`` on a CPU) is set. Call it before
    ``TrainingArguments.__post_init__`` sets up the devices. A single process is left as it is.

    Args:
        args: a ``TrainingArguments`` instance, changed in place.

    Returns:
        Whether ``use_cpu`` was set.
    """
    if launched_processes() == 1 or args.use_cpu or args.deepspeed or accelerator_available():
        return False
    args.use_cpu = True
    logger.info(
        "%d launched processes and no accelerator: use_cpu=True, so that they join one run over gloo on the CPU.",
        launched_processes(),
    )
    return True


def check_processes_joined(args: Any) -> None:
    """Refuses processes that a launcher started together but that did not join one distributed run.

    Each of them would train alone on all the data and write into the same ``output_dir``, where two processes
    can leave a checkpoint neither of them wrote whole.

    Args:
        args: ``TrainingArguments`` whose devices are set up (after ``__post_init__``).

    Raises:
        ProcessesNotJoinedError: if the launcher's ``WORLD_SIZE`` is not the arguments' world size, saying how
            to fix it.
    """
    launched = launched_processes()
    if launched == 1 or args.world_size == launched:
        return
    device = args.device.type
    if device == "cpu":
        fix = "pass --use_cpu (use_cpu=True) so that they join over gloo on the CPU"
    else:
        fix = (
            f"accelerate cannot join processes over this machine's {device} device: launch one process, or pass "
            "--use_cpu to join them over gloo on the CPU"
        )
    raise ProcessesNotJoinedError(
        f"The launcher started {launched} processes, but they did not join one distributed run (world size "
        f"{args.world_size}): each would train alone on all the data and write into {args.output_dir}; {fix}."
    )

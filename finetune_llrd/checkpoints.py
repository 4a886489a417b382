"""Checking a checkpoint before resuming from it: that it is complete and readable, and that its
optimizer was built with the same layer-wise groups as the run that resumes it."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import torch


logger = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.json"
OPTIMIZER = "optimizer.pt"
_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
    "adapter_model.safetensors",
    "adapter_model.bin",
)
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint cannot be resumed from: missing, incomplete, corrupt, or built with other groups."""


def complete_checkpoints(output_dir: str) -> list[str]:
    """The ``checkpoint-N`` folders of a run that were written to the end, oldest first.

    The Trainer writes ``trainer_state.json`` last, so a folder without a readable one was cut short
    (a killed process, a full disk).
    """
    if not os.path.isdir(output_dir):
        return []
    found = []
    for entry in os.listdir(output_dir):
        match = _CHECKPOINT.match(entry)
        path = os.path.join(output_dir, entry)
        if match and os.path.isdir(path) and _readable_state(path):
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def _readable_state(folder: str) -> bool:
    try:
        with open(os.path.join(folder, TRAINER_STATE), encoding="utf-8") as handle:
            json.load(handle)
        return True
    except (OSError, ValueError):
        return False


_TRUE_WORDS = frozenset({"true", "yes", "1"})
_FALSE_WORDS = frozenset({"false", "no", "0"})


def parse_resume_argument(resume_from_checkpoint: str | bool | None) -> str | bool | None:
    """``resume_from_checkpoint`` as the Trainer means it, also when it comes from a command line as text.

    ``TrainingArguments.resume_from_checkpoint`` is a string field, so ``--resume_from_checkpoint True`` arrives
    as ``"True"``. The words true / yes / 1 (any case) mean ``True`` and false / no / 0 mean ``None``; anything
    else is a folder (a folder literally named ``True`` is ``./True``).
    """
    if isinstance(resume_from_checkpoint, str):
        word = resume_from_checkpoint.strip().lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return None
    return resume_from_checkpoint


def resolve_resume_checkpoint(resume_from_checkpoint: str | bool | None, output_dir: str) -> str | None:
    """The checkpoint folder that ``resume_from_checkpoint`` designates, checked.

    ``True`` (or the text true / yes / 1, see :func:`parse_resume_argument`) means the newest complete
    checkpoint in ``output_dir``; incomplete newer ones are skipped with a warning (the stock Trainer would
    pick them and fail).

    Raises:
        CheckpointError: if there is none, or it is incomplete or unreadable.
    """
    resume_from_checkpoint = parse_resume_argument(resume_from_checkpoint)
    if resume_from_checkpoint is None or resume_from_checkpoint is False:
        return None
    if resume_from_checkpoint is True:
        complete = complete_checkpoints(output_dir)
        if not complete:
            raise CheckpointError(
                f"resume_from_checkpoint=True but {output_dir} holds no complete checkpoint-N folder (one with a "
                f"readable {TRAINER_STATE}). Start without --resume_from_checkpoint, or pass a checkpoint folder."
            )
        newest = max(
            (p for p in os.listdir(output_dir) if _CHECKPOINT.match(p)),
            key=lambda p: int(_CHECKPOINT.match(p).group(1)),
        )
        if os.path.join(output_dir, newest) != complete[-1]:
            logger.warning("Skipping %s: it was not written to the end. Resuming from %s.", newest, complete[-1])
        path = complete[-1]
    else:
        path = str(resume_from_checkpoint)
    check_checkpoint_folder(path)
    return path


def check_checkpoint_folder(path: str) -> None:
    """Checks that a checkpoint folder is complete and that its state and optimizer files are readable.

    Raises:
        CheckpointError: naming what is wrong and the complete checkpoints beside it.
    """
    problems = []
    if not os.path.isdir(path):
        problems.append("the folder does not exist")
    else:
        if not _readable_state(path):
            problems.append(f"{TRAINER_STATE} is missing or not valid JSON (the save was cut short)")
        if not any(os.path.isfile(os.path.join(path, name)) for name in _WEIGHTS) and not _has_sharded_weights(path):
            problems.append("it holds no model weights")
        optimizer = os.path.join(path, OPTIMIZER)
        if os.path.isfile(optimizer):
            try:
                load_optimizer_groups(optimizer)
            except Exception as error:  # noqa: BLE001 - any failure to read means a corrupt file
                problems.append(f"{OPTIMIZER} cannot be read ({type(error).__name__}: {error})")
    if problems:
        parent = os.path.dirname(os.path.abspath(path))
        others = [p for p in complete_checkpoints(parent) if os.path.abspath(p) != os.path.abspath(path)]
        hint = f" Complete checkpoints beside it: {', '.join(others)}." if others else ""
        raise CheckpointError(f"Cannot resume from {path}: {'; '.join(problems)}.{hint}")


def _has_sharded_weights(path: str) -> bool:
    # FSDP sharded state dicts are folders such as pytorch_model_fsdp_0.
    return any(entry.startswith(("pytorch_model_fsdp", "model_fsdp")) for entry in os.listdir(path))


def load_optimizer_groups(path: str) -> list[dict[str, Any]]:
    """The ``param_groups`` of a saved optimizer, read without loading its state tensors into memory."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return state["param_groups"]


def compare_groups(saved: Sequence[dict[str, Any]], current: Sequence[dict[str, Any]]) -> list[str]:
    """The differences between a checkpoint's optimizer groups and the groups of this run.

    Args:
        saved: ``param_groups`` of the saved optimizer state (``params`` are indices).
        current: the groups of this run (``params`` are tensors; the base rate is ``initial_lr`` once a scheduler
            has run, else ``lr``).

    Returns:
        Readable differences; empty when resuming is safe.
    """
    if len(saved) != len(current):
        return [f"the checkpoint has {len(saved)} parameter groups, this run {len(current)}"]
    differences = []
    for index, (old, new) in enumerate(zip(saved, current)):
        old_rate = old.get("initial_lr", old.get("lr"))
        checks = [
            ("depth", old.get("layer"), new.get("layer")),
            ("parameter rule", old.get("rule"), new.get("rule")),
            ("parameters", len(old["params"]), len(new["params"])),
            ("weight_decay", old.get("weight_decay"), new.get("weight_decay")),
        ]
        if "param_names" in old and "param_names" in new:
            checks.append(("parameter names", old["param_names"], new["param_names"]))
        for what, before, now in checks:
            if before != now:
                differences.append(f"group {index}: {what} {_short(before)} in the checkpoint, {_short(now)} now")
        new_rate = new.get("initial_lr", new["lr"])
        if old_rate is not None and not _close(old_rate, new_rate):
            differences.append(
                f"group {index} (depth {new.get('layer')}): lr {old_rate:.6g} in the checkpoint, {new_rate:.6g} now"
            )
    return differences


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 + 1e-9 * max(abs(a), abs(b))


def check_resume_matches(checkpoint: str, groups: Sequence[dict[str, Any]], optimizer_file: str = OPTIMIZER) -> None:
    """Refuses to resume when the checkpoint's optimizer was built with other layer-wise groups.

    torch would either fail with "loaded state dict contains a parameter group that doesn't match" or,
    when only the rates differ, silently restore the old rates over the new settings.

    Args:
        checkpoint: the checkpoint folder.
        groups: the optimizer groups of the run that resumes (its ``optimizer.param_groups``; a group's base rate is
            its ``initial_lr`` once a scheduler has run).
        optimizer_file: the optimizer's state in the folder: the Trainer's ``optimizer.pt``, or ``optimizer.bin`` of
            ``accelerator.save_state`` in a plain Accelerate loop.

    Raises:
        CheckpointError: listing the differences and the way out.
    """
    path = os.path.join(checkpoint, optimizer_file)
    if not os.path.isfile(path):
        return
    differences = compare_groups(load_optimizer_groups(path), groups)
    if differences:
        shown = "; ".join(differences[:6]) + (
            f"; ... ({len(differences)} differences)" if len(differences) > 6 else ""
        )
        raise CheckpointError(
            f"Cannot resume from {checkpoint}: its optimizer was built with other layer-wise groups ({shown}). "
            "Resume with the settings the checkpoint was trained with (layer_decay, learning_rate, "
            "head_learning_rate, embedding_learning_rate, layer_decay_min_scale, layer_grouping, layer_mapping, "
            "param_group_rules, loraplus_lr_ratio, weight_decay: see its training_args.bin), or start a new run, "
            "loading only its weights with --model_name_or_path."
        )

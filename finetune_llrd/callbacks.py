"""Trainer callbacks of the toolkit, all importable from here: gradual unfreezing and the stop on a non-finite
loss (defined here), the per-depth statistics and adaptation of each step (:class:`DepthStepMonitor`, defined in
``diagnostics.py`` beside the fused per-depth norms it runs on) and the save on preemption
(:class:`PreemptionCallback`, defined in ``preemption.py`` beside its signal handling and exit code).
"""

from __future__ import annotations

import torch
from transformers import TrainerCallback

from .checkpoints import complete_checkpoints
from .diagnostics import DepthStepMonitor
from .preemption import PreemptionCallback


__all__ = [
    "DepthStepMonitor",
    "GradualUnfreezingCallback",
    "NonFiniteLossCallback",
    "NonFiniteLossError",
    "PreemptionCallback",
]


class GradualUnfreezingCallback(TrainerCallback):
    """Gradual unfreezing (ULMFiT): only the top depth trains at first; every ``unfreeze_every_steps``
    optimizer steps the next depth below joins.

    It works on any optimizer whose groups carry ``layer`` (as :func:`finetune_llrd.param_groups` builds
    them). A frozen depth has ``requires_grad=False``: it gets no gradient, so no update, no optimizer state
    and no weight decay, and backward stops above it. Which depths train is a function of the global step
    alone, so a resumed run continues exactly where it stopped. Under DDP, set
    ``ddp_find_unused_parameters=True`` (``LLRDTrainingArguments`` does so).

    Args:
        unfreeze_every_steps: N, the optimizer steps between two unfreezings.
    """

    def __init__(self, unfreeze_every_steps: int):
        if (
            isinstance(unfreeze_every_steps, bool)
            or not isinstance(unfreeze_every_steps, int)
            or unfreeze_every_steps < 1
        ):
            raise ValueError(f"unfreeze_every_steps must be an integer >= 1, got {unfreeze_every_steps!r}.")
        self.unfreeze_every_steps = unfreeze_every_steps
        self._lowest_trainable: int | None = None

    def lowest_trainable_depth(self, global_step: int, head_depth: int) -> int:
        """The lowest depth that trains during the optimizer step after ``global_step`` steps."""
        return max(0, head_depth - global_step // self.unfreeze_every_steps)

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        self._lowest_trainable = None
        self._apply(state.global_step, optimizer)

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self._apply(state.global_step, optimizer)

    def on_train_end(self, args, state, control, optimizer=None, **kwargs):
        for group in _layered_groups(optimizer):
            for param in group["params"]:
                param.requires_grad_(True)
        self._lowest_trainable = None

    def _apply(self, global_step: int, optimizer) -> None:
        groups = _layered_groups(optimizer)
        if not groups:
            raise ValueError(
                "Gradual unfreezing needs optimizer groups that carry 'layer' (the depth): build the optimizer "
                "with finetune_llrd.param_groups or use LLRDTrainer."
            )
        lowest = self.lowest_trainable_depth(global_step, max(group["layer"] for group in groups))
        if lowest == self._lowest_trainable:
            return
        for group in groups:
            trainable = group["layer"] >= lowest
            for param in group["params"]:
                param.requires_grad_(trainable)
        self._lowest_trainable = lowest


def _layered_groups(optimizer) -> list[dict]:
    if optimizer is None:
        return []
    return [group for group in optimizer.param_groups if "layer" in group]


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; raised before the weights it touched are applied (CPU) or saved."""


class NonFiniteLossCallback(TrainerCallback):
    """Stops training with :class:`NonFiniteLossError` when the training loss becomes NaN or inf, before the
    weights that loss touched are applied or saved, so that the last checkpoint stays the last good one.

    The trainer hands it every micro-batch loss with :meth:`record_loss` (``LLRDTrainer`` does, with
    ``stop_on_nonfinite_loss``, the default). The flag stays on the device: reading it is a host sync, done
    only where it costs nothing.

    * On the CPU it is read before every optimizer step: training stops before the bad step changes any
      weight.
    * On an accelerator it is read only at steps where the stock Trainer synchronises anyway (logging,
      evaluation, saving, the last step), after ``DefaultFlowCallback`` has set those flags and before the
      save: the weights the bad steps changed are never saved.

    With several processes the flag is reduced across ranks, so that all of them stop together.
    """

    def __init__(self):
        self._nonfinite: torch.Tensor | None = None
        self._since_step: int | None = None

    def record_loss(self, loss: torch.Tensor, global_step: int) -> None:
        """Notes whether ``loss``, of a micro-batch of optimizer step ``global_step + 1``, is finite."""
        nonfinite = ~torch.isfinite(loss.detach())
        if self._nonfinite is None:
            self._nonfinite = nonfinite
            self._since_step = global_step + 1
        else:
            self._nonfinite = self._nonfinite | nonfinite

    def checks_before_every_step(self) -> bool:
        """Whether the flag is read before every optimizer step rather than only where the Trainer syncs."""
        # On the CPU reading the flag waits for nothing; on an accelerator it would stall the launch queue.
        return self._nonfinite.device.type == "cpu"

    def on_train_begin(self, args, state, control, **kwargs):
        self._nonfinite = self._since_step = None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if self._nonfinite is not None and self.checks_before_every_step():
            self._stop_if_nonfinite(args, state, before_step=True)

    def on_step_end(self, args, state, control, **kwargs):
        # DefaultFlowCallback ran first and has set the flags for this step; the save comes after this hook.
        syncs = control.should_log or control.should_evaluate or control.should_save or control.should_training_stop
        if self._nonfinite is not None and (syncs or state.global_step >= state.max_steps):
            self._stop_if_nonfinite(args, state, before_step=False)

    def _stop_if_nonfinite(self, args, state, before_step: bool) -> None:
        flag = self._nonfinite.to(torch.int32)
        first_step = self._since_step
        self._nonfinite = self._since_step = None
        if args.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item():
            raise NonFiniteLossError(_nonfinite_loss_message(args, state, first_step, before_step))


def _nonfinite_loss_message(args, state, first_step: int, before_step: bool) -> str:
    step = state.global_step + 1 if before_step else state.global_step
    epoch = state.epoch or 0
    complete = complete_checkpoints(args.output_dir)
    last = (
        f"The last checkpoint, {complete[-1]}, is intact: resume from it"
        if complete
        else "No checkpoint was saved yet"
    )
    if before_step:
        where = f"at optimizer step {step} (epoch {epoch:.2f}). Training stopped before that step changed any weight."
    else:
        where = (
            f"at one of optimizer steps {first_step}-{step} (epoch {epoch:.2f}; checked at logging, "
            "evaluation and save steps, so as to add no device sync). Training stopped before saving any weight those steps changed."
        )
    head_rate = getattr(args, "head_learning_rate", None) or args.learning_rate
    return (
        f"The training loss is not finite (NaN or inf) {where} {last} after lowering the learning rate "
        f"(the head's is {head_rate:g}), enabling gradient clipping "
        "(--max_grad_norm 1.0), or training in bf16 instead of fp16. Set --stop_on_nonfinite_loss false to "
        "train on as the stock Trainer does."
    )

"""Trainer callbacks of the toolkit."""

from __future__ import annotations

from transformers import TrainerCallback


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
        if isinstance(unfreeze_every_steps, bool) or not isinstance(unfreeze_every_steps, int) or unfreeze_every_steps < 1:
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

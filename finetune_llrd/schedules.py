"""The slanted triangular learning-rate schedule of ULMFiT (Howard & Ruder, 2018)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


SLANTED_TRIANGULAR = "slanted_triangular"
_KWARGS = {"cut_frac", "ratio"}


def slanted_triangular_factor(
    step: int, *, num_training_steps: int, cut_frac: float = 0.1, ratio: float = 32.0
) -> float:
    """The multiplier of each group's rate at ``step`` (ULMFiT, eq. 3).

    The rate climbs linearly for the first ``cut_frac`` of training, from ``1 / ratio`` of the maximum to the
    maximum, then falls linearly back to ``1 / ratio`` of it.

    Args:
        step: the optimizer step, from 0.
        num_training_steps: T, the number of optimizer steps.
        cut_frac: the fraction of steps that raise the rate.
        ratio: how much smaller the lowest rate is than the highest.

    Returns:
        The factor in ``[1 / ratio, 1]``.
    """
    cut = max(1, math.floor(num_training_steps * cut_frac))
    if step < cut:
        progress = step / cut
    else:
        progress = 1 - (step - cut) / (cut * (1 / cut_frac - 1))
    return (1 + max(progress, 0.0) * (ratio - 1)) / ratio


def get_slanted_triangular_schedule(
    optimizer: Optimizer, num_training_steps: int, *, cut_frac: float = 0.1, ratio: float = 32.0, last_epoch: int = -1
) -> LambdaLR:
    """A ``LambdaLR`` with the slanted triangular factor: every group keeps its own rate, so the ratios
    between depths survive, as with transformers' schedules.

    Args:
        optimizer: the optimizer.
        num_training_steps: the number of optimizer steps.
        cut_frac: the fraction of steps that raise the rate.
        ratio: how much smaller the lowest rate is than the highest.
        last_epoch: the index of the last step, when resuming.

    Returns:
        The scheduler.
    """
    validate_slanted_triangular_kwargs({"cut_frac": cut_frac, "ratio": ratio})
    return LambdaLR(
        optimizer,
        lambda step: slanted_triangular_factor(
            step, num_training_steps=num_training_steps, cut_frac=cut_frac, ratio=ratio
        ),
        last_epoch=last_epoch,
    )


def validate_slanted_triangular_kwargs(kwargs: Mapping) -> None:
    """Checks ``--lr_scheduler_kwargs`` for the slanted triangular schedule.

    Raises:
        ValueError: for an unknown key, a ``cut_frac`` outside (0, 1) or a ``ratio`` below 1.
    """
    unknown = set(kwargs) - _KWARGS
    if unknown:
        raise ValueError(
            f"lr_scheduler_kwargs for slanted_triangular take only {sorted(_KWARGS)}, got {sorted(unknown)}."
        )
    cut_frac = kwargs.get("cut_frac", 0.1)
    ratio = kwargs.get("ratio", 32.0)
    if not isinstance(cut_frac, (int, float)) or not 0 < cut_frac < 1:
        raise ValueError(f"slanted_triangular cut_frac must be in (0, 1), got {cut_frac!r}.")
    if not isinstance(ratio, (int, float)) or not ratio >= 1:
        raise ValueError(f"slanted_triangular ratio must be >= 1, got {ratio!r}.")

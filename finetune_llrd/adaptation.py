"""Rules that adapt each depth's learning rate from the training signal (``--layer_lr_adaptation``).

A rule turns the step's per-depth statistics into one rate multiplier per depth. `DepthStepMonitor`
(``diagnostics.py``) measures the statistics, applies the multipliers to the optimizer step about to run
and restores the scheduled rates after it, so a rule never touches the schedule. A new rule is a
`DepthRateRule` subclass registered in `ADAPTATION_RULES` (and named in the accepted values of
``LLRDTrainingArguments.layer_lr_adaptation``).

Every statistic a rule sees was measured after the gradients were reduced across ranks and accumulated,
before clipping, and reached the host once per step as float64: the multipliers are computed in double
precision on the host, identically on every rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class DepthStatistics:
    """What was measured for one optimizer step, one value per depth of ``depths``.

    Attributes:
        depths: the depths of the optimizer's groups, ascending.
        gradient_norms: each depth's gradient norm, or None when not measured.
        weight_norms: each depth's weight norm before the step, or None when not measured.
        update_ratios: ``||w_after - w_before|| / ||w_before||`` of the step just taken, or None.
    """

    depths: list[int]
    gradient_norms: list[float] | None = None
    weight_norms: list[float] | None = None
    update_ratios: list[float] | None = None


class DepthRateRule:
    """A rule that multiplies every depth's rate for the optimizer step about to run.

    Subclasses say what they need measured, implement :meth:`factors` and, if they learn from the
    outcome of a step, :meth:`observe_step`. A rule that keeps state between steps keeps it in the
    optimizer's parameter groups (as schedulers keep ``initial_lr``): the checkpoint's ``optimizer.pt``
    then saves it and resuming restores it exactly.
    """

    needs_gradient_norms = True
    needs_weight_norms = False
    needs_update_ratios = False

    @classmethod
    def from_args(cls, args: Any) -> DepthRateRule:
        """The rule configured by the training arguments."""
        return cls()

    def factors(self, statistics: DepthStatistics, groups: Sequence[dict[str, Any]]) -> list[float]:
        """One multiplier per depth of ``statistics.depths`` for the step about to run."""
        raise NotImplementedError

    def observe_step(self, statistics: DepthStatistics, groups: Sequence[dict[str, Any]], step: int) -> None:
        """Sees optimizer step ``step`` (from 1) once it is taken; ``statistics`` has its update ratios."""


class Singh2015(DepthRateRule):
    """Layer-specific adaptive learning rates of Singh, De, Zhang, Goldstein & Taylor (2015): every depth's
    rate times ``1 + log(1 + 1 / ||g_d||)``, recomputed each step (see :func:`singh2015_factors`)."""

    def factors(self, statistics: DepthStatistics, groups: Sequence[dict[str, Any]]) -> list[float]:
        return singh2015_factors(torch.tensor(statistics.gradient_norms, dtype=torch.float64)).tolist()


def singh2015_factors(gradient_norms: torch.Tensor) -> torch.Tensor:
    """The factor of Singh et al. (2015) for each depth: ``1 + log(1 + 1 / ||g||)``.

    A depth whose gradient is zero or not finite keeps its rate (factor 1).

    Args:
        gradient_norms: one gradient norm per depth.

    Returns:
        The factors, same shape.
    """
    usable = torch.isfinite(gradient_norms) & (gradient_norms > 0)
    safe = torch.where(usable, gradient_norms, torch.ones_like(gradient_norms))
    return torch.where(usable, 1 + torch.log1p(1 / safe), torch.ones_like(gradient_norms))


ADAPTATION_RULES: dict[str, type[DepthRateRule]] = {"singh2015": Singh2015}


def adaptation_rule(args: Any) -> DepthRateRule | None:
    """The rule that ``args.layer_lr_adaptation`` names; None for ``"none"`` or arguments without the field.

    Raises:
        ValueError: for a name that is not a registered rule, naming the field and the accepted values.
    """
    name = getattr(args, "layer_lr_adaptation", "none")
    if name == "none":
        return None
    if name not in ADAPTATION_RULES:
        raise ValueError(f"layer_lr_adaptation must be one of {['none', *ADAPTATION_RULES]}, got {name!r}.")
    return ADAPTATION_RULES[name].from_args(args)

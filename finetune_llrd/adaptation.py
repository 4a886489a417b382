"""Rules that adapt each depth's learning rate from the training signal (``--layer_lr_adaptation``).

An adaptation turns the step's per-depth statistics into one rate multiplier per depth. `DepthStepMonitor`
(``diagnostics.py``) measures the statistics, applies the multipliers to the optimizer step about to run
and restores the scheduled rates after it, so an adaptation never touches the schedule. A new one is a
`DepthRateAdaptation` subclass registered in `ADAPTATIONS` (and named in the accepted values of
``LLRDTrainingArguments.layer_lr_adaptation``).

Every statistic an adaptation sees was measured after the gradients were reduced across ranks and accumulated,
before clipping, and reached the host in one transfer per step; the multipliers are computed from it in
double precision on the host, identically on every rank.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ._moved import renamed_names


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


class DepthRateAdaptation(abc.ABC):
    """An adaptation that multiplies every depth's rate for the optimizer step about to run (an abstract base
    class: :meth:`factors` is the one method to implement).

    Subclasses say what they need measured, implement :meth:`factors` and, if they learn from the
    outcome of a step, :meth:`observe_step`. An adaptation that keeps state between steps keeps it in the
    optimizer's parameter groups (as schedulers keep ``initial_lr``): the checkpoint's ``optimizer.pt``
    then saves it and resuming restores it exactly.
    """

    needs_gradient_norms = True
    needs_weight_norms = False
    needs_update_ratios = False

    @classmethod
    def from_args(cls, args: Any) -> DepthRateAdaptation:
        """The adaptation configured by the training arguments."""
        return cls()

    @abc.abstractmethod
    def factors(self, statistics: DepthStatistics, groups: Sequence[dict[str, Any]]) -> list[float]:
        """One multiplier per depth of ``statistics.depths`` for the step about to run."""

    def observe_step(self, statistics: DepthStatistics, groups: Sequence[dict[str, Any]], step: int) -> None:  # noqa: B027 - an optional hook
        """Sees optimizer step ``step`` (from 1) once it is taken; ``statistics`` has its update ratios when the
        adaptation needs them."""


class Singh2015(DepthRateAdaptation):
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


class AutoRGN(DepthRateAdaptation):
    """Auto-RGN of Lee, Chen, Tajwar, Kumar, Yao, Liang & Finn, "Surgical Fine-Tuning Improves Adaptation to
    Distribution Shifts" (ICLR 2023, arXiv:2210.11466), per depth.

    It follows the authors' reference code (github.com/anniesch/surgical-finetuning, ``main.py``: ``get_lr_weights``
    and the ``auto_tune == 'RGN'`` branch). There, each parameter tensor's relative gradient norm
    ``RGN = ||g|| / ||theta||``, divided by the largest RGN of the model, multiplies that tensor's rate.

    Implemented: at every optimizer step, for every depth d (all its parameters together),
    ``RGN_d = ||g_d|| / ||w_d||`` and the depth's rate is multiplied by ``RGN_d / max_d' RGN_d'``. A depth whose
    weight norm is zero or whose norms are not finite keeps its rate and stays out of the maximum; when
    every RGN is zero all rates are kept. Differences from the reference: per depth rather than per tensor
    (a per-tensor rate needs one optimizer group per tensor and has no single ``lr/layer_XX`` to log);
    recomputed each step from that step's gradient rather than once per epoch from 5 mini-batches; and
    normalisation parameters are adapted like the rest (the reference leaves BatchNorm untrained).
    """

    needs_weight_norms = True

    def factors(self, statistics: DepthStatistics, groups: Sequence[dict[str, Any]]) -> list[float]:
        norms = torch.tensor([statistics.gradient_norms, statistics.weight_norms], dtype=torch.float64)
        return auto_rgn_factors(norms[0], norms[1]).tolist()


def auto_rgn_factors(gradient_norms: torch.Tensor, weight_norms: torch.Tensor) -> torch.Tensor:
    """``RGN_d / max RGN`` for each depth, with ``RGN_d = ||g_d|| / ||w_d||`` (see :class:`AutoRGN`).

    Args:
        gradient_norms: one gradient norm per depth.
        weight_norms: one weight norm per depth.

    Returns:
        The factors in [0, 1]; 1 for a depth with a zero weight norm or a non-finite norm.
    """
    usable = torch.isfinite(gradient_norms) & torch.isfinite(weight_norms) & (weight_norms > 0)
    ones = torch.ones_like(gradient_norms)
    relative = torch.where(usable, gradient_norms / torch.where(usable, weight_norms, ones), torch.zeros_like(ones))
    largest = relative.max()
    if not largest > 0:
        return ones
    return torch.where(usable, relative / largest, ones)


LARS_TRUST_COEFFICIENT = 0.001


class LARS(DepthRateAdaptation):
    """The layer-wise trust ratio of LARS (You, Gitman & Ginsburg, "Large Batch Training of Convolutional
    Networks", arXiv:1708.03888, 2017) as a multiplier per depth, on top of any optimizer.

    It is the paper's Algorithm 1 (SGD with LARS) as timm's ``Lars`` and NVIDIA apex's ``LARC`` implement it: the
    local rate of layer l is ``eta * ||w_l|| / (||grad L(w_l)|| + beta * ||w_l||)``, which multiplies the global
    rate gamma.

    Implemented: at every optimizer step every depth's rate (the global rate here: ``learning_rate``
    with the decay and the schedule) is multiplied by ``0.001 * ||w_d|| / (||g_d|| + weight_decay * ||w_d||)``,
    with the paper's trust coefficient 0.001 and ``weight_decay`` for beta. A depth with a zero or
    non-finite gradient or weight norm keeps its rate, as in timm. The trust coefficient is not a setting:
    without clipping it only multiplies ``learning_rate``, so choose that as LARS runs do (much larger than
    for plain fine-tuning).
    """

    needs_weight_norms = True

    def __init__(self, weight_decay: float = 0.0):
        self.weight_decay = weight_decay

    @classmethod
    def from_args(cls, args: Any) -> LARS:
        return cls(weight_decay=args.weight_decay)

    def factors(self, statistics: DepthStatistics, groups: Sequence[dict[str, Any]]) -> list[float]:
        norms = torch.tensor([statistics.gradient_norms, statistics.weight_norms], dtype=torch.float64)
        return lars_factors(norms[0], norms[1], weight_decay=self.weight_decay).tolist()


def lars_factors(
    gradient_norms: torch.Tensor,
    weight_norms: torch.Tensor,
    *,
    weight_decay: float = 0.0,
    trust_coefficient: float = LARS_TRUST_COEFFICIENT,
) -> torch.Tensor:
    """The LARS trust ratio of each depth: ``eta * ||w_d|| / (||g_d|| + weight_decay * ||w_d||)`` (see :class:`LARS`).

    Args:
        gradient_norms: one gradient norm per depth.
        weight_norms: one weight norm per depth.
        weight_decay: beta of the paper.
        trust_coefficient: eta of the paper.

    Returns:
        The factors; 1 for a depth with a zero or non-finite norm.
    """
    usable = torch.isfinite(gradient_norms) & torch.isfinite(weight_norms) & (gradient_norms > 0) & (weight_norms > 0)
    ones = torch.ones_like(gradient_norms)
    gradient, weight = torch.where(usable, gradient_norms, ones), torch.where(usable, weight_norms, ones)
    return torch.where(usable, trust_coefficient * weight / (gradient + weight_decay * weight), ones)


class AutoLR(DepthRateAdaptation):
    """The rate tuning of AutoLR (Ro & Choi, "AutoLR: Layer-wise Pruning and Auto-tuning of Learning Rates in
    Fine-tuning of Deep Networks", AAAI 2021, arXiv:2002.06048); the pruning part is not implemented.

    It follows the authors' code
    (github.com/youngminPIL/AutoLR, ``train.py``: ``adjustLR``; ``util/weight_variation_AutoLR.py``). There,
    after each epoch, when the layers' weight variations are not sorted from low (bottom) to high (top),
    each layer gets a desired variation that is, and its rate is rescaled by ``desired / measured``
    (``lr + (desired - now) / (now / lr)``: the variation taken as proportional to the rate); the
    classifier's rate stays fixed, and the epoch is re-run until the order is good enough.

    Implemented, for a Trainer that cannot re-run a period:

    * every ``interval`` optimizer steps (``layer_lr_adaptation_interval``) is one period; the variation
      ``V_d`` of depth d over a period is the sum of its per-step update ratios ``||w_after - w_before|| /
      ||w_before||`` (the reference divides the change over an epoch by the number of weights; a relative
      change summed step by step is independent of the depth's size, is what ``update_ratio/layer_XX``
      logs, and can be saved mid-period);
    * at the end of a period, take the depths below the top one (the head keeps its rate) whose ``V_d`` is
      finite and positive, in depth order. If their variations do not rise (some ``V`` is below the one
      before), the i-th of these n depths gets the desired variation ``T_i = min V + i * (max V - min V) /
      (n - 1)`` and its multiplier becomes ``scale_d * T_d / V_d`` (the reference sets its first targets
      between 2 * min V and 0.4 * max V and later repairs only the out-of-order layers);
    * every step's rate is the scheduled rate times ``scale_d`` (1 at the start).

    The multipliers and the period's partial sums are kept in the optimizer's groups (``autolr_scale``,
    ``autolr_variation``), so that a checkpoint saves them and resuming continues exactly.
    """

    needs_gradient_norms = False
    needs_update_ratios = True
    SCALE_KEY = "autolr_scale"
    VARIATION_KEY = "autolr_variation"

    def __init__(self, interval: int):
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"layer_lr_adaptation_interval must be an integer >= 1, got {interval!r}.")
        self.interval = interval

    @classmethod
    def from_args(cls, args: Any) -> AutoLR:
        return cls(interval=args.layer_lr_adaptation_interval)

    def factors(self, statistics: DepthStatistics, groups: Sequence[dict[str, Any]]) -> list[float]:
        return depth_values(groups, statistics.depths, self.SCALE_KEY, default=1.0)

    def observe_step(self, statistics: DepthStatistics, groups: Sequence[dict[str, Any]], step: int) -> None:
        depths = statistics.depths
        sums = depth_values(groups, depths, self.VARIATION_KEY, default=0.0)
        variations = [total + ratio for total, ratio in zip(sums, statistics.update_ratios)]
        if step % self.interval == 0:
            scales = autolr_scales(depth_values(groups, depths, self.SCALE_KEY, default=1.0), variations)
            set_depth_values(groups, depths, self.SCALE_KEY, scales)
            variations = [0.0] * len(depths)
        set_depth_values(groups, depths, self.VARIATION_KEY, variations)


def autolr_scales(scales: Sequence[float], variations: Sequence[float]) -> list[float]:
    """One AutoLR adjustment (see :class:`AutoLR`): the new rate multiplier of every depth.

    Args:
        scales: the current multipliers, one per depth, ascending depths; the last is the head's.
        variations: each depth's weight variation over the period just ended.

    Returns:
        The multipliers, unchanged when the variations of the tuned depths already rise.
    """
    tuned = [
        index for index in range(len(variations) - 1) if math.isfinite(variations[index]) and variations[index] > 0
    ]
    measured = [variations[index] for index in tuned]
    if len(tuned) < 2 or all(low <= high for low, high in zip(measured, measured[1:])):
        return list(scales)
    smallest, largest = min(measured), max(measured)
    adjusted = list(scales)
    for position, index in enumerate(tuned):
        desired = smallest + position * (largest - smallest) / (len(tuned) - 1)
        adjusted[index] = scales[index] * desired / variations[index]
    return adjusted


def depth_values(groups: Sequence[dict[str, Any]], depths: Sequence[int], key: str, default: float) -> list[float]:
    """The value of ``key`` for each of ``depths``, read from the first group of that depth."""
    found: dict[int, float] = {}
    for group in groups:
        if "layer" in group:
            found.setdefault(int(group["layer"]), group.get(key, default))
    return [found.get(depth, default) for depth in depths]


def set_depth_values(
    groups: Sequence[dict[str, Any]], depths: Sequence[int], key: str, values: Sequence[float]
) -> None:
    """Writes ``values`` (one per depth of ``depths``) under ``key`` into every group of each depth."""
    by_depth = dict(zip(depths, values))
    for group in groups:
        if "layer" in group:
            group[key] = float(by_depth[int(group["layer"])])


ADAPTATIONS: dict[str, type[DepthRateAdaptation]] = {
    "singh2015": Singh2015,
    "auto_rgn": AutoRGN,
    "autolr": AutoLR,
    "lars": LARS,
}


def adaptation_from_args(args: Any) -> DepthRateAdaptation | None:
    """The adaptation that ``args.layer_lr_adaptation`` names; None for ``"none"`` or arguments without the field.

    Raises:
        ValueError: for a name that is not a registered adaptation, naming the field and the accepted values.
    """
    name = getattr(args, "layer_lr_adaptation", "none")
    if name == "none":
        return None
    if name not in ADAPTATIONS:
        raise ValueError(f"layer_lr_adaptation must be one of {['none', *ADAPTATIONS]}, got {name!r}.")
    return ADAPTATIONS[name].from_args(args)


# The names of 0.1.0, when an adaptation was called a rule (a word now kept for ParamGroupRule).
__getattr__ = renamed_names(
    __name__,
    {
        "DepthRateRule": "DepthRateAdaptation",
        "ADAPTATION_RULES": "ADAPTATIONS",
        "adaptation_rule": "adaptation_from_args",
    },
)

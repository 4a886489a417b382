"""Per-depth statistics of the optimizer steps: gradient norms, weight norms, update-to-weight ratios,
the adaptive rates that use them, and their logs.

`DepthIndex` works on tensors that stay on the device: one fused norm over all gradients, then a scatter
into depths. `DepthStepMonitor` decides when a value goes to the host (once per step for an adaptation,
once per logging step for the logs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
from transformers import TrainerCallback
from transformers.trainer_utils import IntervalStrategy

from .adaptation import DepthRateAdaptation, DepthStatistics, adaptation_from_args
from .groups.rate_table import depth_learning_rate_logs, depth_logs


class DepthIndex:
    """The parameters of an optimizer in a fixed order, each with the index of its depth.

    Args:
        groups: optimizer parameter groups carrying ``layer``.
    """

    def __init__(self, groups: Sequence[dict]):
        self.depths = sorted({int(group["layer"]) for group in groups if "layer" in group})
        position = {depth: index for index, depth in enumerate(self.depths)}
        self.params: list[torch.nn.Parameter] = []
        indices: list[int] = []
        for group in groups:
            if "layer" not in group:
                continue
            for param in group["params"]:
                self.params.append(param)
                indices.append(position[int(group["layer"])])
        self._indices = torch.tensor(indices, dtype=torch.long)
        # FSDP2 (DTensor) and FSDP1 with use_orig_params hold one shard of each parameter per rank.
        self.sharded = any(hasattr(p, "to_local") or getattr(p, "_fsdp_flattened", False) for p in self.params)

    def per_depth_norms(self, tensors: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """The L2 norm of ``tensors`` (one per parameter, None for none) summed by depth.

        Under FSDP each rank holds one shard of every tensor: the squares are summed across ranks.

        Returns:
            A float32 tensor with one norm per depth in ``self.depths``, on the tensors' device.
        """
        present = [(i, t.to_local() if hasattr(t, "to_local") else t) for i, t in enumerate(tensors) if t is not None]
        device = present[0][1].device if present else self.params[0].device if self.params else torch.device("cpu")
        squares = torch.zeros(len(self.depths), dtype=torch.float32, device=device)
        if present:
            norms = torch.stack([norm.to(torch.float32) for norm in torch._foreach_norm([t for _, t in present])])
            index = self._indices[[i for i, _ in present]].to(device)
            squares.index_add_(0, index, norms.square())
        if self.sharded and dist.is_available() and dist.is_initialized():
            dist.all_reduce(squares)
        return squares.sqrt()

    def gradient_norms(self) -> torch.Tensor:
        """Every depth's gradient norm (of the gradients as they are now)."""
        return self.per_depth_norms([param.grad for param in self.params])

    def weight_norms(self) -> torch.Tensor:
        """Every depth's weight norm (of the parameters as they are now)."""
        return self.per_depth_norms([param.detach() for param in self.params])

    def snapshot(self) -> list[torch.Tensor | None]:
        """Copies of the parameters that have a gradient (those the next step will change)."""
        return [param.detach().clone() if param.grad is not None else None for param in self.params]

    def update_ratios(self, before: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """``||w_after - w_before|| / ||w_before||`` per depth, from a :meth:`snapshot` taken before the step."""
        deltas = [None if old is None else param.detach() - old for param, old in zip(self.params, before)]
        change = self.per_depth_norms(deltas)
        size = self.per_depth_norms(before)
        return torch.where(size > 0, change / size.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(size))


class DepthStepMonitor(TrainerCallback):
    """The per-depth statistics of every optimizer step and the rate adaptation that uses them.

    For a run it owns the index of the optimizer's parameters by depth and the adaptation that
    ``layer_lr_adaptation`` names (see ``adaptation.py``). For each step it owns every depth's gradient norm
    (after the gradients were reduced across ranks and accumulated, before clipping), weight norm (when the
    adaptation uses it), the adaptation's multipliers and their undo, the rates the step actually used, and the
    update-to-weight ratios.

    The trainer calls it at two points: :meth:`gradients_ready` once the gradients of an optimizer step are
    complete, and :meth:`logs` when it logs. The rest runs as callback events around the optimizer step,
    after clipping and before the scheduler: the multipliers apply to that step only, and the groups hold
    the scheduled rates again afterwards. Nothing runs when no optimizer group carries ``layer``.
    """

    def __init__(self):
        self.depths: DepthIndex | None = None
        self.adaptation: DepthRateAdaptation | None = None
        self.log_statistics = False
        self.gradient_norms: torch.Tensor | None = None
        self.weight_norms: torch.Tensor | None = None
        self.update_ratios: torch.Tensor | None = None
        self.applied_rates: list[dict[str, Any]] | None = None
        self._scheduled_rates: list[float] | None = None
        self._weights_before_step: list[torch.Tensor | None] | None = None

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        # After accelerator.prepare: FSDP2 has replaced the parameters in the groups by their shards.
        groups = optimizer.param_groups if optimizer is not None else []
        self.depths = DepthIndex(groups) if any("layer" in group for group in groups) else None
        self.adaptation = adaptation_from_args(args) if self.depths is not None else None
        self.log_statistics = bool(getattr(args, "log_layer_grad_norms", False))
        self.gradient_norms = self.weight_norms = self.update_ratios = None
        self.applied_rates = self._scheduled_rates = self._weights_before_step = None

    def gradients_ready(self) -> None:
        """Measures the step's per-depth norms. Call it once the gradients of an optimizer step are reduced
        across ranks and accumulated, before clipping (``LLRDTrainer.training_step`` does)."""
        if self.depths is None:
            return
        adaptation = self.adaptation
        if self.log_statistics or (adaptation is not None and adaptation.needs_gradient_norms):
            self.gradient_norms = self.depths.gradient_norms()
        if adaptation is not None and adaptation.needs_weight_norms:
            self.weight_norms = self.depths.weight_norms()

    def on_pre_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self.depths is None or optimizer is None:
            return
        groups = optimizer.param_groups
        if self.adaptation is not None and (
            self.gradient_norms is not None or not self.adaptation.needs_gradient_norms
        ):
            factors = self.adaptation.factors(self._measured_statistics(), groups)
            position = {depth: index for index, depth in enumerate(self.depths.depths)}
            self._scheduled_rates = [group["lr"] for group in groups]
            for group in groups:
                if "layer" in group:
                    group["lr"] = group["lr"] * factors[position[int(group["layer"])]]
        needs_ratios = self.adaptation is not None and self.adaptation.needs_update_ratios
        if needs_ratios or (self.log_statistics and step_will_log(args, state)):
            self._weights_before_step = self.depths.snapshot()

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        if self.depths is None or optimizer is None:
            return
        groups = optimizer.param_groups
        self.applied_rates = [
            # float(): an optimizer that keeps its rates as tensors (torchao's) has the scheduler change them in place.
            {"layer": group["layer"], "lr": float(group["lr"]), "tower": group.get("tower"), "rule": group.get("rule")}
            for group in groups
            if "layer" in group
        ]
        if self._scheduled_rates is not None:
            for group, rate in zip(groups, self._scheduled_rates):
                group["lr"] = rate
            self._scheduled_rates = None
        if self._weights_before_step is not None:
            self.update_ratios = self.depths.update_ratios(self._weights_before_step)
            self._weights_before_step = None
        if self.adaptation is not None:
            ratios = self.update_ratios.tolist() if self.adaptation.needs_update_ratios else None
            self.adaptation.observe_step(
                DepthStatistics(self.depths.depths, update_ratios=ratios), groups, step=state.global_step + 1
            )

    def _measured_statistics(self) -> DepthStatistics:
        """The norms the adaptation uses, measured for the step, on the host in one transfer."""
        measured = {}
        if self.adaptation.needs_gradient_norms:
            measured["gradient_norms"] = self.gradient_norms
        if self.adaptation.needs_weight_norms:
            measured["weight_norms"] = self.weight_norms
        rows = torch.stack(list(measured.values())).tolist() if measured else []
        return DepthStatistics(self.depths.depths, **dict(zip(measured, rows)))

    def logs(self, groups: Sequence[dict[str, Any]], head_depth: int | None = None) -> dict[str, float]:
        """The per-depth entries of a training log: every depth's rate in the optimizer step just taken, as
        applied (adaptation included), and with ``log_layer_grad_norms`` its gradient norm, weight norm (when
        the adaptation measures it) and update ratio.

        Args:
            groups: the optimizer's groups, whose rates are logged until a step has been taken.
            head_depth: L+1; by default the deepest depth present.
        """
        if self.applied_rates is not None:
            groups = self.applied_rates
        logs = depth_learning_rate_logs(groups, head_depth=head_depth)
        if self.log_statistics and self.depths is not None:
            for prefix, values in (
                ("grad_norm", self.gradient_norms),
                ("weight_norm", self.weight_norms),
                ("update_ratio", self.update_ratios),
            ):
                if values is not None:
                    logs.update(depth_logs(prefix, self.depths.depths, values.tolist(), head_depth))
            self.update_ratios = None
        return logs


def step_will_log(args, state) -> bool:
    """Whether the optimizer step about to run ends on a logging step (logging_strategy="steps")."""
    if args.logging_strategy != IntervalStrategy.STEPS:
        return False
    next_step = state.global_step + 1
    return (args.logging_first_step and next_step == 1) or bool(
        state.logging_steps and next_step % state.logging_steps == 0
    )

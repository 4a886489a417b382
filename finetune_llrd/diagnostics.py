"""Per-depth gradient norms, the rate adaptation of Singh et al. (2015), and update-to-weight ratios.

Everything here works on tensors that stay on the device: one fused norm over all gradients, then a
scatter into depths. The caller decides when a value goes to the host (once per step for the
adaptation, once per logging step for the logs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist


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

    def snapshot(self) -> list[torch.Tensor | None]:
        """Copies of the parameters that have a gradient (those the next step will change)."""
        return [param.detach().clone() if param.grad is not None else None for param in self.params]

    def update_ratios(self, before: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """``||w_after - w_before|| / ||w_before||`` per depth, from a :meth:`snapshot` taken before the step."""
        deltas = [None if old is None else param.detach() - old for param, old in zip(self.params, before)]
        change = self.per_depth_norms(deltas)
        size = self.per_depth_norms(before)
        return torch.where(size > 0, change / size.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros_like(size))


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

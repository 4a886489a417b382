"""Muon with layer-wise rates: :class:`LayerwiseMuon`, one optimizer holding Muon's groups and their AdamW
fallback, and :func:`layerwise_muon`, which builds it over a model for a plain training loop.

Muon (Jordan et al. 2024; torch's ``torch.optim.Muon``) takes only the hidden matrices; the embeddings, the head,
norms, biases, tokens and positions need another optimizer (AdamW). Two optimizers would not pass through the
Trainer, accelerate, the schedulers and checkpoints as one, so :class:`LayerwiseMuon` holds both kinds of group:
each group carries ``use_muon``, and its step is ``torch.optim.Muon``'s (for ``use_muon=True``) or
``torch.optim.AdamW``'s (for the others), computed by torch's own functions. The state of every parameter lives in
``optimizer.state``, so ``state_dict()`` / ``load_state_dict()`` and resuming are exact, and every scheduler scales
each group's ``lr``.

The learning rates: by default ``adjust_lr_fn="match_rms_adamw"`` (Moonlight, Liu et al. 2025): Muon's update of a
``A x B`` matrix is scaled by ``0.2 * sqrt(max(A, B))``, so that its RMS matches AdamW's and the rates (and weight
decay) tuned for AdamW transfer to Muon unchanged, the depths' rates included. ``torch.optim.Muon``'s own default is
``"original"`` (Keller Jordan's ``sqrt(max(1, A / B))``, which wants rates about 0.02): pass
``adjust_lr_fn="original"`` for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim._muon import (
    DEFAULT_A,
    DEFAULT_B,
    DEFAULT_C,
    DEFAULT_NS_STEPS,
    EPS,
    _adjust_lr,
    _zeropower_via_newtonschulz,
)
from torch.optim.adam import Adam, adam

from .depths import LayerMap, layer_map
from .groups import param_groups
from .groups.muon import muon_parameter_names, split_groups_for_muon


__all__ = ["MUON_KWARGS", "LayerwiseMuon", "layerwise_muon", "muon_groups"]

# The keyword arguments of torch.optim.Muon that LayerwiseMuon takes as they are (its ``eps`` is ``ns_eps`` here).
MUON_KWARGS = ("lr", "weight_decay", "momentum", "nesterov", "ns_coefficients", "eps", "ns_steps", "adjust_lr_fn")


class LayerwiseMuon(Optimizer):
    """Muon for the groups with ``use_muon=True`` and AdamW for the others, in one optimizer.

    A Muon group's step is exactly ``torch.optim.Muon``'s (momentum, Nesterov, Newton-Schulz, the adjusted rate,
    decoupled weight decay ``lr * weight_decay``), a convolution kernel being flattened to ``(out_channels, -1)``
    for the Newton-Schulz iteration; an AdamW group's step is exactly ``torch.optim.AdamW``'s (with ``betas``,
    ``eps``, ``amsgrad``, ``foreach`` and ``fused``). Every group keeps its own ``lr`` and ``weight_decay``.

    Args:
        params: parameter groups, each with ``use_muon`` (:func:`muon_groups` builds them); a group without it is
            AdamW's.
        lr: the default rate of a group without one.
        weight_decay: the default weight decay of a group without one.
        momentum: Muon's momentum.
        nesterov: Muon's Nesterov momentum.
        ns_coefficients: the Newton-Schulz coefficients (a, b, c).
        ns_eps: the Newton-Schulz iteration's epsilon (``torch.optim.Muon``'s ``eps``).
        ns_steps: the Newton-Schulz steps.
        adjust_lr_fn: ``"match_rms_adamw"`` (default: AdamW's rates transfer), ``"original"`` or None (Keller
            Jordan's scaling, ``torch.optim.Muon``'s default).
        betas: AdamW's betas.
        eps: AdamW's epsilon.
        amsgrad: AdamW's amsgrad.
        foreach: AdamW's foreach.
        fused: AdamW's fused.

    Raises:
        ValueError: for an invalid setting, or a Muon group holding a parameter with fewer than two dimensions.
    """

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: tuple[float, float, float] = (DEFAULT_A, DEFAULT_B, DEFAULT_C),
        ns_eps: float = EPS,
        ns_steps: int = DEFAULT_NS_STEPS,
        adjust_lr_fn: str | None = "match_rms_adamw",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not momentum >= 0.0:
            raise ValueError(f"momentum should be >= 0 but is: {momentum}")
        if adjust_lr_fn not in (None, "original", "match_rms_adamw"):
            raise ValueError(f"adjust_lr_fn must be 'match_rms_adamw', 'original' or None, got {adjust_lr_fn!r}.")
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid betas: {betas}")
        defaults = {
            "lr": lr,
            "weight_decay": weight_decay,
            "use_muon": False,
            # Muon's
            "momentum": momentum,
            "nesterov": nesterov,
            "ns_coefficients": tuple(ns_coefficients),
            "ns_eps": ns_eps,
            "ns_steps": ns_steps,
            "adjust_lr_fn": adjust_lr_fn,
            # AdamW's, as torch.optim.AdamW sets them
            "betas": tuple(betas),
            "eps": eps,
            "amsgrad": amsgrad,
            "maximize": False,
            "foreach": foreach,
            "capturable": False,
            "differentiable": False,
            "fused": fused,
            "decoupled_weight_decay": True,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["use_muon"]:
                for param, name in zip(group["params"], group.get("param_names") or [None] * len(group["params"])):
                    if param.ndim < 2:
                        raise ValueError(
                            f"A Muon group (use_muon=True) holds {name or 'a parameter'} of shape "
                            f"{tuple(param.shape)}: Muon takes matrices only. Build the groups with "
                            "finetune_llrd.optimizers.muon_groups, which sends other shapes to AdamW."
                        )

    @torch.no_grad()
    def step(self, closure=None):
        """One step of every group: Muon's or AdamW's."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["use_muon"]:
                self._muon_step(group)
            else:
                self._adamw_step(group)
        return loss

    def _muon_step(self, group: dict[str, Any]) -> None:
        # torch.optim._muon._single_tensor_muon, with kernels of more than two dimensions flattened.
        lr = group["lr"].item() if torch.is_tensor(group["lr"]) else group["lr"]
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        for param in group["params"]:
            grad = param.grad
            if grad is None:
                continue
            if grad.is_sparse or torch.is_complex(param):
                raise RuntimeError("Muon does not support sparse gradients or complex parameters")
            if param.ndim < 2 or type(param).__name__ == "DTensor":
                raise RuntimeError(
                    f"A Muon group holds a parameter of shape {tuple(param.shape)} ({type(param).__name__}) at its "
                    "step: something (DeepSpeed ZeRO, FSDP) flattened or sharded it after the groups were built, and "
                    "Newton-Schulz needs each whole matrix. Train Muon with DDP or one process."
                )
            state = self.state[param]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
            buf = state["momentum_buffer"]
            buf.lerp_(grad, 1 - momentum)
            update = grad.lerp(buf, momentum) if group["nesterov"] else buf
            matrix = update.reshape(update.shape[0], -1)
            update = _zeropower_via_newtonschulz(matrix, group["ns_coefficients"], group["ns_steps"], group["ns_eps"])
            adjusted_lr = _adjust_lr(lr, group["adjust_lr_fn"], matrix.shape)
            param.mul_(1 - lr * weight_decay)
            param.add_(update.view(param.shape), alpha=-adjusted_lr)

    def _adamw_step(self, group: dict[str, Any]) -> None:
        # torch.optim.Adam.step for one group, with decoupled weight decay: torch.optim.AdamW.
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps = [], [], [], [], [], []
        has_complex = Adam._init_group(self, group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps)
        if not params:
            return
        beta1, beta2 = group["betas"]
        adam(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            max_exp_avg_sqs,
            steps,
            amsgrad=group["amsgrad"],
            has_complex=has_complex,
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
            foreach=group["foreach"],
            capturable=group["capturable"],
            differentiable=group["differentiable"],
            fused=group["fused"],
            grad_scale=getattr(self, "grad_scale", None),
            found_inf=getattr(self, "found_inf", None),
            decoupled_weight_decay=True,
        )


def muon_groups(groups: list[dict[str, Any]], model: nn.Module, layers: LayerMap) -> list[dict[str, Any]]:
    """Layer-wise groups split for :class:`LayerwiseMuon`: each group's blocks' matrices on Muon's side, the rest on
    AdamW's, both at the group's rate and weight decay (:mod:`finetune_llrd.groups.muon`).

    Args:
        groups: :func:`~finetune_llrd.param_groups` of ``model``.
        model: the module whose parameters the groups hold.
        layers: its depths (the map the groups were built with).

    Returns:
        The groups, each carrying ``use_muon``.
    """
    return split_groups_for_muon(groups, muon_parameter_names(model, layers.depths, layers.num_layers))


def layerwise_muon(
    model: nn.Module,
    *,
    muon_kwargs: Mapping[str, Any] | None = None,
    layers: LayerMap | None = None,
    **param_groups_kwargs: Any,
) -> LayerwiseMuon:
    """:class:`LayerwiseMuon` over the layer-wise groups of ``model``, for a plain training loop.

    Example::

        optimizer = layerwise_muon(model, lr=2e-4, layer_decay=0.9, weight_decay=0.01)

    Args:
        model: the model to fine-tune.
        muon_kwargs: keyword arguments of :class:`LayerwiseMuon` (``momentum``, ``adjust_lr_fn``, ``betas``, ...).
        layers: the depths, if computed before (else ``layer_map(model)`` with ``param_groups_kwargs``'s
            ``layer_grouping``, ``layer_mapping`` and ``towers``).
        **param_groups_kwargs: :func:`~finetune_llrd.param_groups`'s arguments (``lr``, ``layer_decay``,
            ``weight_decay``, ``rules``, ``rates``, ...).

    Returns:
        The optimizer; its groups carry ``layer`` and ``use_muon``.
    """
    if layers is None:
        layers = layer_map(
            model,
            grouping=param_groups_kwargs.pop("layer_grouping", "block"),
            mapping=param_groups_kwargs.pop("layer_mapping", None),
            towers=param_groups_kwargs.pop("towers", "auto"),
        )
    groups = param_groups(model, layers=layers, **param_groups_kwargs)
    return LayerwiseMuon(muon_groups(groups, model, layers), **dict(muon_kwargs or {}))

"""The split of layer-wise groups between Muon and its AdamW fallback.

Muon orthogonalizes the update of a matrix; it suits the hidden matrices of the blocks and nothing else. Each
layer-wise group (one depth, rule and weight-decay class) is split in two groups at the same rate and weight decay:

* Muon's side (``use_muon=True``): the parameters of the blocks (depths 1 to L) with two or more dimensions that are
  weights of features: linear weights, and convolution kernels (flattened to ``(out_channels, -1)``, as timm does);
  a stack of matrices in one tensor that is no convolution kernel (the fused experts of transformers' MoE blocks,
  ``(experts, out, in)``) stays with AdamW, since flattening it would orthogonalize across experts;
* the AdamW fallback (``use_muon=False``): everything else: the embeddings and the head (depths 0 and L+1, so a
  tied LM head too), every ``nn.Embedding`` weight, norms, biases, learned tokens and positions, relative position
  tables, layer scales: the parameters :func:`~finetune_llrd.groups.no_weight_decay_names` exempts, whatever the
  weight decay is.

A rule with ``muon: true`` or ``muon: false`` (:class:`~finetune_llrd.groups.ParamGroupRule`) sends its parameters
to one side whatever their place (a 1-D parameter cannot go to Muon).

Imports torch alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from .weight_decay import no_weight_decay_names


__all__ = ["muon_parameter_names", "split_groups_for_muon"]


def muon_parameter_names(model: nn.Module, depths: dict[str, int], num_layers: int) -> set[str]:
    """The parameters of ``model`` that Muon takes by their place and shape (rules aside).

    Args:
        model: the module whose parameters the groups hold.
        depths: the depth of every parameter name (``LayerMap.depths``).
        num_layers: L, the number of blocks (the head is depth L+1).

    Returns:
        Names as in ``model.named_parameters()``: the blocks' matrices and convolution kernels, other than
        embeddings, tokens, positions and what :func:`~finetune_llrd.groups.no_weight_decay_names` exempts.
    """
    exempt = no_weight_decay_names(model)
    embeddings = {
        f"{path}.{attribute}" if path else attribute
        for path, module in model.named_modules()
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag))
        for attribute, _ in module.named_parameters(recurse=False)
    }
    kernels = {
        f"{path}.weight" if path else "weight"
        for path, module in model.named_modules()
        if isinstance(module, nn.modules.conv._ConvNd)
    }
    return {
        name
        for name, param in model.named_parameters()
        if (param.ndim == 2 or (param.ndim > 2 and name in kernels))
        and name not in exempt
        and name not in embeddings
        and 1 <= depths.get(name, -1) <= num_layers
    }


def split_groups_for_muon(groups: Iterable[dict[str, Any]], muon_names: set[str]) -> list[dict[str, Any]]:
    """Splits every group into its Muon part and its AdamW part, each a group of its own at the group's rate, weight
    decay and keys (``layer``, ``rule``, ``tower``), carrying ``use_muon``; no empty group.

    Args:
        groups: parameter groups with ``params`` and ``param_names`` (:func:`~finetune_llrd.param_groups` output).
        muon_names: the parameter names Muon takes by their place (:func:`muon_parameter_names`); a group's
            ``muon`` key (set by a rule) overrides it for the whole group.

    Returns:
        The groups in their order, the Muon part of each before its AdamW part.

    Raises:
        ValueError: for a group without ``param_names``, or a rule that sends a parameter with fewer than two
            dimensions to Muon.
    """
    split: list[dict[str, Any]] = []
    for group in groups:
        if "param_names" not in group:
            raise ValueError(
                "split_groups_for_muon needs groups with param_names (finetune_llrd.param_groups builds them)."
            )
        forced = group.get("muon")
        sides: dict[bool, list[int]] = {True: [], False: []}
        for index, (name, param) in enumerate(zip(group["param_names"], group["params"])):
            use_muon = name in muon_names if forced is None else bool(forced)
            if use_muon and param.ndim < 2:
                raise ValueError(
                    f"Rule {group.get('rule')!r} sends {name} (shape {tuple(param.shape)}) to Muon, which takes "
                    "matrices only: narrow its pattern to parameters with two or more dimensions."
                )
            sides[use_muon].append(index)
        for use_muon in (True, False):
            indices = sides[use_muon]
            if indices:
                part = {key: value for key, value in group.items() if key != "muon"}
                part["params"] = [group["params"][i] for i in indices]
                part["param_names"] = [group["param_names"][i] for i in indices]
                part["use_muon"] = use_muon
                split.append(part)
    return split

"""Optimizer parameter groups with layer-wise learning rates.

The rate at depth d of a model with L blocks is ``lr * layer_decay ** (L + 1 - d)`` (the BEiT / MAE /
timm convention): the head (depth L+1) gets ``lr``, the top block ``lr * layer_decay``, the embeddings
``lr * layer_decay ** (L + 1)``. The final rate is written into each group's ``lr``, so every optimizer
and every scheduler that scales each group's initial rate (all of transformers' schedules) keeps the
ratios between depths.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

from torch import nn

from .layer_map import LAYER_GROUPINGS, LayerMap, LayerMapping, layer_map
from .weight_decay import no_weight_decay_names

logger = logging.getLogger(__name__)


def validate_layerwise_settings(
    *,
    learning_rate: float,
    layer_decay: float,
    head_learning_rate: float | None = None,
    embedding_learning_rate: float | None = None,
    layer_decay_min_scale: float = 0.0,
    layer_grouping: str = "block",
    learning_rate_name: str = "learning_rate",
) -> None:
    """Checks layer-wise settings, raising a ``ValueError`` that names the field and its allowed range.

    Args:
        learning_rate: the base rate (the head's, unless ``head_learning_rate`` is given).
        layer_decay: the factor between neighbouring depths, in (0, 1].
        head_learning_rate: the head's rate, >= 0, or None.
        embedding_learning_rate: the embeddings' rate, >= 0, or None.
        layer_decay_min_scale: the floor, as a fraction of ``learning_rate``, in [0, 1].
        layer_grouping: ``"block"`` or ``"stage"``.
        learning_rate_name: the name of ``learning_rate`` in the caller's signature, for the message.

    Raises:
        ValueError: on the first invalid setting.
    """
    if not _is_finite_number(learning_rate) or learning_rate < 0:
        raise ValueError(f"{learning_rate_name} must be a finite number >= 0, got {learning_rate!r}.")
    if not _is_finite_number(layer_decay) or not 0.0 < layer_decay <= 1.0:
        raise ValueError(
            f"layer_decay must be in (0, 1] (1.0 turns layer-wise decay off; 0.65-0.95 are usual), got {layer_decay!r}."
        )
    for name, value in (("head_learning_rate", head_learning_rate), ("embedding_learning_rate", embedding_learning_rate)):
        if value is not None and (not _is_finite_number(value) or value < 0):
            raise ValueError(f"{name} must be a finite number >= 0 or None, got {value!r}.")
    if not _is_finite_number(layer_decay_min_scale) or not 0.0 <= layer_decay_min_scale <= 1.0:
        raise ValueError(
            f"layer_decay_min_scale must be in [0, 1] (a fraction of the learning rate), got {layer_decay_min_scale!r}."
        )
    if layer_grouping not in LAYER_GROUPINGS:
        raise ValueError(f"layer_grouping must be one of {list(LAYER_GROUPINGS)}, got {layer_grouping!r}.")


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def depth_learning_rates(
    num_layers: int,
    *,
    lr: float,
    layer_decay: float,
    head_learning_rate: float | None = None,
    embedding_learning_rate: float | None = None,
    layer_decay_min_scale: float = 0.0,
) -> list[float]:
    """The learning rate of every depth ``0..num_layers + 1``.

    Args:
        num_layers: L, the number of blocks.
        lr: the head's rate and the base of the decay.
        layer_decay: the factor between neighbouring depths.
        head_learning_rate: replaces the head's rate (depth L+1); the blocks still decay from ``lr``.
        embedding_learning_rate: replaces the embeddings' rate (depth 0).
        layer_decay_min_scale: no decayed rate falls below ``lr * layer_decay_min_scale``.

    Returns:
        ``rates[d]`` is the rate at depth d.
    """
    floor = lr * layer_decay_min_scale
    rates = [max(lr * layer_decay ** (num_layers + 1 - depth), floor) for depth in range(num_layers + 2)]
    if head_learning_rate is not None:
        rates[-1] = head_learning_rate
    if embedding_learning_rate is not None:
        rates[0] = embedding_learning_rate
    return rates


def check_parameters_are_not_flattened(model: nn.Module) -> None:
    """Refuses FSDP1's flattened parameters, which mix depths and weight-decay classes in one tensor.

    Raises:
        ValueError: with the fix, if the model holds a FlatParameter.
    """
    for name, param in model.named_parameters():
        if getattr(param, "_is_flat_param", False):
            raise ValueError(
                f"{name} is an FSDP1 FlatParameter: FSDP1 with use_orig_params=False flattens each wrapped module's "
                "parameters into one tensor, so depths and weight-decay classes cannot be told apart. Set "
                "fsdp_use_orig_params: true in the Accelerate config (use_orig_params=True), or use FSDP2 "
                "(fsdp_version: 2)."
            )


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    layer_decay: float,
    weight_decay: float = 0.0,
    head_learning_rate: float | None = None,
    embedding_learning_rate: float | None = None,
    layer_decay_min_scale: float = 0.0,
    layer_grouping: str = "block",
    layer_mapping: LayerMapping | None = None,
    layers: LayerMap | None = None,
) -> list[dict[str, Any]]:
    """Builds torch optimizer parameter groups with layer-wise learning rates.

    Every trainable parameter lands in exactly one group; frozen parameters in none; a tied weight once.
    Parameters with the same depth and weight decay share a group; there are no empty groups.

    Args:
        model: the model to fine-tune.
        lr: the head's learning rate and the base of the decay.
        layer_decay: the factor between neighbouring depths, in (0, 1].
        weight_decay: the decay of weights; biases, norms, tokens and positions get 0.
        head_learning_rate: the head's rate, if not ``lr``.
        embedding_learning_rate: the embeddings' rate, if not ``lr * layer_decay ** (L + 1)``.
        layer_decay_min_scale: no decayed rate falls below ``lr * layer_decay_min_scale``.
        layer_grouping: ``"block"`` or ``"stage"`` (for staged backbones such as Swin or ConvNeXt).
        layer_mapping: your own ``{regex: depth}`` or ``name -> depth``; it wins over the automatic map.
        layers: a :class:`LayerMap` computed before (then ``layer_grouping`` and ``layer_mapping`` are unused).

    Returns:
        Groups ordered by depth, each a dict with ``params``, ``lr``, ``weight_decay``, ``layer`` (the
        depth) and ``param_names``.
    """
    validate_layerwise_settings(
        learning_rate=lr,
        layer_decay=layer_decay,
        head_learning_rate=head_learning_rate,
        embedding_learning_rate=embedding_learning_rate,
        layer_decay_min_scale=layer_decay_min_scale,
        layer_grouping=layer_grouping,
        learning_rate_name="lr",
    )
    if not _is_finite_number(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}.")
    check_parameters_are_not_flattened(model)
    if layers is None:
        layers = layer_map(model, grouping=layer_grouping, mapping=layer_mapping)
    rates = depth_learning_rates(
        layers.num_layers,
        lr=lr,
        layer_decay=layer_decay,
        head_learning_rate=head_learning_rate,
        embedding_learning_rate=embedding_learning_rate,
        layer_decay_min_scale=layer_decay_min_scale,
    )
    _warn_if_not_increasing(rates)
    exempt = no_weight_decay_names(model) if weight_decay > 0 else set()

    buckets: dict[tuple[int, float], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = layers.depths[name]
        decay = 0.0 if name in exempt else weight_decay
        bucket = buckets.setdefault(
            (depth, decay), {"params": [], "lr": rates[depth], "weight_decay": decay, "layer": depth, "param_names": []}
        )
        bucket["params"].append(param)
        bucket["param_names"].append(name)
    return [buckets[key] for key in sorted(buckets, key=lambda key: (key[0], -key[1]))]


def _warn_if_not_increasing(rates: Sequence[float]) -> None:
    if any(low > high for low, high in zip(rates, rates[1:])):
        logger.warning(
            "The layer-wise rates fall somewhere as depth rises (%s): head_learning_rate or "
            "embedding_learning_rate overrides the decay against its direction.",
            ", ".join(f"{rate:.3g}" for rate in rates),
        )


def lr_table(groups: Iterable[dict[str, Any]], layers: LayerMap | None = None) -> list[dict[str, Any]]:
    """One row per depth of a list of groups (``param_groups`` output or ``optimizer.param_groups``).

    Args:
        groups: parameter groups carrying ``layer``.
        layers: the map, for readable block names.

    Returns:
        Rows with ``depth``, ``block``, ``num_params``, ``num_params_no_decay``, ``lr`` and ``weight_decay``
        (the decay of the depth's decayed parameters), ordered by depth. ``lr`` is the base rate: a group's
        ``initial_lr`` once a scheduler has run (its ``lr`` moves with the schedule), else its ``lr``.
    """
    rows: dict[int, dict[str, Any]] = {}
    for group in groups:
        if "layer" not in group:
            continue
        depth = int(group["layer"])
        row = rows.setdefault(
            depth,
            {
                "depth": depth,
                "block": layers.block_name(depth) if layers is not None else _default_block_name(depth, group),
                "num_params": 0,
                "num_params_no_decay": 0,
                "lr": group.get("initial_lr", group["lr"]),
                "weight_decay": 0.0,
            },
        )
        count = sum(_full_size(param) for param in group["params"])
        row["num_params"] += count
        if group["weight_decay"] == 0:
            row["num_params_no_decay"] += count
        else:
            row["weight_decay"] = group["weight_decay"]
    return [rows[depth] for depth in sorted(rows)]


def _full_size(param) -> int:
    # DeepSpeed ZeRO-3 leaves an empty placeholder and keeps the real size in ds_numel.
    return getattr(param, "ds_numel", None) or param.numel()


def _default_block_name(depth: int, group: dict[str, Any]) -> str:
    if depth == 0:
        return "embeddings"
    names = group.get("param_names") or []
    return names[0].rsplit(".", 2)[0] if names else f"layer {depth}"


def format_lr_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`lr_table` as a plain-text table."""
    header = f"{'depth':>5}  {'block':<44} {'params':>12} {'no-decay':>10} {'lr':>11} {'weight_decay':>12}"
    lines = [header, "-" * len(header)]
    for row in rows:
        block = row["block"] if len(row["block"]) <= 44 else "..." + row["block"][-41:]
        lines.append(
            f"{row['depth']:>5}  {block:<44} {row['num_params']:>12,} {row['num_params_no_decay']:>10,} "
            f"{row['lr']:>11.3e} {row['weight_decay']:>12g}"
        )
    return "\n".join(lines)

"""Optimizer parameter groups with layer-wise learning rates.

The rate at depth d of a model with L blocks is ``lr * layer_decay ** (L + 1 - d)`` (the BEiT / MAE /
timm convention; see :class:`finetune_llrd.groups.rates.LayerwiseRates`): the head (depth L+1) gets ``lr``, the
top block ``lr * layer_decay``, the embeddings ``lr * layer_decay ** (L + 1)``. The final rate is written
into each group's ``lr``, so every optimizer and every scheduler that scales each group's initial rate (all
of transformers' schedules) keeps the ratios between depths.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from ..depths import LayerMap, LayerMapping, Towers, layer_map, validate_layer_grouping
from .rates import LayerwiseRates, check_finite_non_negative
from .rules import ParamGroupRule, as_rules, match_rules
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
) -> LayerwiseRates:
    """Checks layer-wise settings, raising a ``ValueError`` that names the field and its allowed range.

    Args:
        learning_rate: the base rate (the head's, unless ``head_learning_rate`` is given).
        layer_decay: the factor between neighbouring depths, in (0, 1].
        head_learning_rate: the head's rate, >= 0, or None.
        embedding_learning_rate: the embeddings' rate, >= 0, or None.
        layer_decay_min_scale: the floor, as a fraction of ``learning_rate``, in [0, 1].
        layer_grouping: ``"block"`` or ``"stage"``.
        learning_rate_name: the name of ``learning_rate`` in the caller's signature, for the message.

    Returns:
        The rate settings as one :class:`LayerwiseRates`.

    Raises:
        ValueError: on the first invalid setting.
    """
    check_finite_non_negative(learning_rate, learning_rate_name)
    rates = LayerwiseRates(
        learning_rate, layer_decay, head_learning_rate, embedding_learning_rate, layer_decay_min_scale
    )
    validate_layer_grouping(layer_grouping)
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
    lr: float | None = None,
    layer_decay: float | None = None,
    weight_decay: float = 0.0,
    head_learning_rate: float | None = None,
    embedding_learning_rate: float | None = None,
    layer_decay_min_scale: float = 0.0,
    layer_grouping: str = "block",
    layer_mapping: LayerMapping | None = None,
    layers: LayerMap | None = None,
    rates: LayerwiseRates | None = None,
    towers: Towers = "auto",
    rules: Sequence[ParamGroupRule | Mapping[str, Any]] | str | None = None,
) -> list[dict[str, Any]]:
    """Builds torch optimizer parameter groups with layer-wise learning rates.

    Every trainable parameter lands in exactly one group, unless a ``freeze`` rule takes it; frozen parameters
    in none; a tied weight once. Parameters with the same depth, weight decay and rule share a group; there are
    no empty groups.

    Args:
        model: the model to fine-tune.
        lr: the head's learning rate and the base of the decay (required unless ``rates`` is given).
        layer_decay: the factor between neighbouring depths, in (0, 1] (required unless ``rates`` is given).
        weight_decay: the decay of weights; biases, norms, tokens and positions get 0.
        head_learning_rate: the head's rate, if not ``lr``.
        embedding_learning_rate: the embeddings' rate, if not ``lr * layer_decay ** (L + 1)``.
        layer_decay_min_scale: no decayed rate falls below ``lr * layer_decay_min_scale``.
        layer_grouping: ``"block"`` or ``"stage"`` (for staged backbones such as Swin or ConvNeXt).
        layer_mapping: your own ``{regex: depth}`` or ``name -> depth``; it wins over the automatic map.
        layers: a :class:`LayerMap` computed before (then ``layer_grouping`` and ``layer_mapping`` are unused).
        rates: the rate settings as one value, instead of ``lr``, ``layer_decay``, ``head_learning_rate``,
            ``embedding_learning_rate`` and ``layer_decay_min_scale``; its ``tower_layer_decay`` gives towers a
            decay of their own (their parameters then get groups of their own, carrying ``tower``).
        towers: which parallel stacks are numbered side by side (see :func:`finetune_llrd.layer_map`); unused
            with ``layers``.
        rules: per-module rules on top of the depths (:class:`~finetune_llrd.groups.rules.ParamGroupRule` or
            dicts such as ``{"pattern": "multi_modal_projector", "lr_scale": 10}``, a JSON array, or the path of a
            JSON or YAML file): the first rule that matches a parameter scales or replaces its depth's rate,
            replaces its weight decay, or freezes it (no group; see :func:`~finetune_llrd.groups.rules.frozen_by_rules`).

    Returns:
        Groups ordered by depth, each a dict with ``params``, ``lr``, ``weight_decay``, ``layer`` (the
        depth) and ``param_names`` (and ``tower`` for a tower with a decay of its own, ``rule`` for the
        parameters of a rule).

    Raises:
        ValueError: for an invalid setting, ``rates`` given together with one of the settings it holds, or a
            ``tower_layer_decay`` naming a tower the model does not have; a
            :class:`~finetune_llrd.groups.rules.ParamGroupRuleError` for a rule that is invalid or matches no
            trainable parameter.
        TypeError: if neither ``rates`` nor ``lr`` and ``layer_decay`` are given.
    """
    if rates is None:
        if lr is None or layer_decay is None:
            raise TypeError("param_groups needs lr and layer_decay, or rates=LayerwiseRates(...).")
        rates = validate_layerwise_settings(
            learning_rate=lr,
            layer_decay=layer_decay,
            head_learning_rate=head_learning_rate,
            embedding_learning_rate=embedding_learning_rate,
            layer_decay_min_scale=layer_decay_min_scale,
            layer_grouping=layer_grouping,
            learning_rate_name="lr",
        )
    else:
        _refuse_settings_beside_rates(
            lr, layer_decay, head_learning_rate, embedding_learning_rate, layer_decay_min_scale
        )
        validate_layer_grouping(layer_grouping)
    check_finite_non_negative(weight_decay, "weight_decay")
    check_parameters_are_not_flattened(model)
    if layers is None:
        layers = layer_map(model, grouping=layer_grouping, mapping=layer_mapping, towers=towers)
    towers = _towers_with_own_decay(rates, layers)
    tower_rates = {tower: rates.depth_rates(layers.num_layers, tower) for tower in (None, *towers)}
    for depth_rates in tower_rates.values():
        _warn_if_not_increasing(depth_rates)
    exempt = no_weight_decay_names(model) if weight_decay > 0 else set()
    rules = as_rules(rules)
    rule_of = match_rules(model.named_parameters(), rules) if rules else {}
    return _group_by_depth_rule_and_decay(model, layers, tower_rates, weight_decay, exempt, rule_of, rules)


def _towers_with_own_decay(rates: LayerwiseRates, layers: LayerMap) -> tuple[str, ...]:
    """With a ``rates.tower_layer_decay`` (checked against the towers of the map), every tower of the map, so
    that each tower's parameters get groups of their own; else none."""
    if not rates.tower_layer_decay:
        return ()
    known = [tower.name for tower in layers.towers]
    unknown = [name for name in rates.tower_layer_decay if name not in known]
    if unknown:
        found = (
            f"its towers are {', '.join(known)}" if known else "it has no towers (its stacks are numbered in series)"
        )
        raise ValueError(
            f"tower_layer_decay names {', '.join(map(repr, unknown))}, but {found}. Name towers from "
            "`finetune-llrd inspect MODEL`, or pass towers= to layer_map (e.g. towers='encoder-decoder')."
        )
    return tuple(known)


def _refuse_settings_beside_rates(
    lr: float | None,
    layer_decay: float | None,
    head_learning_rate: float | None,
    embedding_learning_rate: float | None,
    layer_decay_min_scale: float,
) -> None:
    given = [
        name
        for name, value, default in (
            ("lr", lr, None),
            ("layer_decay", layer_decay, None),
            ("head_learning_rate", head_learning_rate, None),
            ("embedding_learning_rate", embedding_learning_rate, None),
            ("layer_decay_min_scale", layer_decay_min_scale, 0.0),
        )
        if value != default
    ]
    if given:
        raise ValueError(
            f"param_groups got rates and also {', '.join(given)}: rates holds every rate setting; "
            "give either rates or the settings one by one."
        )


def _group_by_depth_rule_and_decay(
    model: nn.Module,
    layers: LayerMap,
    tower_rates: dict[str | None, Sequence[float]],
    weight_decay: float,
    exempt: set[str],
    rule_of: Mapping[str, ParamGroupRule],
    rules: Sequence[ParamGroupRule],
) -> list[dict[str, Any]]:
    """One group per (depth, tower, rule, weight decay), ordered by depth, then tower, then the parameters no rule
    takes before each rule's in the rules' order, the decayed group first.

    ``tower_rates`` holds the rates of every depth under ``None`` (``layer_decay``) and, with a
    ``tower_layer_decay``, under each tower; the towers' parameters then get groups of their own, which carry
    ``tower``. A rule's parameters get groups of their own, which carry ``rule`` (its name).
    """
    rule_position = {id(rule): position for position, rule in enumerate(rules)}
    groups: dict[tuple[int, str, int, float], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        rule = rule_of.get(name)
        if rule is not None and rule.freeze:
            continue
        depth = layers.depths[name]
        tower = layers.tower_of(name) if len(tower_rates) > 1 else None
        tower = tower if tower in tower_rates else None
        decay = 0.0 if name in exempt else weight_decay
        rate = tower_rates[tower][depth]
        if rule is not None:
            rate = rule.rate(rate)
            decay = decay if rule.weight_decay is None else rule.weight_decay
        position = -1 if rule is None else rule_position[id(rule)]
        group = groups.setdefault(
            (depth, tower or "", position, decay),
            {"params": [], "lr": rate, "weight_decay": decay, "layer": depth, "param_names": []},
        )
        if tower is not None:
            group["tower"] = tower
        if rule is not None:
            group["rule"] = rule.name
            if rule.muon is not None:
                group["muon"] = rule.muon
        group["params"].append(param)
        group["param_names"].append(name)
    return [groups[key] for key in sorted(groups, key=lambda key: (key[0], key[1], key[2], -key[3]))]


def _warn_if_not_increasing(rates: Sequence[float]) -> None:
    if any(low > high for low, high in zip(rates, rates[1:])):
        logger.warning(
            "The layer-wise rates fall somewhere as depth rises (%s): head_learning_rate or "
            "embedding_learning_rate overrides the decay against its direction.",
            ", ".join(f"{rate:.3g}" for rate in rates),
        )

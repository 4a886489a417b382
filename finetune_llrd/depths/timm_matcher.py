"""The ``timm_group_matcher`` rule: depths from timm's ``group_matcher(coarse)``, which every timm model defines."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping

from torch import nn

from .modules import clean_parameter_name


# timm marks "join the previous group" with this ordinal suffix (timm.models._manipulate.MATCH_PREV_GROUP).
_TIMM_MATCH_PREV_GROUP = 99999.0

_TimmGroupKey = tuple[float, ...]


def timm_group_depths(model: nn.Module, grouping: str) -> tuple[dict[str, int], int]:
    """Depths from timm's ``group_matcher``, with the semantics of ``timm.models.group_with_matcher``.

    timm puts a model's final norm in the last block's group (``MATCH_PREV_GROUP``); here it goes to the
    head depth, as for every other model. Unmatched parameters (the classifier) form the head.

    Args:
        model: a model with timm's ``group_matcher(coarse)`` (every timm model).
        grouping: ``"block"`` (timm's fine groups) or ``"stage"`` (its coarse groups).

    Returns:
        Parameter name -> depth in ``0..L+1`` for every parameter (frozen included), and L.
    """
    group_key = _timm_group_key_function(model.group_matcher(coarse=grouping == "stage"))
    names = [name for name, _ in model.named_parameters()]
    keys = {name: group_key(clean_parameter_name(name)) for name in names}
    key_depth, num_layers = _depths_of_group_keys({key for key in keys.values() if key is not None})
    depths = {name: num_layers + 1 if keys[name] is None else key_depth[keys[name]] for name in names}
    return depths, num_layers


def _timm_group_key_function(matcher: Callable | Mapping) -> Callable[[str], _TimmGroupKey | None]:
    """``name -> group key`` (a tuple of ordinals, None for no group) for timm's callable or dict matcher."""
    if not isinstance(matcher, Mapping):

        def call_matcher(name: str) -> _TimmGroupKey | None:
            ordinal = matcher(name)
            key = tuple(float(o) for o in ordinal) if isinstance(ordinal, Iterable) else (float(ordinal),)
            return None if math.isinf(key[0]) else key

        return call_matcher

    compiled: list[tuple[re.Pattern[str], tuple[float, ...], tuple[float, ...] | None]] = []
    for ordinal, spec in enumerate(matcher.values()):
        if spec is None:
            continue
        if isinstance(spec, (tuple, list)):
            compiled.extend((re.compile(pattern), (float(ordinal),), suffix) for pattern, suffix in spec)
        else:
            compiled.append((re.compile(spec), (float(ordinal),), None))

    def match_patterns(name: str) -> _TimmGroupKey | None:
        for pattern, prefix, suffix in compiled:
            match = pattern.match(name)
            if match:
                parts = [*prefix, *(float(g) for g in match.groups() if g is not None)]
                if suffix:
                    parts.extend(float(s) for s in suffix)
                return tuple(parts)
        return None

    return match_patterns


def _depths_of_group_keys(keys: set[_TimmGroupKey]) -> tuple[dict[_TimmGroupKey, int], int]:
    """The depth of every group key, and L. Depth 0 is the stem group, 1..L the blocks; a key ending in
    MATCH_PREV_GROUP joins the group before it, except after the last ordinary key (the final norm),
    where it goes to the head."""
    matched = sorted(keys)
    ordinary = [key for key in matched if key[-1] != _TIMM_MATCH_PREV_GROUP]
    last_ordinary = ordinary[-1] if ordinary else None
    key_depth: dict[_TimmGroupKey, int] = {}
    depth = -1
    for key in matched:
        if key[-1] != _TIMM_MATCH_PREV_GROUP or depth < 0:
            depth += 1
        key_depth[key] = depth
    num_layers = max(depth, 0)
    for key in matched:
        if last_ordinary is not None and key > last_ordinary:
            key_depth[key] = num_layers + 1
    return key_depth, num_layers

"""Rules per module on top of the depths: a rate multiple, a rate of its own, a weight decay, or no training at all.

A rule picks parameters by a regex on their name (``re.search``, the name as :func:`~finetune_llrd.layer_map`
reports it) and changes what the depth would give them:

* ``lr_scale``: multiplies the rate of the parameter's depth (a projector at 10x its depth's rate);
* ``lr``: a peak rate of its own instead of the depth's (schedules still scale it);
* ``weight_decay``: replaces the value of its weight-decay class (no decay on ``pos_embed``);
* ``freeze``: no group at all; the trainers set ``requires_grad=False`` on it;
* ``muon``: under the layer-wise Muon (:mod:`finetune_llrd.optimizers`), true sends the parameters to Muon's side,
  false to the AdamW fallback, whatever their shape would choose.

Rules are ordered: the first rule that matches a parameter wins, and parameters no rule matches keep their
depth's rate. This is what axolotl's ``lr_groups``, NeMo Automodel's ``param_group_overrides``, torchtitan's
regex ``param_groups`` and LLaMA-Factory's per-tower rates express, here composed with the depths.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from .._setting_files import read_setting
from .rates import is_finite_number


RULE_KEYS = ("pattern", "name", "lr_scale", "lr", "weight_decay", "freeze", "muon")


class ParamGroupRuleError(ValueError):
    """A rule that cannot be honoured: a bad value, ``lr`` beside ``lr_scale``, or no parameter to act on."""


@dataclass(frozen=True)
class ParamGroupRule:
    """One rule: which parameters (``pattern``) and what changes for them.

    Attributes:
        pattern: a Python regex, searched (``re.search``) in each parameter's name.
        name: how the rule is shown and logged (``lr/<name>/layer_XX``); by default the pattern.
        lr_scale: a factor > 0 on the rate of the parameter's depth.
        lr: a peak rate >= 0 instead of the depth's; the schedule still scales it.
        weight_decay: the weight decay >= 0 of the matched parameters, whatever their decay class.
        freeze: the matched parameters get no group, and the trainers set ``requires_grad=False`` on them.
        muon: under the layer-wise Muon, True puts the matched parameters on Muon's side and False on the AdamW
            fallback (None: their shape and place decide); other optimizers refuse a rule that sets it.

    Raises:
        ParamGroupRuleError: naming the rule, for an invalid regex, a bad value, ``lr`` together with
            ``lr_scale``, ``freeze`` together with a rate or decay, or a rule that changes nothing.
    """

    pattern: str
    name: str | None = None
    lr_scale: float | None = None
    lr: float | None = None
    weight_decay: float | None = None
    freeze: bool = False
    muon: bool | None = None
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.pattern, str) or not self.pattern:
            raise ParamGroupRuleError(
                f"A parameter rule needs a pattern (a regex on parameter names), got {self.pattern!r}."
            )
        if self.name is None:
            object.__setattr__(self, "name", self.pattern)
        elif not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise ParamGroupRuleError(
                f"Parameter rule {self.pattern!r}: name must be a non-empty string without '/' (it becomes the log key "
                f"lr/<name>/...), got {self.name!r}."
            )
        try:
            object.__setattr__(self, "_regex", re.compile(self.pattern))
        except re.error as error:
            raise ParamGroupRuleError(
                f"Parameter rule {self.label}: {self.pattern!r} is not a valid regex: {error}."
            ) from error
        if self.lr_scale is not None and (not is_finite_number(self.lr_scale) or self.lr_scale <= 0):
            raise ParamGroupRuleError(
                f"Parameter rule {self.label}: lr_scale must be a finite number > 0, got {self.lr_scale!r} "
                "(to train nothing, use freeze: true)."
            )
        for key in ("lr", "weight_decay"):
            value = getattr(self, key)
            if value is not None and (not is_finite_number(value) or value < 0):
                raise ParamGroupRuleError(
                    f"Parameter rule {self.label}: {key} must be a finite number >= 0, got {value!r}."
                )
        if not isinstance(self.freeze, bool):
            raise ParamGroupRuleError(
                f"Parameter rule {self.label}: freeze must be true or false, got {self.freeze!r}."
            )
        if self.lr is not None and self.lr_scale is not None:
            raise ParamGroupRuleError(
                f"Parameter rule {self.label} sets both lr ({self.lr}) and lr_scale ({self.lr_scale}): lr replaces the "
                "depth's rate, lr_scale multiplies it. Keep one."
            )
        if self.muon is not None and not isinstance(self.muon, bool):
            raise ParamGroupRuleError(f"Parameter rule {self.label}: muon must be true or false, got {self.muon!r}.")
        changes = [key for key in ("lr_scale", "lr", "weight_decay", "muon") if getattr(self, key) is not None]
        if self.freeze and changes:
            raise ParamGroupRuleError(
                f"Parameter rule {self.label} freezes its parameters and also sets {', '.join(changes)}, which a frozen "
                "parameter never uses. Drop one or the other."
            )
        if not self.freeze and not changes:
            raise ParamGroupRuleError(
                f"Parameter rule {self.label} changes nothing: give it lr_scale, lr, weight_decay, muon or freeze: true."
            )

    @property
    def label(self) -> str:
        """The rule as messages name it: its name, with its pattern when they differ."""
        return repr(self.name) if self.name == self.pattern else f"{self.name!r} ({self.pattern!r})"

    def matches(self, name: str, param: nn.Parameter) -> bool:
        """Whether the rule applies to the parameter ``name``: its pattern is searched in the name. ``param`` is
        for rules that read the parameter too (:class:`~finetune_llrd.groups.loraplus.LoraPlusRule` reads its
        shape)."""
        return self._regex.search(name) is not None

    @property
    def must_match(self) -> bool:
        """Whether a rule that matches no trainable parameter is refused (every rule a user gives is)."""
        return True

    def rate(self, depth_rate: float) -> float:
        """The peak rate of a matched parameter whose depth has ``depth_rate``."""
        if self.lr is not None:
            return self.lr
        if self.lr_scale is not None:
            return depth_rate * self.lr_scale
        return depth_rate

    def as_dict(self) -> dict[str, Any]:
        """The rule as the JSON object that builds it again, without unset keys."""
        values = {key: getattr(self, key) for key in RULE_KEYS}
        if values["name"] == values["pattern"]:
            del values["name"]
        if not values["freeze"]:
            del values["freeze"]
        return {key: value for key, value in values.items() if value is not None}


def parse_param_group_rules(value: Any) -> list[dict[str, Any]] | None:
    """Reads ``param_group_rules``: a list of rules (dicts or :class:`ParamGroupRule`), a JSON array, or the path of a
    JSON or YAML file holding one (or an object with a ``param_group_rules`` key).

    Args:
        value: the setting's value, or None.

    Returns:
        The rules as plain dicts (checked, so that they build), or None for no rules. Plain data keeps the training
        arguments serializable (``to_json_string``, ``training_args.bin``).

    Raises:
        ParamGroupRuleError: naming the rule and the fix.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = read_setting(value, "param_group_rules", "a JSON array of rules", ParamGroupRuleError)
    if isinstance(value, Mapping) and "param_group_rules" in value:
        value = value["param_group_rules"]
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) or isinstance(value, Mapping):
        raise ParamGroupRuleError(
            "param_group_rules must be a list of rules such as "
            '[{"pattern": "multi_modal_projector", "lr_scale": 10}, {"pattern": "pos_embed", "weight_decay": 0}], '
            f"got {type(value).__name__}."
        )
    rules = [build_rule(rule, position) for position, rule in enumerate(value)]
    names = [rule.name for rule in rules]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ParamGroupRuleError(
            f"param_group_rules name {repeated} more than once: each rule needs its own name (its log key)."
        )
    return [rule.as_dict() for rule in rules] or None


def build_rule(rule: ParamGroupRule | Mapping[str, Any], position: int = 0) -> ParamGroupRule:
    """A :class:`ParamGroupRule` from a rule or a dict with the keys of :data:`RULE_KEYS`.

    Raises:
        ParamGroupRuleError: for another type, a missing pattern or an unknown key, naming the rule's position.
    """
    if isinstance(rule, ParamGroupRule):
        return rule
    if not isinstance(rule, Mapping):
        raise ParamGroupRuleError(f"param_group_rules[{position}] must be an object with a pattern, got {rule!r}.")
    unknown = sorted(set(rule) - set(RULE_KEYS))
    if unknown:
        raise ParamGroupRuleError(
            f"param_group_rules[{position}] ({rule.get('name') or rule.get('pattern')!r}) has unknown keys {unknown}; "
            f"a rule takes {list(RULE_KEYS)}."
        )
    if "pattern" not in rule:
        raise ParamGroupRuleError(
            f"param_group_rules[{position}] has no pattern (a regex on parameter names): {dict(rule)}."
        )
    return ParamGroupRule(**rule)


def as_rules(rules: Sequence[ParamGroupRule | Mapping[str, Any]] | str | None) -> tuple[ParamGroupRule, ...]:
    """Rules as :class:`ParamGroupRule` objects, from any form :func:`parse_param_group_rules` reads, or from
    rule objects (kept as they are)."""
    if rules is None:
        return ()
    if isinstance(rules, str):
        rules = parse_param_group_rules(rules) or []
    return tuple(build_rule(rule, position) for position, rule in enumerate(rules))


def match_rules(
    named_parameters: Iterable[tuple[str, nn.Parameter]], rules: Sequence[ParamGroupRule]
) -> dict[str, ParamGroupRule]:
    """The rule of every parameter that one matches (the first matching rule wins).

    Args:
        named_parameters: ``model.named_parameters()``, trainable and frozen alike.
        rules: the rules, in order.

    Returns:
        Parameter name -> its rule, for the parameters some rule matches.

    Raises:
        ParamGroupRuleError: for a rule that matches no trainable parameter (a freeze rule: no parameter at all),
            naming it and saying what became of the parameters its pattern matches: frozen before the rules
            (``requires_grad=False``, by the model or by your code), frozen by an earlier ``freeze`` rule, or
            taken by an earlier rule; with a few of their names (or, when it matches none, a few names to match).
    """
    matched: dict[str, ParamGroupRule] = {}
    winners: dict[str, int] = {}
    acted_on = [False] * len(rules)
    entries = []
    for name, param in named_parameters:
        entries.append((name, param))
        index = next((index for index, rule in enumerate(rules) if rule.matches(name, param)), None)
        if index is None:
            continue
        matched[name], winners[name] = rules[index], index
        if param.requires_grad or rules[index].freeze:
            acted_on[index] = True
    idle = [index for index, (rule, acted) in enumerate(zip(rules, acted_on)) if rule.must_match and not acted]
    if idle:
        raise ParamGroupRuleError(_idle_rule_message(rules, idle[0], entries, winners))
    return matched


def _idle_rule_message(
    rules: Sequence[ParamGroupRule], index: int, entries: list[tuple[str, nn.Parameter]], winners: dict[str, int]
) -> str:
    """Why rule ``index`` acts on no parameter: what happened to each parameter its pattern matches."""
    rule = rules[index]
    own = [(name, param) for name, param in entries if rule.matches(name, param)]
    if not own:
        names = [name for name, _ in entries]
        examples = ", ".join(names[:3] + ["..."] + names[-2:]) if len(names) > 5 else ", ".join(names)
        return (
            f"Parameter rule {rule.label} matches no trainable parameter (its pattern matches no parameter name) and "
            f'would be dropped in silence. Parameter names look like: {examples}. See them all with `finetune-llrd inspect MODEL --json` (its "parameters").'
        )
    frozen_before, frozen_by, taken_by = [], {}, {}
    for name, param in own:
        winner = winners[name]
        if winner != index and rules[winner].freeze:
            frozen_by.setdefault(winner, []).append(name)
        elif not param.requires_grad:
            frozen_before.append(name)
        else:
            taken_by.setdefault(winner, []).append(name)
    parts, fixes = [], []
    if frozen_before:
        parts.append(
            f"{_count(frozen_before)} frozen before the rules apply (requires_grad=False: by the model, as HF's "
            f"DETR freezes its ResNet backbone, or by your code), e.g. {_examples(frozen_before)}"
        )
        fixes.append("unfreeze them (requires_grad_(True)) before training to train them")
    for winner, names in frozen_by.items():
        parts.append(
            f"{_count(names)} frozen by the earlier freeze rule {rules[winner].label}, e.g. {_examples(names)}"
        )
    for winner, names in taken_by.items():
        parts.append(
            f"{_count(names)} taken by the earlier rule {rules[winner].label} (the first rule that matches wins), "
            f"e.g. {_examples(names)}"
        )
    if frozen_by or taken_by:
        fixes.append("put the rule before the ones that take its parameters, or narrow their patterns")
    fix = " or ".join(fixes)
    return (
        f"Parameter rule {rule.label} matches no trainable parameter and would be dropped in silence: its pattern "
        f"matches {_count(own)}, {'; '.join(parts)}. {fix[0].upper() + fix[1:]}, or drop the rule. See every "
        'parameter with `finetune-llrd inspect MODEL --json` (its "parameters").'
    )


def _count(names: list) -> str:
    return f"{len(names)} parameter{'s' if len(names) != 1 else ''}"


def _examples(names: list[str]) -> str:
    return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def frozen_by_rules(model: nn.Module, rules: Sequence[ParamGroupRule | Mapping[str, Any]] | None) -> list[str]:
    """The trainable parameters of ``model`` that a ``freeze`` rule takes (the trainers set ``requires_grad=False``
    on them before building the optimizer)."""
    rules = as_rules(rules)
    if not any(rule.freeze for rule in rules):
        return []
    params = dict(model.named_parameters())
    return [
        name for name, rule in match_rules(params.items(), rules).items() if rule.freeze and params[name].requires_grad
    ]

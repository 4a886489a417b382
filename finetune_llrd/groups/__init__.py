"""Depths in, optimizer groups out: the rate of every depth, the weight-decay class of every parameter, and the
parameter groups that put them together.

Imports torch alone: nothing here loads transformers' Trainer, accelerate or datasets.

* :mod:`.rates`: :class:`LayerwiseRates`, the rate settings as one value, and the rate of each depth;
* :mod:`.weight_decay`: which parameters get no weight decay;
* :mod:`.rules`: :class:`ParamGroupRule`, rates and weight decay per module on top of the depths;
* :mod:`.loraplus`: LoRA+ as two such rules;
* :mod:`.parameter_groups`: :func:`param_groups`, one group per depth, rule and weight-decay class;
* :mod:`.rate_table`: the per-depth table of a list of groups, and the current rate of every depth.
"""

from .loraplus import LoraPlusRule, loraplus_rules
from .parameter_groups import check_parameters_are_not_flattened, param_groups, validate_layerwise_settings
from .rate_table import depth_learning_rate_logs, format_lr_table, lr_table
from .rates import LayerwiseRates, check_finite_non_negative, depth_learning_rates, parse_tower_layer_decay
from .rules import ParamGroupRule, ParamGroupRuleError, frozen_by_rules, parse_param_group_rules
from .weight_decay import no_weight_decay_names


__all__ = [
    "LayerwiseRates",
    "LoraPlusRule",
    "ParamGroupRule",
    "ParamGroupRuleError",
    "check_finite_non_negative",
    "check_parameters_are_not_flattened",
    "depth_learning_rate_logs",
    "depth_learning_rates",
    "format_lr_table",
    "frozen_by_rules",
    "loraplus_rules",
    "lr_table",
    "no_weight_decay_names",
    "param_groups",
    "parse_param_group_rules",
    "parse_tower_layer_decay",
    "validate_layerwise_settings",
]

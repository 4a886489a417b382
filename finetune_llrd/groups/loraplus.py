"""LoRA+ (Hayou, Ghosh & Yu, 2024, "LoRA+: Efficient Low Rank Adaptation of Large Models") as two parameter rules,
so that it composes with the depths: each LoRA B matrix trains at ``loraplus_lr_ratio`` times its block's rate.

The parameters are split as peft's ``create_loraplus_optimizer`` splits them (peft 0.13 to 0.21): the
parameters of a LoRA embedding layer train at ``loraplus_lr_embedding`` (default 1e-6); the B matrices
(``lora_B``) and every other 1-D trainable parameter at the ratio times the rate; everything else (the A
matrices, a trained head) at the rate. With ``layer_decay=1.0`` every parameter's rate is
``create_loraplus_optimizer``'s (``tests/test_rules.py`` checks it against peft itself). Weight decay keeps
the decay classes of :func:`~finetune_llrd.groups.param_groups` (peft gives every group but the 1-D B
parameters ``loraplus_weight_decay``, default 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from ..import_utils import comes_from
from .rules import ParamGroupRule, ParamGroupRuleError


# What peft's create_loraplus_optimizer gives the parameters of LoRA embedding layers unless told otherwise.
PEFT_LORAPLUS_LR_EMBEDDING = 1e-6
LORAPLUS_B = "loraplus_B"
LORAPLUS_EMBEDDING = "loraplus_embedding"


@dataclass(frozen=True)
class LoraPlusRule(ParamGroupRule):
    """One of the two LoRA+ rules; its parameters are chosen as peft chooses them, not by ``pattern`` alone.

    Attributes:
        embedding_layers: the module paths of the model's LoRA embedding layers (the ``embedding`` rule's own).
        required: whether the rule is refused when it matches no trainable parameter (the embedding rule is only
            when ``loraplus_lr_embedding`` was given).
    """

    embedding_layers: frozenset[str] = frozenset()
    required: bool = True

    def matches(self, name: str, param: nn.Parameter) -> bool:
        in_embedding_layer = name.rsplit(".", 2)[0] in self.embedding_layers if name.count(".") >= 2 else False
        if self.name == LORAPLUS_EMBEDDING:
            return in_embedding_layer
        return not in_embedding_layer and ("lora_B" in name or param.ndim == 1)

    @property
    def must_match(self) -> bool:
        return self.required

    @property
    def label(self) -> str:
        if self.name == LORAPLUS_EMBEDDING:
            return "loraplus_lr_embedding (LoRA+: the parameters of LoRA embedding layers)"
        return "loraplus_lr_ratio (LoRA+: the LoRA B matrices and other 1-D parameters; is the model a LoRA model?)"


def lora_embedding_layers(model: nn.Module) -> frozenset[str]:
    """The paths of peft's LoRA ``Embedding`` layers in ``model`` (told by class, without importing peft)."""
    return frozenset(
        path
        for path, module in model.named_modules()
        if type(module).__name__ == "Embedding" and comes_from(type(module), "peft.tuners.lora")
    )


def loraplus_rules(
    model: nn.Module, loraplus_lr_ratio: float, loraplus_lr_embedding: float | None = None
) -> tuple[LoraPlusRule, LoraPlusRule]:
    """The LoRA+ rules of ``model``: its LoRA embedding parameters at ``loraplus_lr_embedding``, then the B matrices
    (and other 1-D parameters) at ``loraplus_lr_ratio`` times their depth's rate.

    Args:
        model: the model with LoRA adapters (a ``PeftModel`` or a model with adapters injected).
        loraplus_lr_ratio: the ratio of the B matrices' rate to the A matrices' (ηB / ηA), > 0; the LoRA+ paper
            suggests 16 for decoders.
        loraplus_lr_embedding: the rate of LoRA embedding layers; None for peft's default (1e-6).

    Returns:
        The two rules, in the order they are tried.

    Raises:
        ParamGroupRuleError: for a ratio or embedding rate outside its range, or a model without LoRA B matrices.
    """
    check_loraplus_settings(loraplus_lr_ratio, loraplus_lr_embedding)
    if not any("lora_B" in name and param.requires_grad for name, param in model.named_parameters()):
        raise ParamGroupRuleError(
            f"loraplus_lr_ratio is set but {type(model).__name__} has no trainable LoRA B matrix (lora_B): LoRA+ "
            "sets the rates of LoRA adapters. Add adapters (peft's get_peft_model, or --use_peft in the SFT "
            "recipe), or leave loraplus_lr_ratio out."
        )
    layers = lora_embedding_layers(model)
    embedding = LoraPlusRule(
        pattern="lora_embedding",
        name=LORAPLUS_EMBEDDING,
        lr=PEFT_LORAPLUS_LR_EMBEDDING if loraplus_lr_embedding is None else loraplus_lr_embedding,
        embedding_layers=layers,
        required=loraplus_lr_embedding is not None,
    )
    b_matrices = LoraPlusRule(
        pattern="lora_B", name=LORAPLUS_B, lr_scale=loraplus_lr_ratio, embedding_layers=layers, required=True
    )
    return embedding, b_matrices


def check_loraplus_settings(loraplus_lr_ratio: float | None, loraplus_lr_embedding: float | None) -> None:
    """Checks the two LoRA+ settings.

    Raises:
        ParamGroupRuleError: for a ratio <= 0 or not finite, an embedding rate < 0, or an embedding rate without a
            ratio (LoRA+ is off then, and the embedding rate would be dropped in silence).
    """
    if loraplus_lr_ratio is not None and (not _is_finite(loraplus_lr_ratio) or loraplus_lr_ratio <= 0):
        raise ParamGroupRuleError(
            f"loraplus_lr_ratio must be a finite number > 0 (LoRA+ suggests 16), got {loraplus_lr_ratio!r}."
        )
    if loraplus_lr_embedding is not None:
        if not _is_finite(loraplus_lr_embedding) or loraplus_lr_embedding < 0:
            raise ParamGroupRuleError(
                f"loraplus_lr_embedding must be a finite number >= 0, got {loraplus_lr_embedding!r}."
            )
        if loraplus_lr_ratio is None:
            raise ParamGroupRuleError(
                "loraplus_lr_embedding is set but loraplus_lr_ratio is not: LoRA+ is off, so the embedding rate would "
                "be dropped. Set loraplus_lr_ratio (e.g. 16) too, or leave loraplus_lr_embedding out."
            )


def _is_finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

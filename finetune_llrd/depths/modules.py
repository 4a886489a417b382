"""What a module or a parameter name is, as both the depth maps and the weight-decay classes need to know:
the name a parameter has in the unwrapped model, and whether a module is a normalization layer."""

from __future__ import annotations

import re

from torch import nn


# Prefixes that wrappers add to parameter names (FSDP1, activation checkpointing, torch.compile, DDP).
_WRAPPER_NAME_PARTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")

_NORM_CLASS_NAME = re.compile(r"norm(?:\d+d)?$|layernorm|rmsnorm|batchnorm|groupnorm|instancenorm", re.IGNORECASE)


def clean_parameter_name(name: str) -> str:
    """Removes the name parts that FSDP1, activation checkpointing and ``torch.compile`` insert.

    Args:
        name: a parameter name as the wrapped model reports it.

    Returns:
        The name as the unwrapped model reports it.
    """
    for part in _WRAPPER_NAME_PARTS:
        name = name.replace(part, "")
    return name


def is_norm_module(module: nn.Module) -> bool:
    """Whether a module is a normalization layer, judged by its class (and its base classes).

    Covers torch's norms and every ``*Norm`` class of transformers and timm (``LlamaRMSNorm``,
    ``T5LayerNorm``, ``ConvNextLayerNorm``, ``Qwen3NextRMSNormGated``, ...).

    Args:
        module: any module.

    Returns:
        True for a normalization layer.
    """
    if isinstance(
        module,
        (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase),
    ):
        return True
    return any(_NORM_CLASS_NAME.search(cls.__name__) for cls in type(module).__mro__ if cls is not nn.Module)

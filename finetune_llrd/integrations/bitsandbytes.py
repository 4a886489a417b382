"""What layer-wise groups need from bitsandbytes' 8-bit optimizers (imported only when one is used)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .registry import register_integration


def keep_embeddings_in_32_bit(model: nn.Module) -> None:
    """As the stock Trainer does for 8-bit bitsandbytes optimizers: the embeddings keep 32-bit optimizer state.

    Args:
        model: the model whose ``nn.Embedding`` weights are registered with bitsandbytes' override manager.
    """
    import bitsandbytes

    manager = bitsandbytes.optim.GlobalOptimManager.get_instance()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            manager.register_module_override(module, "weight", {"optim_bits": 32})


def _prepare_optimizer(model: nn.Module, optimizer_cls: Any, optimizer_kwargs: dict[str, Any]) -> None:
    if optimizer_kwargs.get("optim_bits") == 8:
        keep_embeddings_in_32_bit(model)


register_integration("bitsandbytes", matches="bitsandbytes", prepare_optimizer=_prepare_optimizer)

"""Re-initialising the top blocks before fine-tuning (Zhang et al., 2021, "Revisiting Few-sample BERT
Fine-tuning": re-initialising the pooler and the top layers helps small-data fine-tuning)."""

from __future__ import annotations

from torch import nn

from .depths import LayerMap, layer_map


def reinit_top_layers(model: nn.Module, num_blocks: int, *, layers: LayerMap | None = None) -> list[str]:
    """Re-initialises the top ``num_blocks`` blocks and the head depth with the model's own initialisation.

    The head depth holds the pooler, the final norm and the classifier. A transformers model uses its
    ``_init_weights`` (the same code ``from_config`` uses); any other model uses each module's
    ``reset_parameters()``. Lower blocks and the embeddings are not touched.

    Args:
        model: the model.
        num_blocks: k, the number of blocks from the top; 0 does nothing.
        layers: the model's block-wise map (computed if not given).

    Returns:
        The paths of the re-initialised modules.

    Raises:
        ValueError: if ``num_blocks`` is negative or larger than the number of blocks.
    """
    if layers is None:
        layers = layer_map(model, include_frozen=True)
    if num_blocks < 0 or num_blocks > layers.num_layers:
        raise ValueError(
            f"reinit_top_layers must be in [0, {layers.num_layers}] for {type(model).__name__} "
            f"({layers.num_layers} blocks), got {num_blocks}."
        )
    if num_blocks == 0:
        return []
    lowest = layers.num_layers + 1 - num_blocks
    targets = {name.rsplit(".", 1)[0] for name, depth in layers.depths.items() if depth >= lowest}
    owner = _transformers_model(model)
    modules = dict(model.named_modules())
    reinitialized = []
    for path, module in modules.items():
        if path not in targets and not any(path.startswith(target + ".") for target in targets):
            continue
        if not _owns_parameters(module):
            continue
        _reinit_module(module, owner)
        reinitialized.append(path)
    return reinitialized


def _transformers_model(model: nn.Module) -> nn.Module | None:
    for module in model.modules():
        if callable(getattr(module, "_init_weights", None)) and hasattr(module, "config"):
            return module
    return None


def _owns_parameters(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _reinit_module(module: nn.Module, owner: nn.Module | None) -> None:
    if owner is not None:
        # transformers >= 5 skips tensors flagged as loaded from a checkpoint; lift the flag for this call.
        flagged = [t for t in (*module.parameters(recurse=False), module) if getattr(t, "_is_hf_initialized", False)]
        for tensor in flagged:
            tensor._is_hf_initialized = False
        try:
            owner._init_weights(module)
        finally:
            for tensor in flagged:
                tensor._is_hf_initialized = True
    elif callable(getattr(module, "reset_parameters", None)):
        module.reset_parameters()

"""Parameter names as the unwrapped model reports them."""

from __future__ import annotations

# Prefixes that wrappers add to parameter names (FSDP1, activation checkpointing, torch.compile, DDP).
_WRAPPER_NAME_PARTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


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

"""Which optional libraries are installed, and whether a class comes from one of them: answered here alone.

Each library is looked up once (``importlib.util.find_spec``, which imports nothing), so asking costs nothing
after the first time; :func:`comes_from` tells a library's classes by the root of their module path, without
importing the library. As peft's ``import_utils``, this module imports nothing of the package.
"""

from __future__ import annotations

import functools
import importlib.util
import types
from typing import Any


__all__ = [
    "comes_from",
    "is_available",
    "is_bitsandbytes_available",
    "is_deepspeed_available",
    "is_peft_available",
    "is_sentence_transformers_available",
    "is_timm_available",
    "is_trl_available",
]


@functools.cache
def is_available(library: str) -> bool:
    """Whether ``library`` (an importable top-level name such as ``"trl"``) is installed; it is not imported."""
    return importlib.util.find_spec(library) is not None


def is_bitsandbytes_available() -> bool:
    return is_available("bitsandbytes")


def is_deepspeed_available() -> bool:
    return is_available("deepspeed")


def is_peft_available() -> bool:
    return is_available("peft")


def is_sentence_transformers_available() -> bool:
    return is_available("sentence_transformers")


def is_timm_available() -> bool:
    return is_available("timm")


def is_trl_available() -> bool:
    return is_available("trl")


def comes_from(obj: Any, library: str) -> bool:
    """Whether a class, an instance or a function comes from ``library``: its module path starts with it.

    For a class (or an instance's class) every class of its MRO counts, so a user's subclass of a library's
    trainer comes from the library too; a ``functools.partial`` is judged by the function it wraps.

    Args:
        obj: a class, an instance, a function or a ``functools.partial``.
        library: a top-level module name (``"bitsandbytes"``) or a dotted prefix (``"peft.tuners.lora"``).

    Returns:
        True when ``obj`` or one of its bases is defined in ``library`` or below it.
    """
    while isinstance(obj, functools.partial):
        obj = obj.func
    if isinstance(obj, type):
        candidates = obj.__mro__
    elif isinstance(obj, types.FunctionType | types.BuiltinFunctionType | types.MethodType):
        candidates = (obj,)
    else:
        candidates = type(obj).__mro__
    return any(_in_library(getattr(candidate, "__module__", None), library) for candidate in candidates)


def _in_library(module: str | None, library: str) -> bool:
    return isinstance(module, str) and (module == library or module.startswith(library + "."))

"""Import paths of 0.1.0 that moved in 0.2.0: they keep working, with a ``DeprecationWarning`` naming the new path.

0.1.0 kept every module in one flat folder; 0.2.0 groups them by layer (``depths/``, ``groups/``,
``integrations/``, ``search/``). A module that moved is served at its old path by :class:`MovedModuleFinder`
as a light module that imports nothing until a name is read from it, then warns and hands over the name from
its new home. A name that moved out of a module that stayed is served by that module's ``__getattr__``
(:func:`moved_names`). timm keeps ``timm.optim.optim_factory`` the same way.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any


# Old module path -> the modules that hold its names now, searched in order (the public one first).
MOVED_MODULES: dict[str, tuple[str, ...]] = {
    "finetune_llrd.parameter_names": ("finetune_llrd.depths",),
    "finetune_llrd.block_stacks": ("finetune_llrd.depths", "finetune_llrd.depths.block_stacks"),
    "finetune_llrd.backbones": ("finetune_llrd.depths.backbones",),
    "finetune_llrd.towers": ("finetune_llrd.depths", "finetune_llrd.depths.towers"),
    "finetune_llrd.layer_map": ("finetune_llrd.depths", "finetune_llrd.depths.layer_maps"),
    "finetune_llrd.weight_decay": ("finetune_llrd.groups", "finetune_llrd.depths"),
    "finetune_llrd.rates": ("finetune_llrd.groups",),
    "finetune_llrd.param_groups": ("finetune_llrd.groups", "finetune_llrd.depths"),
    "finetune_llrd.rate_table": ("finetune_llrd.groups",),
    "finetune_llrd.deepspeed_checks": ("finetune_llrd.integrations.deepspeed",),
    # 0.2.0's development names, renamed to say which does what.
    "finetune_llrd.search.runner": ("finetune_llrd.search.trials",),
    "finetune_llrd.search.searcher": ("finetune_llrd.search.tuning",),
}


def _iter_depth_names(layers: Any) -> Any:
    for depth in range(layers.num_layers + 2):
        yield depth, layers.block_name(depth)


# Names of 0.1.0 that are gone (no caller left): old module -> name -> (0.1.0's behaviour, what to use instead).
REMOVED_NAMES: dict[str, dict[str, tuple[Any, str]]] = {
    "finetune_llrd.layer_map": {
        "iter_depth_names": (
            _iter_depth_names,
            "iterate over range(layers.num_layers + 2) with layers.block_name(depth)",
        ),
    },
}


class MovedModule(types.ModuleType):
    """A module at an old path: reading a name from it imports the new modules, warns, and returns the name."""

    def __init__(self, name: str, new_homes: Sequence[str]):
        super().__init__(name, f"Moved: import from {new_homes[0]} instead.")
        self._new_homes = tuple(new_homes)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in REMOVED_NAMES.get(self.__name__, {}):
            value, instead = REMOVED_NAMES[self.__name__][name]
            warnings.warn(
                f"{self.__name__}.{name} was removed in finetune_llrd 0.2.0: {instead}.",
                DeprecationWarning,
                stacklevel=2,
            )
            return value
        for home in self._new_homes:
            module = importlib.import_module(home)
            if hasattr(module, name):
                warnings.warn(
                    f"{self.__name__} moved in finetune_llrd 0.2.0: import {name} from {home} instead.",
                    DeprecationWarning,
                    stacklevel=2,
                )
                return getattr(module, name)
        raise AttributeError(f"module {self.__name__!r} (moved to {self._new_homes[0]}) has no attribute {name!r}")

    def __dir__(self) -> list[str]:
        return sorted({name for home in self._new_homes for name in dir(importlib.import_module(home))})


class MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves the old paths of :data:`MOVED_MODULES` as :class:`MovedModule` objects."""

    def __init__(self, moved: Mapping[str, Sequence[str]]):
        self.moved = moved

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.moved:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return MovedModule(spec.name, self.moved[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        """Nothing to run: the names are read from the new modules on demand."""


def install_moved_module_finder() -> None:
    """Puts the finder of the old module paths on ``sys.meta_path`` once."""
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        # First: an old file left behind by an upgrade in place must not shadow the new modules.
        sys.meta_path.insert(0, MovedModuleFinder(MOVED_MODULES))


def moved_names(module_name: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves the names that left ``module_name`` from their new modules, with a warning.

    Args:
        module_name: the module the names were in (its ``__name__``).
        moved: name -> the module that holds it now.

    Returns:
        The ``__getattr__`` to assign at the module's level.
    """

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        warnings.warn(
            f"{module_name}.{name} moved in finetune_llrd 0.2.0: import it from {moved[name]} instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(moved[name]), name)

    return __getattr__


def renamed_names(module_name: str, renamed: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves the old names of renamed objects of ``module_name``, with a warning.

    Args:
        module_name: the module that holds the objects under their new names (its ``__name__``).
        renamed: old name -> new name.

    Returns:
        The ``__getattr__`` to assign at the module's level.
    """

    def __getattr__(name: str) -> Any:
        if name not in renamed:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        warnings.warn(
            f"{module_name}.{name} was renamed in finetune_llrd 0.2.0: use {module_name}.{renamed[name]} instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(sys.modules[module_name], renamed[name])

    return __getattr__

"""The one extension point for other libraries: an integration says which classes are its library's and what
layer-wise rates need for them. :func:`~finetune_llrd.layerwise_trainer` and the optimizer the trainer builds
ask this registry; the generic mixins know no library by name.

Adding a library is one file in ``integrations/`` that calls :func:`register_integration` (and one import
line in ``integrations/__init__.py`` for a built-in one; a project registers its own anywhere before composing).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..import_utils import comes_from


__all__ = [
    "Integration",
    "all_integrations",
    "integrations_for",
    "prepare_for_optimizer",
    "register_integration",
    "unregister_integration",
]


@dataclass(frozen=True)
class Integration:
    """What layer-wise rates need from one library.

    Attributes:
        name: the integration's name (one registration per name).
        matches: whether a class (a trainer class, an optimizer class) is the library's: a callable, or the
            library's module path (``"trl"``), then :func:`~finetune_llrd.import_utils.comes_from` decides.
        trainer_mixin: put before :class:`~finetune_llrd.trainer.LayerwiseTrainerMixin` among the bases of
            ``layerwise_trainer(cls)`` for the library's trainer classes; it overrides the mixin's hooks
            (``layerwise_module``, ``absorb_optimizer_groups``) and calls ``super()``.
        arguments_class: ``trainer_cls -> the TrainingArguments subclass it takes`` (or None) for a library
            whose trainers take an arguments class of their own: layer-wise arguments of another class given to
            them are copied into the composition of that class.
        prepare_optimizer: ``(model, optimizer_cls, optimizer_kwargs) -> None``, run once the layer-wise
            optimizer has been built from one of the library's optimizer classes (as the stock Trainer does it).
        known_classes: ``(module, qualname)`` of the library's trainer and arguments classes whose composition a
            fresh process makes again when pickle asks for ``finetune_llrd.composition.LLRD<qualname>``.
    """

    name: str
    matches: str | Callable[[type], bool]
    trainer_mixin: type | None = None
    arguments_class: Callable[[type], type | None] | None = None
    prepare_optimizer: Callable[[Any, Any, dict[str, Any]], None] | None = None
    known_classes: tuple[tuple[str, str], ...] = ()

    def owns(self, cls: Any) -> bool:
        """Whether ``cls`` is the library's."""
        if isinstance(self.matches, str):
            return comes_from(cls, self.matches)
        return bool(self.matches(cls))


_INTEGRATIONS: dict[str, Integration] = {}


def register_integration(
    name: str,
    *,
    matches: str | Callable[[type], bool],
    trainer_mixin: type | None = None,
    arguments_class: Callable[[type], type | None] | None = None,
    prepare_optimizer: Callable[[Any, Any, dict[str, Any]], None] | None = None,
    known_classes: tuple[tuple[str, str], ...] = (),
) -> Integration:
    """Registers (or replaces) the integration ``name``; see :class:`Integration` for the arguments.

    A trainer class composed before the registration keeps the bases it was composed with.

    Returns:
        The registered integration.
    """
    integration = Integration(name, matches, trainer_mixin, arguments_class, prepare_optimizer, tuple(known_classes))
    _INTEGRATIONS[name] = integration
    return integration


def unregister_integration(name: str) -> None:
    """Removes the integration ``name`` (for tests and for replacing a built-in one)."""
    _INTEGRATIONS.pop(name, None)


def all_integrations() -> list[Integration]:
    """Every registered integration, in the order they were registered."""
    return list(_INTEGRATIONS.values())


def integrations_for(cls: Any) -> list[Integration]:
    """The registered integrations that own ``cls``, in the order they were registered."""
    return [integration for integration in _INTEGRATIONS.values() if integration.owns(cls)]


def prepare_for_optimizer(model: Any, optimizer_cls: Any, optimizer_kwargs: dict[str, Any]) -> None:
    """Runs the ``prepare_optimizer`` hook of every integration that owns ``optimizer_cls``."""
    for integration in integrations_for(optimizer_cls):
        if integration.prepare_optimizer is not None:
            integration.prepare_optimizer(model, optimizer_cls, optimizer_kwargs)

"""Layer-wise rates for the Trainers people already run: ``layerwise_trainer(Seq2SeqTrainer)``,
``layerwise_arguments(SFTConfig)``, ``layerwise_trainer(SentenceTransformerTrainer)``, ...

This module owns the composition: both factories, the registry of the classes they made, and their pickling.
Each factory returns a subclass named ``LLRD<Name>`` with the layer-wise mixin first among its bases
(:class:`~finetune_llrd.trainer.LayerwiseTrainerMixin`, :class:`~finetune_llrd.arguments.LayerwiseArgumentsMixin`),
and keeps it in this module as ``finetune_llrd.composition.LLRD<Name>``. In a fresh process the classes of the
common libraries (transformers, TRL, sentence-transformers, :data:`_KNOWN_WRAPPED`) are made again on first
access by name, so pickle finds them. Composed arguments pickle as the import path of the class they wrap plus
their field values (:func:`_reduce_arguments`), so that ``torch.save(args)``, every checkpoint's
``training_args.bin`` and spawn-based launchers work, and any process loads them through
:func:`_restore_arguments`, whether or not it has composed the class yet.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
from typing import Any

from transformers import Trainer, TrainingArguments

from .arguments import LayerwiseArgumentsMixin, LLRDTrainingArguments, lr_scheduler_type_field
from .integrations import integrations_for
from .integrations.sentence_transformers import SentenceTransformerTrainerMixin
from .trainer import LayerwiseTrainerMixin, LLRDTrainer


__all__ = [
    "ConvertedArgumentsMixin",
    "LayerwiseArgumentsMixin",
    "LayerwiseSentenceTransformerTrainerMixin",
    "LayerwiseTrainerMixin",
    "layerwise_arguments",
    "layerwise_trainer",
    "with_arguments_the_trainer_takes",
]

logger = logging.getLogger(__name__)

# Wrapped classes whose composition a fresh process makes again when pickle (or an import) asks for it by
# name: "Name" -> candidate (module, qualname) of the wrapped class.
_KNOWN_WRAPPED = {
    "Seq2SeqTrainer": [("transformers", "Seq2SeqTrainer")],
    "Seq2SeqTrainingArguments": [("transformers", "Seq2SeqTrainingArguments")],
    "SFTTrainer": [("trl", "SFTTrainer")],
    "SFTConfig": [("trl", "SFTConfig")],
    "DPOTrainer": [("trl", "DPOTrainer")],
    "DPOConfig": [("trl", "DPOConfig")],
    "SentenceTransformerTrainer": [("sentence_transformers", "SentenceTransformerTrainer")],
    "SentenceTransformerTrainingArguments": [("sentence_transformers", "SentenceTransformerTrainingArguments")],
    "CrossEncoderTrainer": [("sentence_transformers.cross_encoder", "CrossEncoderTrainer")],
    "CrossEncoderTrainingArguments": [("sentence_transformers.cross_encoder", "CrossEncoderTrainingArguments")],
    "SparseEncoderTrainer": [("sentence_transformers.sparse_encoder", "SparseEncoderTrainer")],
    "SparseEncoderTrainingArguments": [("sentence_transformers.sparse_encoder", "SparseEncoderTrainingArguments")],
}

# wrapped trainer class -> its composition; the stock Trainer maps to LLRDTrainer.
_COMPOSED_TRAINERS: dict[type, type] = {Trainer: LLRDTrainer}
# wrapped arguments class -> its composition; TrainingArguments maps to LLRDTrainingArguments.
_COMPOSED_ARGUMENTS: dict[type, type] = {TrainingArguments: LLRDTrainingArguments}


def layerwise_trainer(trainer_cls: type) -> type:
    """A subclass of ``trainer_cls`` with layer-wise learning rates, named ``LLRD<Name>``.

    ``layerwise_trainer(Trainer)`` is :class:`~finetune_llrd.LLRDTrainer`. The subclass takes
    ``trainer_cls``'s arguments plus ``layer_mapping=``, and keeps all of its behaviour but the optimizer's
    groups (see :class:`~finetune_llrd.trainer.LayerwiseTrainerMixin`). For sentence-transformers trainers it
    also takes over the groups they build (their loss modules' parameters at the head's rate,
    ``learning_rate_mapping``), see :mod:`finetune_llrd.integrations.sentence_transformers`. The same class
    comes back for the same ``trainer_cls``.

    Args:
        trainer_cls: ``transformers.Trainer`` or a subclass (``Seq2SeqTrainer``, TRL's ``SFTTrainer`` /
            ``DPOTrainer``, ``SentenceTransformerTrainer``, your own).

    Returns:
        The composed class, also reachable as ``finetune_llrd.composition.LLRD<Name>``.

    Raises:
        TypeError: if ``trainer_cls`` is not a ``Trainer`` subclass.
    """
    if not (isinstance(trainer_cls, type) and issubclass(trainer_cls, Trainer)):
        raise TypeError(f"layerwise_trainer takes a transformers.Trainer subclass, got {trainer_cls!r}.")
    if issubclass(trainer_cls, LayerwiseTrainerMixin):
        return trainer_cls
    if trainer_cls in _COMPOSED_TRAINERS:
        return _COMPOSED_TRAINERS[trainer_cls]
    namespace = {
        "__doc__": f"``{_path(trainer_cls)}`` with layer-wise learning rates (:func:`finetune_llrd.layerwise_trainer`).\n\n"
        f"{LayerwiseTrainerMixin.__doc__}",
    }
    composed = type(f"LLRD{trainer_cls.__name__}", (*_trainer_mixins_for(trainer_cls), trainer_cls), namespace)
    return register_composed(sys.modules[__name__], trainer_cls, composed, _COMPOSED_TRAINERS)


def layerwise_arguments(args_cls: type) -> type:
    """A subclass of ``args_cls`` with the layer-wise fields, named ``LLRD<Name>``.

    ``layerwise_arguments(TrainingArguments)`` is :class:`~finetune_llrd.LLRDTrainingArguments`. The subclass
    adds only the fields of :class:`~finetune_llrd.arguments.LayerwiseArgumentsMixin` (after ``args_cls``'s
    own, so ``HfArgumentParser`` takes ``--layer_decay`` etc.); ``args_cls``'s defaults (``SFTConfig``'s
    ``learning_rate=2e-5``, ``logging_steps=10``, ``gradient_checkpointing=True``, ...), its ``__post_init__``
    checks and ``to_dict()`` stay. ``lr_scheduler_type`` keeps ``args_cls``'s default and also accepts
    ``slanted_triangular``. The same class comes back for the same ``args_cls``.

    Args:
        args_cls: ``transformers.TrainingArguments`` or a subclass (``Seq2SeqTrainingArguments``, TRL's
            ``SFTConfig`` / ``DPOConfig``, ``SentenceTransformerTrainingArguments``, your own).

    Returns:
        The composed dataclass, also reachable as ``finetune_llrd.composition.LLRD<Name>``.

    Raises:
        TypeError: if ``args_cls`` is not a ``TrainingArguments`` subclass.
    """
    if not (isinstance(args_cls, type) and issubclass(args_cls, TrainingArguments)):
        raise TypeError(f"layerwise_arguments takes a transformers.TrainingArguments subclass, got {args_cls!r}.")
    if issubclass(args_cls, LayerwiseArgumentsMixin):
        return args_cls
    if args_cls in _COMPOSED_ARGUMENTS:
        return _COMPOSED_ARGUMENTS[args_cls]
    namespace = {
        "__doc__": f"``{_path(args_cls)}`` with the layer-wise fields (:func:`finetune_llrd.layerwise_arguments`).\n\n"
        f"{LayerwiseArgumentsMixin.__doc__}",
        "__annotations__": {"lr_scheduler_type": str},
        "lr_scheduler_type": lr_scheduler_type_field(args_cls),
        "__reduce__": _reduce_arguments,
    }
    composed = type(f"LLRD{args_cls.__name__}", (LayerwiseArgumentsMixin, args_cls), namespace)
    return register_composed(sys.modules[__name__], args_cls, dataclasses.dataclass(composed), _COMPOSED_ARGUMENTS)


def _reduce_arguments(self) -> tuple:
    """Pickles composed arguments as (the import path of the wrapped class, the field values), so that any
    process can make the class again, whether or not it has composed it yet."""
    wrapped = next(wrapped for wrapped, composed in _COMPOSED_ARGUMENTS.items() if composed is type(self))
    return _restore_arguments, (wrapped.__module__, wrapped.__qualname__), self.__dict__.copy()


def _restore_arguments(module: str, qualname: str) -> Any:
    """An empty instance of ``layerwise_arguments(<module>.<qualname>)``; pickle then sets its state."""
    cls = layerwise_arguments(_import(module, qualname))
    return cls.__new__(cls)


def register_composed(module: Any, wrapped: type, composed: type, registry: dict[type, type]) -> type:
    """Makes ``composed`` an attribute of ``module`` (where pickle looks for it), under its own name when that is
    free, and records it in ``registry`` as the composition of ``wrapped``."""
    name = composed.__name__
    if name in vars(module):
        # Two wrapped classes with one name (your own "Seq2SeqTrainer"): the later one is qualified by its module.
        name = f"{name}__{wrapped.__module__.replace('.', '_')}"
    composed.__module__ = module.__name__
    composed.__qualname__ = name
    setattr(module, name, composed)
    registry[wrapped] = composed
    return composed


def _import(module: str, qualname: str) -> type:
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def _path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _trainer_mixins_for(trainer_cls: type) -> tuple[type, ...]:
    """The bases before ``trainer_cls``: the mixins of the integrations that own it (and the arguments
    conversion where one says which arguments class its trainers take), then the generic mixin."""
    integrations = integrations_for(trainer_cls)
    mixins = [integration.trainer_mixin for integration in integrations if integration.trainer_mixin is not None]
    if any(integration.arguments_class is not None for integration in integrations):
        mixins.insert(0, ConvertedArgumentsMixin)
    return (*mixins, LayerwiseTrainerMixin)


class ConvertedArgumentsMixin:
    """Before the layer-wise mixin of a trainer that takes an arguments class of its own (TRL's): layer-wise
    arguments of another class are copied into the composition of that class
    (:func:`with_arguments_the_trainer_takes`)."""

    def __init__(self, *args, **kwargs):
        args, kwargs = with_arguments_the_trainer_takes(type(self), args, kwargs)
        super().__init__(*args, **kwargs)


class LayerwiseSentenceTransformerTrainerMixin(SentenceTransformerTrainerMixin, LayerwiseTrainerMixin):
    """:class:`~finetune_llrd.trainer.LayerwiseTrainerMixin` for sentence-transformers' trainers in one class, for a
    class statement: ``class MyTrainer(LayerwiseSentenceTransformerTrainerMixin, SentenceTransformerTrainer)``
    (``layerwise_trainer(SentenceTransformerTrainer)`` composes the same bases)."""


def with_arguments_the_trainer_takes(trainer_cls: type, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Layer-wise arguments of another class than the one the wrapped trainer takes (``LLRDTrainingArguments``
    given to TRL's ``SFTTrainer``, which wants an ``SFTConfig``) become that class's layer-wise composition.

    TRL would copy them into its plain config with ``to_dict()`` and fail on the layer-wise fields; this makes
    the same copy into ``layerwise_arguments(SFTConfig)``, so they are kept. Any other arguments pass as given.
    The class a trainer takes comes from its integration's ``arguments_class``
    (:func:`~finetune_llrd.integrations.register_integration`).

    Args:
        trainer_cls: the composed trainer class being built.
        args: its positional arguments (``model, args, ...``).
        kwargs: its keyword arguments.

    Returns:
        The positional and keyword arguments, with the training arguments converted where needed.
    """
    position = 1  # Trainer(model, args, ...)
    given = kwargs.get("args", args[position] if len(args) > position else None)
    expected = _arguments_class_for(trainer_cls)
    if not isinstance(given, LayerwiseArgumentsMixin) or expected is None or isinstance(given, expected):
        return args, kwargs
    composed = layerwise_arguments(expected)
    values = given.to_dict()
    values["hub_token"] = given.hub_token  # to_dict() hides it
    fields = {f.name for f in dataclasses.fields(composed) if f.init}
    converted = composed(**{name: value for name, value in values.items() if name in fields})
    logger.warning(
        "%s takes %s: the %s given were copied into %s (pass layerwise_arguments(%s)(...) to get its defaults).",
        trainer_cls.__name__,
        expected.__name__,
        type(given).__name__,
        composed.__name__,
        expected.__name__,
    )
    if "args" in kwargs:
        return args, {**kwargs, "args": converted}
    return (*args[:position], converted, *args[position + 1 :]), kwargs


def _arguments_class_for(trainer_cls: type) -> type | None:
    """The arguments class that an integration of ``trainer_cls`` says it takes, if any."""
    for integration in integrations_for(trainer_cls):
        if integration.arguments_class is not None:
            expected = integration.arguments_class(trainer_cls)
            if expected is not None:
                return expected
    return None


def __getattr__(name: str) -> type:
    """``finetune_llrd.composition.LLRD<Name>``: a composed arguments class made before, or the composition of a
    class of the common libraries that this process has not composed yet (pickle asks for it so in a fresh
    process)."""
    wrapped_name = name[len("LLRD") :] if name.startswith("LLRD") else None
    for module, qualname in _KNOWN_WRAPPED.get(wrapped_name, []):
        try:
            wrapped = _import(module, qualname)
        except (ImportError, AttributeError):
            continue
        return layerwise_trainer(wrapped) if issubclass(wrapped, Trainer) else layerwise_arguments(wrapped)
    raise AttributeError(
        f"module {__name__!r} has no attribute {name!r}: composed classes exist once layerwise_trainer() or "
        "layerwise_arguments() made them; call it on the wrapped class before loading what refers to it."
    )

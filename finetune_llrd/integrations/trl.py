"""Layer-wise arguments for trainers that take their own arguments class, as TRL's do.

TRL's ``SFTTrainer`` wants an ``SFTConfig`` and copies any other ``TrainingArguments`` into a plain one with
``to_dict()``, which fails on the layer-wise fields. :func:`with_arguments_the_trainer_takes` makes the same
copy into the layer-wise composition of the class the trainer takes, so they are kept. TRL is not imported
here: the class is read from the trainer's ``__init__`` annotation.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import typing

from transformers import TrainingArguments

from ..arguments import LayerwiseArgumentsMixin, layerwise_arguments


logger = logging.getLogger(__name__)


def with_arguments_the_trainer_takes(trainer_cls: type, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Layer-wise arguments of another class than the one the wrapped trainer takes (``LLRDTrainingArguments``
    given to TRL's ``SFTTrainer``, which wants an ``SFTConfig``) become that class's layer-wise composition.

    TRL would copy them into its plain config with ``to_dict()`` and fail on the layer-wise fields; this makes
    the same copy into ``layerwise_arguments(SFTConfig)``, so they are kept. Any other arguments pass as given.

    Args:
        trainer_cls: the composed trainer class being built.
        args: its positional arguments (``model, args, ...``).
        kwargs: its keyword arguments.

    Returns:
        The positional and keyword arguments, with the training arguments converted where needed.
    """
    position = 1  # Trainer(model, args, ...)
    given = kwargs.get("args", args[position] if len(args) > position else None)
    expected = _arguments_class_taken_by(trainer_cls)
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


def _arguments_class_taken_by(trainer_cls: type) -> type | None:
    """The ``TrainingArguments`` subclass that the nearest ``__init__`` of ``trainer_cls`` names for ``args``
    (``SFTConfig`` for ``SFTTrainer``); None where it names ``TrainingArguments`` itself or nothing readable."""
    for cls in trainer_cls.__mro__:
        annotation = getattr(cls.__dict__.get("__init__"), "__annotations__", {}).get("args")
        if annotation is None:
            continue
        if isinstance(annotation, typing.ForwardRef):
            annotation = annotation.__forward_arg__
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, vars(sys.modules[cls.__module__]))  # noqa: S307 - the library's own annotation
            except Exception:  # noqa: BLE001 - a name imported only for type checkers
                return None
        candidates = typing.get_args(annotation) or (annotation,)
        for candidate in candidates:
            if (
                isinstance(candidate, type)
                and issubclass(candidate, TrainingArguments)
                and candidate is not TrainingArguments
            ):
                return candidate
        return None
    return None

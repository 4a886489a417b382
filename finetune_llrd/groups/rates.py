"""The layer-wise rate settings as one value, and the rate of each depth.

The rate at depth d of a model with L blocks is ``learning_rate * layer_decay ** (L + 1 - d)`` (the BEiT /
MAE / timm convention): the head (depth L+1) gets ``learning_rate``, the top block
``learning_rate * layer_decay``, the embeddings ``learning_rate * layer_decay ** (L + 1)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LayerwiseRates:
    """The rate settings of layer-wise learning-rate decay, checked when the value is built.

    ``LLRDTrainingArguments.layerwise_rates``, :func:`finetune_llrd.param_groups` (``rates=``) and
    ``finetune-llrd inspect`` share it.

    Attributes:
        learning_rate: the base rate: the head's, unless ``head_learning_rate`` is given; >= 0.
        layer_decay: the factor between neighbouring depths, in (0, 1]; 1.0 turns the decay off.
        head_learning_rate: the rate of the head, pooler and final norm (depth L+1), >= 0, or None for
            ``learning_rate``. The blocks still decay from ``learning_rate``.
        embedding_learning_rate: the rate of the embeddings or stem (depth 0), >= 0, or None for the decayed rate.
        layer_decay_min_scale: the floor in [0, 1], as a fraction of ``learning_rate``: no decayed rate falls
            below ``learning_rate * layer_decay_min_scale``.
        tower_layer_decay: a decay of its own for some towers of a multi-modal model (open_clip's per-tower
            layer decay), ``{"vision": 0.75, "text": 0.85}``; towers it does not name, and parameters outside
            every tower, decay by ``layer_decay``. Tower names are those of ``LayerMap.towers``.

    Raises:
        ValueError: naming the first invalid setting and its allowed range.
    """

    learning_rate: float
    layer_decay: float = 1.0
    head_learning_rate: float | None = None
    embedding_learning_rate: float | None = None
    layer_decay_min_scale: float = 0.0
    tower_layer_decay: Mapping[str, float] | None = field(default=None, hash=False)

    def __post_init__(self):
        check_finite_non_negative(self.learning_rate, "learning_rate")
        if not is_finite_number(self.layer_decay) or not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(
                "layer_decay must be in (0, 1] (1.0 turns layer-wise decay off; 0.65-0.95 are usual), "
                f"got {self.layer_decay!r}."
            )
        for name in ("head_learning_rate", "embedding_learning_rate"):
            value = getattr(self, name)
            if value is not None and (not is_finite_number(value) or value < 0):
                raise ValueError(f"{name} must be a finite number >= 0 or None, got {value!r}.")
        if not is_finite_number(self.layer_decay_min_scale) or not 0.0 <= self.layer_decay_min_scale <= 1.0:
            raise ValueError(
                "layer_decay_min_scale must be in [0, 1] (a fraction of the learning rate), "
                f"got {self.layer_decay_min_scale!r}."
            )
        if self.tower_layer_decay is not None:
            object.__setattr__(self, "tower_layer_decay", parse_tower_layer_decay(self.tower_layer_decay))

    @classmethod
    def from_attributes(cls, source: object) -> LayerwiseRates:
        """The settings that ``source`` holds as attributes of the same names.

        Args:
            source: an ``LLRDTrainingArguments``, the parsed flags of ``finetune-llrd inspect``, or any object
                with the attributes ``learning_rate``, ``layer_decay``, ``head_learning_rate``,
                ``embedding_learning_rate`` and ``layer_decay_min_scale`` (and optionally ``tower_layer_decay``).

        Returns:
            The checked value.
        """
        names = [setting.name for setting in dataclasses.fields(cls) if setting.name != "tower_layer_decay"]
        return cls(
            **{name: getattr(source, name) for name in names},
            tower_layer_decay=getattr(source, "tower_layer_decay", None),
        )

    @property
    def is_layerwise(self) -> bool:
        """Whether some depth may get a rate other than ``learning_rate``: a decay below 1, or a head or
        embedding rate of its own."""
        return (
            self.layer_decay != 1.0
            or self.head_learning_rate is not None
            or self.embedding_learning_rate is not None
            or any(decay != 1.0 for decay in (self.tower_layer_decay or {}).values())
        )

    def decay_of(self, tower: str | None) -> float:
        """The decay of one tower: its ``tower_layer_decay``, else ``layer_decay`` (also for ``tower=None``)."""
        if tower is None or not self.tower_layer_decay:
            return self.layer_decay
        return self.tower_layer_decay.get(tower, self.layer_decay)

    def depth_rates(self, num_layers: int, tower: str | None = None) -> list[float]:
        """The learning rate of every depth ``0..num_layers + 1``.

        Args:
            num_layers: L, the number of blocks (or stages).
            tower: the tower whose decay applies (see ``tower_layer_decay``); None for ``layer_decay``.

        Returns:
            ``rates[d]`` is the rate at depth d.
        """
        decay = self.decay_of(tower)
        floor = self.learning_rate * self.layer_decay_min_scale
        rates = [max(self.learning_rate * decay ** (num_layers + 1 - depth), floor) for depth in range(num_layers + 2)]
        if self.head_learning_rate is not None:
            rates[-1] = self.head_learning_rate
        if self.embedding_learning_rate is not None:
            rates[0] = self.embedding_learning_rate
        return rates


def depth_learning_rates(
    num_layers: int,
    *,
    lr: float,
    layer_decay: float,
    head_learning_rate: float | None = None,
    embedding_learning_rate: float | None = None,
    layer_decay_min_scale: float = 0.0,
) -> list[float]:
    """The learning rate of every depth ``0..num_layers + 1``; :meth:`LayerwiseRates.depth_rates` with the
    settings given one by one.

    Args:
        num_layers: L, the number of blocks.
        lr: the head's rate and the base of the decay.
        layer_decay: the factor between neighbouring depths.
        head_learning_rate: replaces the head's rate (depth L+1); the blocks still decay from ``lr``.
        embedding_learning_rate: replaces the embeddings' rate (depth 0).
        layer_decay_min_scale: no decayed rate falls below ``lr * layer_decay_min_scale``.

    Returns:
        ``rates[d]`` is the rate at depth d.

    Raises:
        ValueError: for a setting outside its range (see :class:`LayerwiseRates`).
    """
    check_finite_non_negative(lr, "lr")  # named as in this signature
    rates = LayerwiseRates(lr, layer_decay, head_learning_rate, embedding_learning_rate, layer_decay_min_scale)
    return rates.depth_rates(num_layers)


def parse_tower_layer_decay(value: str | Mapping[str, float]) -> dict[str, float]:
    """Reads ``tower_layer_decay``: a mapping or a JSON object ``{"vision": 0.75, "text": 0.85}``.

    Args:
        value: the setting's value.

    Returns:
        ``{tower name: decay}``, every decay in (0, 1].

    Raises:
        ValueError: naming the fix, for anything else.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(
                f'tower_layer_decay is not valid JSON (expected {{"vision": 0.75, "text": 0.85}}): {error}.'
            ) from error
    if not isinstance(value, Mapping) or not value:
        raise ValueError(
            f'tower_layer_decay must be a non-empty mapping {{tower: decay}} such as {{"vision": 0.75}}, got {value!r}.'
        )
    for tower, decay in value.items():
        if not isinstance(tower, str) or not is_finite_number(decay) or not 0.0 < decay <= 1.0:
            raise ValueError(f"tower_layer_decay[{tower!r}] must be a decay in (0, 1], got {decay!r}.")
    return dict(value)


def check_finite_non_negative(value: object, name: str) -> None:
    """Raises a ``ValueError`` naming ``name`` unless ``value`` is a finite number >= 0 (not a bool)."""
    if not is_finite_number(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")


def is_finite_number(value: object) -> bool:
    """Whether ``value`` is an int or a float (not a bool) and finite."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

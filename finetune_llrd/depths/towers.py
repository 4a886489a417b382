"""Towers: parallel stacks of a multi-modal model, each numbered on one shared depth scale.

CLIP, SigLIP and ALIGN hold a text and a vision tower side by side; BLIP-2 a vision tower, a Q-Former and a
language model; a vision-language model (LLaVA, Idefics3, SmolVLM) a vision tower and a language model
joined by a projector. Numbering such towers in series would put one whole tower below the other. As the
open_clip-based EVA-CLIP training code does (each tower its own stack and its own decay, ``--visual-ld``,
``--text-ld``), each tower is numbered on its own; here the towers are then spread over one scale 1..L,
where L is the length of the longest tower: a tower's first block is at depth 1 and its last block at
depth L, just below the head (see :func:`tower_block_depth`).
Modules outside every tower (CLIP's projections and ``logit_scale``, the VLM projector, the LM head) are
new or shared and sit at the head, except embeddings (BLIP-2's query tokens), which are at depth 0.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn


# Attribute names of towers, with the name each tower is shown and addressed by (``tower_layer_decay``).
TOWER_ATTRIBUTE_NAMES = {
    "vision_model": "vision",
    "vision_tower": "vision",
    "visual": "vision",
    "vision_encoder": "vision",
    "image_encoder": "vision",
    "text_model": "text",
    "language_model": "text",
    "text_encoder": "text",
    "qformer": "qformer",
    "audio_tower": "audio",
    "audio_model": "audio",
    "audio_encoder": "audio",
}
ENCODER_DECODER_NAMES = {"encoder": "encoder", "decoder": "decoder"}

TOWER_OPTIONS = ("auto", "none", "encoder-decoder")

Towers = str | Mapping[str, str] | None
"""What ``layer_map(towers=...)`` takes: ``"auto"``, ``"none"``, ``"encoder-decoder"`` or ``{name: module path}``."""


@dataclass(frozen=True)
class Tower:
    """One tower of a model.

    Attributes:
        name: how the tower is shown and addressed (``"vision"``, ``"text"``, ``"qformer"``, ``"encoder"``).
        path: its module path (``"model.vision_tower"``).
        num_blocks: its own number of blocks (or stages with ``grouping="stage"``), n.
    """

    name: str
    path: str
    num_blocks: int


def tower_block_depth(block: int, num_blocks: int, num_layers: int) -> int:
    """The depth of a tower's block on the shared scale 1..L.

    Block k of a tower of n blocks sits at ``1 + round((k - 1) * (L - 1) / (n - 1))``, halves rounded up: the
    first block at 1, the last at L, evenly spread in between (no two blocks of a tower share a depth, as
    n <= L). A tower of one block sits at L.

    Args:
        block: k, the block's position in its tower, 1..n.
        num_blocks: n, the tower's number of blocks.
        num_layers: L, the number of blocks of the longest tower.

    Returns:
        The depth, in 1..L.

    Example:
        A 6-block text tower beside a 12-block vision tower (L = 12) gets depths 1, 3, 5, 8, 10, 12.
    """
    if not 1 <= block <= num_blocks <= num_layers:
        raise ValueError(f"need 1 <= block ({block}) <= num_blocks ({num_blocks}) <= num_layers ({num_layers}).")
    if num_blocks == 1:
        return num_layers
    span = 2 * (num_blocks - 1)
    return 1 + (2 * (block - 1) * (num_layers - 1) + (num_blocks - 1)) // span


def validate_towers(towers: Towers, name: str = "towers") -> None:
    """Raises a ``ValueError`` naming the field ``name`` and the fix unless ``towers`` is a known option or a
    mapping name -> path."""
    if towers is None or (isinstance(towers, str) and towers in TOWER_OPTIONS):
        return
    if (
        isinstance(towers, Mapping)
        and towers
        and all(isinstance(k, str) and isinstance(v, str) for k, v in towers.items())
    ):
        return
    raise ValueError(
        f"{name} must be one of {list(TOWER_OPTIONS)} or a mapping {{tower name: module path}} such as "
        f'{{"vision": "model.vision_tower", "text": "model.language_model"}}, got {towers!r}.'
    )


def parse_layer_towers(value: Towers) -> Towers:
    """Reads ``layer_towers``: an option of ``TOWER_OPTIONS``, a mapping, or a JSON object ``{name: module path}``.

    Raises:
        ValueError: naming the fix, for anything else.
    """
    if isinstance(value, str) and value not in TOWER_OPTIONS and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"layer_towers is not valid JSON: {error}.") from error
    validate_towers(value, "layer_towers")
    return value


def find_tower_roots(
    modules: dict[str, nn.Module], size: dict[str, int], search_root: str, towers: Towers
) -> dict[str, str]:
    """The candidate towers of a model: tower name -> module path, in registration order.

    Args:
        modules: ``dict(model.named_modules())``.
        size: module path -> number of parameter elements below it.
        search_root: the path below which towers are looked for (the base model, or ``""``).
        towers: ``"auto"``: the outermost modules named as towers (``vision_model``, ``vision_tower``,
            ``text_model``, ``language_model``, ``qformer``, ...), when there are at least two; ``"none"`` (or
            None): no towers; ``"encoder-decoder"``: the outermost ``encoder`` and ``decoder`` as two towers,
            besides the named ones; a mapping: exactly those.

    Returns:
        The towers; fewer than two means the model is numbered in series.

    Raises:
        ValueError: for a mapping that names a missing module, or ``"encoder-decoder"`` on a model without both.
    """
    validate_towers(towers)
    if towers is None or towers == "none":
        return {}
    if isinstance(towers, Mapping):
        missing = [path for path in towers.values() if path not in modules or size.get(path, 0) == 0]
        if missing:
            raise ValueError(f"towers names {missing}, which are not modules with parameters of this model.")
        return dict(towers)
    names = dict(TOWER_ATTRIBUTE_NAMES)
    if towers == "encoder-decoder":
        names.update(ENCODER_DECODER_NAMES)
    candidates = [
        path
        for path in modules
        if path
        and (search_root == "" or path.startswith(search_root + "."))
        and path.rsplit(".", 1)[-1] in names
        and size.get(path, 0) > 0
    ]
    outermost = [path for path in candidates if not any(path.startswith(other + ".") for other in candidates)]
    found: dict[str, str] = {}
    for path in outermost:
        attribute = path.rsplit(".", 1)[-1]
        name = names[attribute] if names[attribute] not in found else attribute
        found[name] = path
    if towers == "encoder-decoder" and not {"encoder", "decoder"} <= set(found):
        raise ValueError(
            "towers='encoder-decoder' needs a model with an encoder and a decoder module; this one has "
            f"{sorted(found) or 'neither'}."
        )
    return found

"""Which depth each parameter of a model sits at.

Depth 0 holds the embeddings (or the stem of a vision backbone), depths 1..L the repeated blocks from
bottom to top, and depth L+1 the task head together with the pooler and the final normalization.

Three methods find the depths, tried in this order:

* ``user_mapping``: a mapping ``{regex: depth}`` or a callable ``name -> depth | None`` given by the user.
  It always wins; parameters it leaves out fall back to the methods below.
* ``timm_group_matcher``: models that define timm's ``group_matcher(coarse)`` (every timm model).
* ``block_stack``: any other model: the repeated block stacks are found from the module structure
  (:mod:`finetune_llrd.depths.block_stacks`).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import nn

from .._setting_files import read_setting
from .block_stacks import block_stack_depths
from .modules import clean_parameter_name
from .timm_matcher import timm_group_depths
from .towers import Tower, Towers, validate_towers


LayerMapping = Mapping[str, int] | Callable[[str], int | None]
"""A user's mapping: ``{regex: depth}`` (first ``re.search`` match in order wins) or ``name -> depth | None``."""

LAYER_GROUPINGS = ("block", "stage")


class LayerMapError(ValueError):
    """Raised when no depth can be given to some parameters of a model."""


@dataclass(frozen=True)
class LayerMap:
    """The depth of every parameter of a model.

    Attributes:
        depths: parameter name (as in ``model.named_parameters()``) -> depth in ``0..num_layers + 1``.
        num_layers: L, the number of blocks (or stages with ``grouping="stage"``).
        method: how the depths were found: ``"block_stack"``, ``"timm_group_matcher"`` or ``"user_mapping"``
            (``"user_mapping+block_stack"`` when a partial user mapping was completed).
        grouping: ``"block"`` or ``"stage"``.
        block_names: depth -> a readable name of what sits there (``"embeddings"``, a module path, ``"head"``).
        backbone: the module path of the pretrained backbone whose blocks were numbered (UperNet's
            ``backbone``, DETR's ``model.backbone.model``), or None; everything outside it is at the head.
        new_modules: with a backbone, the modules outside it (``decode_head``, ``neck``, ...).
        towers: the towers of a multi-modal model (CLIP's text and vision, a VLM's vision tower and language
            model), each spread over the depths 1..L; empty for a model numbered in series.
    """

    depths: dict[str, int]
    num_layers: int
    method: str
    grouping: str = "block"
    block_names: dict[int, str] = field(default_factory=dict)
    backbone: str | None = None
    new_modules: tuple[str, ...] = ()
    towers: tuple[Tower, ...] = ()

    @property
    def head_depth(self) -> int:
        """The depth of the task head, pooler and final norm: ``num_layers + 1``."""
        return self.num_layers + 1

    @property
    def rule(self) -> str:
        """Deprecated name of :attr:`method` (0.1.0)."""
        warnings.warn(
            "LayerMap.rule was renamed in finetune_llrd 0.2.0: read LayerMap.method instead.",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.method

    def tower_of(self, name: str) -> str | None:
        """The name of the tower holding parameter ``name``, or None (outside every tower, or no towers)."""
        for tower in self.towers:
            if name.startswith(tower.path + "."):
                return tower.name
        return None

    def block_name(self, depth: int, tower: str | None = None) -> str:
        """A readable name for one depth (``"text 2/4, vision 3/12"`` with towers), or for one tower's part of it
        (``"vision 3/12"``)."""
        if depth == 0:
            name = self.block_names.get(0, "embeddings")
        elif depth == self.head_depth:
            name = self.block_names.get(depth, "head")
        else:
            name = self.block_names.get(depth, f"layer {depth}")
        if tower is None:
            return name
        if depth in (0, self.head_depth):
            return f"{tower} {name}"
        return ", ".join(part for part in name.split(", ") if part.startswith(tower + " ")) or name


def validate_layer_grouping(grouping: str, name: str = "layer_grouping") -> None:
    """Raises a ``ValueError`` naming the field ``name`` unless ``grouping`` is ``"block"`` or ``"stage"``."""
    if grouping not in LAYER_GROUPINGS:
        raise ValueError(f"{name} must be one of {list(LAYER_GROUPINGS)}, got {grouping!r}.")


def layer_map(
    model: nn.Module,
    *,
    grouping: str = "block",
    mapping: LayerMapping | None = None,
    num_layers: int | None = None,
    include_frozen: bool = False,
    towers: Towers = "auto",
) -> LayerMap:
    """Gives every parameter of ``model`` its depth.

    Args:
        model: any ``nn.Module``: a transformers model, a PEFT-wrapped model, a timm model, or your own.
        grouping: ``"block"`` (one depth per block) or ``"stage"`` (one depth per stage of a staged
            backbone such as Swin, ConvNeXt or ResNet; equal to ``"block"`` for models without stages).
        mapping: your own depths, ``{regex: depth}`` or ``name -> depth | None``, which wins over the
            automatic methods. Parameters it does not cover are placed by the automatic methods.
        num_layers: L for a mapping that covers every parameter; by default the largest depth it gives
            minus one (the largest depth is the head).
        include_frozen: also map parameters with ``requires_grad=False``.
        towers: parallel stacks numbered side by side, each from depth 1 to L (L = the longest tower;
            :mod:`finetune_llrd.depths.towers`): ``"auto"`` (the default) finds the towers of CLIP, SigLIP, ALIGN,
            BLIP-2 and vision-language models by their module names; ``"encoder-decoder"`` also makes the
            encoder and decoder of T5, BART or Whisper two towers (by default their blocks are in series,
            encoder below decoder); ``"none"`` numbers every stack in series; ``{name: module path}`` names
            the towers yourself.

    Returns:
        A :class:`LayerMap`.

    Raises:
        LayerMapError: if the model has no (trainable) parameters, or some parameters get no depth.
        ValueError: for an unknown ``grouping``, an invalid regex in ``mapping``, or a depth outside ``0..L+1``.
    """
    validate_layer_grouping(grouping, "grouping")
    validate_towers(towers)
    names = [name for name, param in model.named_parameters() if include_frozen or param.requires_grad]
    if not names:
        raise LayerMapError(
            f"{type(model).__name__} has no trainable parameters: every parameter has requires_grad=False. "
            "Unfreeze the parameters you want to train before building layer-wise groups."
        )

    user_depths = _apply_user_mapping(names, mapping) if mapping is not None else {}
    if len(user_depths) == len(names):
        top = max(user_depths.values())
        num = num_layers if num_layers is not None else max(top - 1, 0)
        _check_depth_range(user_depths, num)
        return LayerMap(depths=user_depths, num_layers=num, method="user_mapping", grouping=grouping)

    automatic = _automatic_layer_map(model, grouping, towers)
    depths = {name: automatic.depths[name] for name in names if name in automatic.depths}
    missing = [name for name in names if name not in depths and name not in user_depths]
    if missing:
        raise LayerMapError(_no_depth_message(model, missing))
    depths.update(user_depths)
    _check_depth_range(depths, automatic.num_layers)
    method = automatic.method if not user_depths else f"user_mapping+{automatic.method}"
    return dataclasses.replace(automatic, depths=depths, method=method)


# --------------------------------------------------------------------------------------------------
# User mappings
# --------------------------------------------------------------------------------------------------


def parse_layer_mapping(value: str | dict) -> dict[str, int]:
    """Reads ``--layer_mapping``: a dict, a JSON object, or the path of a JSON or YAML file holding one.

    Args:
        value: the field's value.

    Returns:
        ``{regex: depth}``.

    Raises:
        ValueError: if it is not a JSON object of regex -> non-negative int.
    """
    if isinstance(value, str):
        value = read_setting(value, "layer_mapping", "a JSON object such as '{\"^stem\\\\.\": 0}'")
    if not isinstance(value, dict):
        raise ValueError(f"layer_mapping must be a JSON object {{regex: depth}}, got {type(value).__name__}.")
    _compile_mapping(value)
    return dict(value)


def _compile_mapping(mapping: Mapping[str, int]) -> list[tuple[re.Pattern[str], int]]:
    """The regexes of a ``{regex: depth}`` mapping, compiled, with their checked depths."""
    compiled = []
    for pattern, depth in mapping.items():
        try:
            regex = re.compile(pattern)
        except re.error as error:
            raise ValueError(f"layer_mapping key {pattern!r} is not a valid regex: {error}.") from error
        compiled.append((regex, _as_depth(depth, pattern)))
    return compiled


def _apply_user_mapping(names: list[str], mapping: LayerMapping) -> dict[str, int]:
    depths = {}
    if callable(mapping):
        for name in names:
            depth = mapping(name)
            if depth is not None:
                depths[name] = _as_depth(depth, name)
        return depths
    compiled = _compile_mapping(mapping)
    for name in names:
        for pattern, depth in compiled:
            if pattern.search(name) or pattern.search(clean_parameter_name(name)):
                depths[name] = depth
                break
    return depths


def _as_depth(depth: object, where: str) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(
            f"layer_mapping depth for {where!r} must be an integer >= 0, got {depth!r} (depths are non-negative "
            "integers: 0 = embeddings, 1..L = blocks, L+1 = head)."
        )
    return depth


def _check_depth_range(depths: Mapping[str, int], num_layers: int) -> None:
    for name, depth in depths.items():
        if depth > num_layers + 1:
            raise ValueError(
                f"Depth {depth} for {name!r} is outside 0..{num_layers + 1} (L={num_layers} blocks, head at L+1)."
            )


def _no_depth_message(model: nn.Module, missing: list[str]) -> str:
    shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
    return (
        f"Could not find the layer of some parameters of {type(model).__name__}: {shown}. "
        "No repeated block stack (an nn.ModuleList or nn.Sequential of blocks) covers them. "
        "Pass a mapping from parameter-name regex to depth (0 = embeddings, 1..L = blocks, L+1 = head), e.g. "
        "layer_map(model, mapping={r'^stem\\.': 0, r'^body\\.(0|1)\\.': 1, r'^body\\.(2|3)\\.': 2, r'^head\\.': 3}) "
        "or a callable name -> depth; on the command line --layer_mapping '{\"^stem\\\\.\": 0, ...}'."
    )


def _automatic_layer_map(model: nn.Module, grouping: str, towers: Towers = "auto") -> LayerMap:
    """Depths of all parameters (frozen included) from timm's group matcher or the block stacks."""
    if callable(getattr(model, "group_matcher", None)):
        depths, num_layers = timm_group_depths(model, grouping)
        return LayerMap(depths=depths, num_layers=num_layers, method="timm_group_matcher", grouping=grouping)
    found = block_stack_depths(model, grouping, towers)
    if found is None:
        raise LayerMapError(_no_depth_message(model, [name for name, _ in model.named_parameters()]))
    return LayerMap(
        depths=found.depths,
        num_layers=found.num_layers,
        method="block_stack",
        grouping=grouping,
        block_names=found.block_names,
        backbone=found.backbone,
        new_modules=found.new_modules,
        towers=found.towers,
    )


def layer_map_of_wrapper(wrapper: nn.Module, model: nn.Module, model_layers: LayerMap) -> LayerMap:
    """The depths of a module that wraps ``model`` and holds parameters of its own (a loss with a classifier):
    ``model``'s parameters keep their depth, the others go to the head. Frozen parameters get none, as in
    :func:`layer_map`.

    Args:
        wrapper: the module whose parameters are mapped, ``model`` among its submodules.
        model: the wrapped model.
        model_layers: the depths of ``model``'s parameters (names as in ``model.named_parameters()``).

    Returns:
        A :class:`LayerMap` keyed by ``wrapper``'s parameter names, with ``model_layers``' number of layers, and
        its towers, backbone and new modules at their paths inside ``wrapper``.
    """
    prefix = next(name for name, module in wrapper.named_modules() if module is model)

    def inside(path: str) -> str:
        return f"{prefix}.{path}" if prefix else path

    depth_of_param = {
        id(param): model_layers.depths[name] for name, param in model.named_parameters() if name in model_layers.depths
    }
    head = model_layers.head_depth
    depths = {
        name: depth_of_param.get(id(param), head) for name, param in wrapper.named_parameters() if param.requires_grad
    }
    return dataclasses.replace(
        model_layers,
        depths=depths,
        towers=tuple(dataclasses.replace(tower, path=inside(tower.path)) for tower in model_layers.towers),
        backbone=None if model_layers.backbone is None else inside(model_layers.backbone),
        new_modules=tuple(inside(path) for path in model_layers.new_modules),
    )

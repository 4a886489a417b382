"""Which depth each parameter of a model sits at.

Depth 0 holds the embeddings (or the stem of a vision backbone), depths 1..L the repeated blocks from
bottom to top, and depth L+1 the task head together with the pooler and the final normalization.

Three rules produce a map, tried in this order:

* ``user_mapping``: a mapping ``{regex: depth}`` or a callable ``name -> depth | None`` given by the user.
  It always wins; parameters it leaves out fall back to the rules below.
* ``timm_group_matcher``: models that define timm's ``group_matcher(coarse)`` (every timm model).
* ``block_stack``: any other model. The repeated block stacks (``nn.ModuleList`` / ``nn.Sequential`` of
  composite modules: ``bert.encoder.layer``, ``model.layers``, T5's ``encoder.block`` and
  ``decoder.block``, Swin's stages with their nested ``blocks``) are found structurally; every parameter
  outside them is placed below or above them (see :func:`_place_outside_parameter`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Union

from torch import nn

LayerMapping = Union[Mapping[str, int], Callable[[str], Union[int, None]]]
"""A user's mapping: ``{regex: depth}`` (first ``re.search`` match in order wins) or ``name -> depth | None``."""

LAYER_GROUPINGS = ("block", "stage")

# Prefixes that wrappers add to parameter names (FSDP1, activation checkpointing, torch.compile, DDP).
_WRAPPER_NAME_PARTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")

# Name parts that mark an input-side module: token/patch/position embeddings, the stem of a CNN, cls tokens.
_EMBEDDING_NAME = re.compile(
    r"embed|(?:^|[._])(?:wte|wpe|stem|tok|patch|rel_pos)|relative_(?:position|attention)|_tokens?$|(?:^|[._])(?:cls|mask)_emb"
)
# Name parts that mark an output-side module: pooler, final norm, projection heads.
_HEAD_NAME = re.compile(r"(?:^|[._])(?:pool(?:er)?|head|classifier|score|final\w*|ln_f|norm_f|post_\w+|fc_norm)(?:$|[._])")
_NORM_CLASS_NAME = re.compile(r"norm(?:\d+d)?$|layernorm|rmsnorm|batchnorm|groupnorm|instancenorm", re.IGNORECASE)

# timm marks "join the previous group" with this ordinal suffix (timm.models._manipulate.MATCH_PREV_GROUP).
_TIMM_MATCH_PREV_GROUP = 99999.0


class LayerMapError(ValueError):
    """Raised when no depth can be given to some parameters of a model."""


@dataclass(frozen=True)
class LayerMap:
    """The depth of every parameter of a model.

    Attributes:
        depths: parameter name (as in ``model.named_parameters()``) -> depth in ``0..num_layers + 1``.
        num_layers: L, the number of blocks (or stages with ``grouping="stage"``).
        rule: the rule that produced the map: ``"block_stack"``, ``"timm_group_matcher"`` or
            ``"user_mapping"`` (``"user_mapping+block_stack"`` when a partial user mapping was completed).
        grouping: ``"block"`` or ``"stage"``.
        block_names: depth -> a readable name of what sits there (``"embeddings"``, a module path, ``"head"``).
    """

    depths: dict[str, int]
    num_layers: int
    rule: str
    grouping: str = "block"
    block_names: dict[int, str] = field(default_factory=dict)

    @property
    def head_depth(self) -> int:
        """The depth of the task head, pooler and final norm: ``num_layers + 1``."""
        return self.num_layers + 1

    def names_at(self, depth: int) -> list[str]:
        """The parameter names at one depth, in registration order."""
        return [name for name, d in self.depths.items() if d == depth]

    def block_name(self, depth: int) -> str:
        """A readable name for one depth."""
        if depth == 0:
            return self.block_names.get(0, "embeddings")
        if depth == self.head_depth:
            return self.block_names.get(depth, "head")
        return self.block_names.get(depth, f"layer {depth}")


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


def layer_map(
    model: nn.Module,
    *,
    grouping: str = "block",
    mapping: LayerMapping | None = None,
    num_layers: int | None = None,
    include_frozen: bool = False,
) -> LayerMap:
    """Gives every parameter of ``model`` its depth.

    Args:
        model: any ``nn.Module``: a transformers model, a PEFT-wrapped model, a timm model, or your own.
        grouping: ``"block"`` (one depth per block) or ``"stage"`` (one depth per stage of a staged
            backbone such as Swin, ConvNeXt or ResNet; equal to ``"block"`` for models without stages).
        mapping: your own rule, ``{regex: depth}`` or ``name -> depth | None``, which wins over the
            automatic rules. Parameters it does not cover are placed by the automatic rules.
        num_layers: L for a mapping that covers every parameter; by default the largest depth it gives
            minus one (the largest depth is the head).
        include_frozen: also map parameters with ``requires_grad=False``.

    Returns:
        A :class:`LayerMap`.

    Raises:
        LayerMapError: if the model has no (trainable) parameters, or some parameters get no depth.
        ValueError: for an unknown ``grouping`` or a depth outside ``0..L+1``.
    """
    if grouping not in LAYER_GROUPINGS:
        raise ValueError(f"grouping must be one of {LAYER_GROUPINGS}, got {grouping!r}.")
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
        return LayerMap(depths=user_depths, num_layers=num, rule="user_mapping", grouping=grouping)

    automatic = _automatic_layer_map(model, grouping)
    depths = {name: automatic.depths[name] for name in names if name in automatic.depths}
    missing = [name for name in names if name not in depths and name not in user_depths]
    if missing:
        raise LayerMapError(_no_depth_message(model, missing))
    depths.update(user_depths)
    _check_depth_range(depths, automatic.num_layers)
    rule = automatic.rule if not user_depths else f"user_mapping+{automatic.rule}"
    return LayerMap(
        depths=depths,
        num_layers=automatic.num_layers,
        rule=rule,
        grouping=grouping,
        block_names=automatic.block_names,
    )


def _apply_user_mapping(names: list[str], mapping: LayerMapping) -> dict[str, int]:
    if callable(mapping):
        depths = {}
        for name in names:
            depth = mapping(name)
            if depth is not None:
                depths[name] = _as_depth(depth, name)
        return depths
    compiled = [(re.compile(pattern), _as_depth(depth, pattern)) for pattern, depth in mapping.items()]
    depths = {}
    for name in names:
        for pattern, depth in compiled:
            if pattern.search(name) or pattern.search(clean_parameter_name(name)):
                depths[name] = depth
                break
    return depths


def _as_depth(depth: object, where: str) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ValueError(f"A layer mapping must give non-negative integer depths; got {depth!r} for {where!r}.")
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


def _automatic_layer_map(model: nn.Module, grouping: str) -> LayerMap:
    """Depths of all parameters (frozen included) from the timm or the block-stack rule."""
    if callable(getattr(model, "group_matcher", None)):
        return _timm_layer_map(model, grouping)
    return _block_stack_layer_map(model, grouping)


# --------------------------------------------------------------------------------------------------
# timm's group_matcher
# --------------------------------------------------------------------------------------------------


def _timm_layer_map(model: nn.Module, grouping: str) -> LayerMap:
    """Depths from timm's ``group_matcher``, with the semantics of ``timm.models.group_with_matcher``.

    timm puts a model's final norm in the last block's group (``MATCH_PREV_GROUP``); here it goes to the
    head depth, as for every other model. Unmatched parameters (the classifier) form the head.
    """
    matcher = model.group_matcher(coarse=grouping == "stage")
    compiled: list[tuple[re.Pattern[str], tuple[float, ...], tuple[float, ...] | None]] = []
    if isinstance(matcher, Mapping):
        for ordinal, spec in enumerate(matcher.values()):
            if spec is None:
                continue
            if isinstance(spec, (tuple, list)):
                for pattern, suffix in spec:
                    compiled.append((re.compile(pattern), (float(ordinal),), suffix))
            else:
                compiled.append((re.compile(spec), (float(ordinal),), None))

    def group_key(name: str) -> tuple[float, ...] | None:
        if not isinstance(matcher, Mapping):
            ordinal = matcher(name)
            key = tuple(float(o) for o in ordinal) if isinstance(ordinal, Iterable) else (float(ordinal),)
            return None if math.isinf(key[0]) else key
        for pattern, prefix, suffix in compiled:
            match = pattern.match(name)
            if match:
                parts = [*prefix, *(float(g) for g in match.groups() if g is not None)]
                if suffix:
                    parts.extend(float(s) for s in suffix)
                return tuple(parts)
        return None

    names = [name for name, _ in model.named_parameters()]
    keys = {name: group_key(clean_parameter_name(name)) for name in names}
    matched = sorted({key for key in keys.values() if key is not None})
    # Keys ending in MATCH_PREV_GROUP after the last ordinary key are the final norm: head.
    ordinary = [key for key in matched if key[-1] != _TIMM_MATCH_PREV_GROUP]
    last_ordinary = ordinary[-1] if ordinary else None
    key_depth: dict[tuple[float, ...], int] = {}
    depth = -1
    for key in matched:
        if key[-1] != _TIMM_MATCH_PREV_GROUP or depth < 0:
            depth += 1
        key_depth[key] = depth
    trailing = {key for key in matched if last_ordinary is not None and key > last_ordinary}
    num_layers = max(depth, 0)  # depth 0 is the stem group, 1..L the blocks
    depths = {}
    for name in names:
        key = keys[name]
        if key is None or key in trailing:
            depths[name] = num_layers + 1
        else:
            depths[name] = key_depth[key]
    return LayerMap(depths=depths, num_layers=num_layers, rule="timm_group_matcher", grouping=grouping)


# --------------------------------------------------------------------------------------------------
# Block stacks
# --------------------------------------------------------------------------------------------------


@dataclass
class _Unit:
    """One trunk stack (or several parallel ones, as XLM's ``attentions`` and ``ffns``) of one owner."""

    owner: str
    lists: list[str]
    length: int
    first_param_index: int
    staged: bool = False
    # element index -> list of block prefixes inside it (one prefix per block); empty for transitions
    element_blocks: list[list[str]] = field(default_factory=list)
    first_depth: int = 0
    last_depth: int = 0


def _block_stack_layer_map(model: nn.Module, grouping: str) -> LayerMap:
    named_params = list(model.named_parameters())
    param_index = {name: index for index, (name, _) in enumerate(named_params)}
    modules = dict(model.named_modules())
    first_index = _first_parameter_index(named_params)
    param_count = _parameter_counts(named_params)

    base_prefix = _base_model_prefix(model, modules)
    units = _find_units(modules, first_index, param_count, base_prefix)
    if not units:
        raise LayerMapError(_no_depth_message(model, [name for name, _ in named_params]))
    expected = _expected_block_counts(model, modules)
    for unit in units:
        _resolve_unit(unit, modules, param_count, expected)

    prefix_depth, block_names, num_layers = _number_blocks(units, grouping)
    head = num_layers + 1
    block_names = {0: "embeddings", **block_names, head: "head"}

    embedding_norms = _norms_following_embeddings(modules)
    depths: dict[str, int] = {}
    for name, _ in named_params:
        depth = _depth_inside_blocks(name, prefix_depth)
        if depth is None:
            depth = _depth_inside_unit(name, units, param_index, first_index, prefix_depth, head)
        if depth is None:
            depth = _place_outside_parameter(
                name, units, base_prefix, param_index, modules, embedding_norms, head
            )
        depths[name] = depth
    return LayerMap(
        depths=depths, num_layers=num_layers, rule="block_stack", grouping=grouping, block_names=block_names
    )


def _first_parameter_index(named_params: list[tuple[str, nn.Parameter]]) -> dict[str, int]:
    """Module path -> index of its first parameter in registration order ('' is the root)."""
    first: dict[str, int] = {}
    for index, (name, _) in enumerate(named_params):
        parts = name.split(".")
        for cut in range(len(parts)):
            first.setdefault(".".join(parts[:cut]), index)
    return first


def _parameter_counts(named_params: list[tuple[str, nn.Parameter]]) -> dict[str, int]:
    """Module path -> number of parameter elements below it."""
    counts: dict[str, int] = {}
    for name, param in named_params:
        parts = name.split(".")
        for cut in range(len(parts)):
            prefix = ".".join(parts[:cut])
            counts[prefix] = counts.get(prefix, 0) + param.numel()
    return counts


def _base_model_prefix(model: nn.Module, modules: dict[str, nn.Module]) -> str | None:
    """Path of the transformers base model (``bert``, ``model``, ...) inside ``model``, or None.

    Everything outside it is the task head. PEFT wrappers are looked through.
    """
    hf_model = None
    for module in modules.values():
        if hasattr(module, "base_model_prefix") and hasattr(module, "config"):
            hf_model = module
            break
    if hf_model is None:
        return None
    base = getattr(hf_model, hf_model.base_model_prefix, None) if hf_model.base_model_prefix else None
    if not isinstance(base, nn.Module) or base is hf_model:
        return None
    for path, module in modules.items():
        if module is base:
            return path
    return None


def _has_parameters(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _is_composite(module: nn.Module) -> bool:
    """A module built of other modules and holding parameters: a block, not a bare Linear or LayerNorm."""
    return next(module.children(), None) is not None and _has_parameters(module)


def _is_stack(module: nn.Module, *, min_sequential_length: int = 2) -> bool:
    """A ModuleList of composite modules, or a Sequential of at least ``min_sequential_length`` of them."""
    if not isinstance(module, (nn.ModuleList, nn.Sequential)) or len(module) == 0:
        return False
    with_params = [child for child in module if _has_parameters(child)]
    composite = [child for child in with_params if _is_composite(child)]
    if isinstance(module, nn.Sequential):
        return len(composite) >= min_sequential_length and len(composite) == len(with_params)
    return len(composite) == len(module)


def _is_parallel_list(module: nn.Module) -> bool:
    """A ModuleList of leaf layers that may run alongside a stack (XLM's ``layer_norm1``)."""
    return isinstance(module, nn.ModuleList) and len(module) > 0 and _has_parameters(module)


def _is_below(path: str, ancestor: str) -> bool:
    return ancestor == "" or path == ancestor or path.startswith(ancestor + ".")


def _find_units(
    modules: dict[str, nn.Module],
    first_index: dict[str, int],
    param_count: dict[str, int],
    base_prefix: str | None,
) -> list[_Unit]:
    search_root = base_prefix if base_prefix is not None else ""
    stacks = [path for path, module in modules.items() if path and _is_below(path, search_root) and _is_stack(module)]
    top = [path for path in stacks if not any(other != path and _is_below(path, other) for other in stacks)]
    if not top:
        return []
    largest = max(param_count.get(path, 0) for path in top)
    trunk = [path for path in top if param_count.get(path, 0) * 10 >= largest]

    units: dict[tuple[str, int], _Unit] = {}
    for path in trunk:
        owner = path.rsplit(".", 1)[0] if "." in path else ""
        key = (owner, len(modules[path]))
        if key not in units:
            units[key] = _Unit(owner=owner, lists=[], length=len(modules[path]), first_param_index=first_index[path])
        units[key].lists.append(path)
        units[key].first_param_index = min(units[key].first_param_index, first_index[path])
    for (owner, length), unit in units.items():
        for path, module in modules.items():
            parent = path.rsplit(".", 1)[0] if "." in path else ""
            if (
                parent == owner
                and path not in unit.lists
                and path not in stacks
                and _is_parallel_list(module)
                and len(module) == length
            ):
                unit.lists.append(path)
    return sorted(units.values(), key=lambda unit: unit.first_param_index)


def _expected_block_counts(model: nn.Module, modules: dict[str, nn.Module]) -> set[int]:
    """Block counts that the model's configs announce (num_hidden_layers, sum of depths, ...)."""
    counts: set[int] = set()
    for module in modules.values():
        config = getattr(module, "config", None)
        if config is None or not hasattr(config, "to_dict"):
            continue
        values = {}
        for key in ("depths", "depth", "block_sizes", "stage_num_blocks"):
            value = getattr(config, key, None)
            if isinstance(value, (list, tuple)) and value and all(isinstance(v, int) for v in value):
                counts.add(sum(value))
        for key in ("num_hidden_layers", "num_layers", "n_layer", "encoder_layers", "decoder_layers"):
            try:
                value = getattr(config, key, None)
            except AttributeError:
                value = None
            if isinstance(value, int) and not isinstance(value, bool):
                values[key] = value
                counts.add(value)
        if "encoder_layers" in values and "decoder_layers" in values:
            counts.add(values["encoder_layers"] + values["decoder_layers"])
    return counts


def _nested_stack(element_path: str, modules: dict[str, nn.Module]) -> str | None:
    """The stack of blocks inside a stage: the element itself (Funnel) or a direct child (Swin's ``blocks``)."""
    element = modules[element_path]
    candidates = [(element_path, element)]
    candidates += [(f"{element_path}.{name}", child) for name, child in element.named_children()]
    for path, module in candidates:
        if _is_stack(module, min_sequential_length=1) and _mostly_one_class(module):
            return path
    return None


def _mostly_one_class(module: nn.Module) -> bool:
    """Blocks of a stage share a class (allowing one odd block); T5's [attention, feed-forward] does not."""
    classes = [type(child) for child in module if _has_parameters(child)]
    most = max(classes.count(cls) for cls in set(classes))
    return most * 2 > len(classes)


def _resolve_unit(
    unit: _Unit, modules: dict[str, nn.Module], param_count: dict[str, int], expected: set[int]
) -> None:
    """Decides whether a unit's elements are blocks or stages of blocks, and lists its blocks."""
    main = unit.lists[0]
    nested: list[str | None] = []
    for index in range(unit.length):
        found = [_nested_stack(f"{path}.{index}", modules) for path in unit.lists if f"{path}.{index}" in modules]
        nested.append(next((path for path in found if path is not None), None))
    nested_total = sum(len(modules[path]) for path in nested if path is not None)
    has_nested = any(path is not None for path in nested)

    staged = False
    if has_nested:
        flat_expected = unit.length in expected
        nested_expected = nested_total in expected
        if nested_expected and not flat_expected:
            staged = True
        elif nested_expected == flat_expected:
            staged = _looks_staged(unit, nested, modules, param_count)
    unit.staged = staged
    unit.element_blocks = []
    for index in range(unit.length):
        if staged:
            path = nested[index]
            blocks = [] if path is None else [f"{path}.{k}" for k in range(len(modules[path]))]
            blocks = [block for block in blocks if param_count.get(block, 0) > 0]
        else:
            blocks = [f"{main}.{index}"]
        unit.element_blocks.append(blocks)


def _looks_staged(
    unit: _Unit, nested: list[str | None], modules: dict[str, nn.Module], param_count: dict[str, int]
) -> bool:
    """Without a config to tell: every element larger than the smallest stage holds a block stack, and
    the stages are named so or their block stack holds most of each stage."""
    def element_count(index: int) -> int:
        return sum(param_count.get(f"{path}.{index}", 0) for path in unit.lists)

    stage_sizes = [element_count(index) for index, path in enumerate(nested) if path is not None]
    for index, path in enumerate(nested):
        if path is None and element_count(index) > min(stage_sizes):
            return False
    for index, path in enumerate(nested):
        if path is None:
            continue
        element_class = type(modules[f"{unit.lists[0]}.{index}"]).__name__
        if re.search(r"Stage|Group|Level", element_class):
            continue
        if param_count.get(path, 0) * 2 < element_count(index):
            return False
    return True


def _number_blocks(units: list[_Unit], grouping: str) -> tuple[dict[str, int], dict[int, str], int]:
    """Block prefix -> depth (1..L), depth -> readable name, and L."""
    prefix_depth: dict[str, int] = {}
    names: dict[int, str] = {}
    depth = 0
    for unit in units:
        unit.first_depth = depth + 1
        for index, blocks in enumerate(unit.element_blocks):
            if not blocks:
                continue
            if grouping == "stage" and unit.staged:
                depth += 1
                names[depth] = ",".join(f"{path}.{index}" for path in unit.lists[:1])
                for block in blocks:
                    prefix_depth[block] = depth
            elif unit.staged:
                for block in blocks:
                    depth += 1
                    prefix_depth[block] = depth
                    names[depth] = block
            else:
                depth += 1
                for path in unit.lists:
                    prefix_depth[f"{path}.{index}"] = depth
                names[depth] = blocks[0]
        unit.last_depth = depth
    return prefix_depth, names, depth


def _depth_inside_blocks(name: str, prefix_depth: dict[str, int]) -> int | None:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        depth = prefix_depth.get(".".join(parts[:cut]))
        if depth is not None:
            return depth
    return None


def _depth_inside_unit(
    name: str,
    units: list[_Unit],
    param_index: dict[str, int],
    first_index: dict[str, int],
    prefix_depth: dict[str, int],
    head: int,
) -> int | None:
    """Depth of a parameter inside a stage but outside its blocks (Swin's ``downsample``, ConvNeXt's
    ``downsampling_layer``), or inside a transition element of a staged stack.

    As timm does, such a parameter joins the first block that follows it.
    """
    for unit in units:
        for path in unit.lists:
            if not name.startswith(path + "."):
                continue
            index = int(name[len(path) + 1 :].split(".", 1)[0])
            blocks = unit.element_blocks[index]
            if blocks:
                first_block_index = first_index[blocks[0]]
                if param_index[name] < first_block_index:
                    return prefix_depth[blocks[0]]
                following = _first_block_after(unit, index + 1, prefix_depth)
                return following if following is not None else prefix_depth[blocks[-1]]
            following = _first_block_after(unit, index + 1, prefix_depth)
            if following is not None:
                return following
            previous = _last_block_before(unit, index, prefix_depth)
            return previous if previous is not None else head
    return None


def _first_block_after(unit: _Unit, start: int, prefix_depth: dict[str, int]) -> int | None:
    for blocks in unit.element_blocks[start:]:
        if blocks:
            return prefix_depth[blocks[0]]
    return None


def _last_block_before(unit: _Unit, stop: int, prefix_depth: dict[str, int]) -> int | None:
    for blocks in reversed(unit.element_blocks[:stop]):
        if blocks:
            return prefix_depth[blocks[-1]]
    return None


def _place_outside_parameter(
    name: str,
    units: list[_Unit],
    base_prefix: str | None,
    param_index: dict[str, int],
    modules: dict[str, nn.Module],
    embedding_norms: set[str],
    head: int,
) -> int:
    """Depth of a parameter outside every block stack.

    In order: outside the transformers base model -> head; an embedding-like name or module
    (``embed``, ``wte``, ``patch``, ``stem``, ``cls_token``, any ``nn.Embedding``) -> 0; a head-like name
    (``pooler``, ``final_layer_norm``, ``ln_f``, ``post_layernorm``) -> above the stack it belongs to;
    anything else by registration order: before the stack -> below it, after -> above it. "Above" is
    the head for the last stack and the next stack's first block for an earlier one (T5's encoder norm).
    """
    if base_prefix is not None and not _is_below(name, base_prefix):
        return head
    module_path = name.rsplit(".", 1)[0] if "." in name else ""
    local = name[len(base_prefix) + 1 :] if base_prefix else name
    if (
        _EMBEDDING_NAME.search(local)
        or _has_embedding_ancestor(module_path, modules, base_prefix)
        or module_path in embedding_norms
    ):
        return 0
    owner_units = [unit for unit in units if _is_below(name, unit.owner)]
    unit = max(owner_units, key=lambda u: len(u.owner)) if owner_units else None
    if _HEAD_NAME.search(local):
        if unit is not None:
            return _above(unit, units, head)
        return head
    if unit is not None:
        if param_index[name] < unit.first_param_index:
            return unit.first_depth - 1
        return _above(unit, units, head)
    before = [u for u in units if u.first_param_index < param_index[name]]
    if not before:
        return 0
    return _above(before[-1], units, head)


def _above(unit: _Unit, units: list[_Unit], head: int) -> int:
    return head if unit is units[-1] else unit.last_depth + 1


def _has_embedding_ancestor(module_path: str, modules: dict[str, nn.Module], stop: str | None) -> bool:
    """Whether the parameter's module, or a module above it (below ``stop``), is an ``nn.Embedding``."""
    path = module_path
    while True:
        module = modules.get(path)
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            return True
        if not path or path == stop:
            return False
        path = path.rsplit(".", 1)[0] if "." in path else ""


def _norms_following_embeddings(modules: dict[str, nn.Module]) -> set[str]:
    """Paths of norms registered right after an embedding in the same parent: such a norm normalizes
    that embedding (DeBERTa-v2's ``encoder.rel_embeddings`` and ``encoder.LayerNorm``)."""
    found = set()
    for parent_path, parent in modules.items():
        previous_was_embedding = False
        for child_name, child in parent.named_children():
            if not _has_parameters(child):
                continue
            if previous_was_embedding and is_norm_module(child):
                found.add(f"{parent_path}.{child_name}" if parent_path else child_name)
            previous_was_embedding = isinstance(child, (nn.Embedding, nn.EmbeddingBag))
    return found


def is_norm_module(module: nn.Module) -> bool:
    """Whether a module is a normalization layer, judged by its class (and its base classes).

    Covers torch's norms and every ``*Norm`` class of transformers and timm (``LlamaRMSNorm``,
    ``T5LayerNorm``, ``ConvNextLayerNorm``, ``Qwen3NextRMSNormGated``, ...).
    """
    if isinstance(
        module,
        (nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm, nn.modules.batchnorm._NormBase),
    ):
        return True
    return any(_NORM_CLASS_NAME.search(cls.__name__) for cls in type(module).__mro__ if cls is not nn.Module)


def iter_depth_names(layers: LayerMap) -> Iterable[tuple[int, str]]:
    """Every depth ``0..L+1`` with its readable name."""
    for depth in range(layers.num_layers + 2):
        yield depth, layers.block_name(depth)

"""The ``block_stack`` rule: depths from the module structure of any model.

The repeated block stacks (``nn.ModuleList`` / ``nn.Sequential`` of composite modules: ``bert.encoder.layer``,
``model.layers``, T5's ``encoder.block`` and ``decoder.block``, Swin's stages with their nested ``blocks``)
are found structurally and their blocks numbered 1..L from bottom to top; every parameter outside them is
placed below or above them (see :func:`_place_outside_parameter`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from torch import nn

from .backbones import find_backbone, new_modules_around
from .modules import is_norm_module
from .towers import Tower, Towers, find_tower_roots, tower_block_depth


# Name parts that mark an input-side module: token/patch/position embeddings, the stem of a CNN, cls tokens.
_EMBEDDING_NAME = re.compile(
    r"embed|(?:^|[._])(?:wte|wpe|stem|tok|patch|rel_pos)|relative_(?:position|attention)|_tokens?$|(?:^|[._])(?:cls|mask)_emb"
)
# Name parts that mark an output-side module: pooler, final norm, projection heads.
_HEAD_NAME = re.compile(
    r"(?:^|[._])(?:pool(?:er)?|head|classifier|score|final\w*|ln_f|norm_f|post_\w+|fc_norm)(?:$|[._])"
)
_STAGE_CLASS_NAME = re.compile(r"Stage|Group|Level")


@dataclass(frozen=True)
class BlockStackDepths:
    """What the ``block_stack`` rule finds.

    Attributes:
        depths: parameter name -> depth in ``0..num_layers + 1``, for every parameter (frozen included).
        num_layers: L, the number of blocks (or stages with ``grouping="stage"``).
        block_names: depth -> a readable name (``"embeddings"``, a module path, ``"head"``).
        backbone: the path of the pretrained backbone whose blocks are numbered (see
            :mod:`finetune_llrd.depths.backbones`), or None when the model has none.
        new_modules: with a backbone, the modules outside it (neck, decode head, ...), all at the head depth.
        towers: the towers numbered side by side (see :mod:`finetune_llrd.depths.towers`); empty for a model
            numbered in series.
    """

    depths: dict[str, int]
    num_layers: int
    block_names: dict[int, str]
    backbone: str | None = None
    new_modules: tuple[str, ...] = ()
    towers: tuple[Tower, ...] = ()


@dataclass(frozen=True)
class _ModelIndex:
    """What the search looks up about a model, computed once.

    Attributes:
        modules: module path -> module (``""`` is the root).
        parameter_names: parameter names in registration order (a tied weight once).
        position: parameter name -> its position in registration order.
        first_position: module path -> position of the first parameter below it.
        size: module path -> number of parameter elements below it.
        base_model_path: path of the transformers base model (``bert``, ``model``, ...), or of the pretrained
            backbone when the model holds one; None for neither. Everything outside it is the head.
        embedding_norm_paths: norms that normalize an embedding (see :func:`_norms_following_embeddings`).
        tied_to_embedding: parameters that are also the weight of an ``nn.Embedding`` under another name (a
            tied LM head): one tensor has one rate, and it is the embeddings' (depth 0).
    """

    modules: dict[str, nn.Module]
    parameter_names: list[str]
    position: dict[str, int]
    first_position: dict[str, int]
    size: dict[str, int]
    base_model_path: str | None
    embedding_norm_paths: set[str]
    tied_to_embedding: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, model: nn.Module) -> _ModelIndex:
        named_params = list(model.named_parameters())
        modules = dict(model.named_modules())
        first_position: dict[str, int] = {}
        size: dict[str, int] = {}
        for position, (name, param) in enumerate(named_params):
            for path in _ancestor_paths(name):
                first_position.setdefault(path, position)
                size[path] = size.get(path, 0) + param.numel()
        return cls(
            modules=modules,
            parameter_names=[name for name, _ in named_params],
            position={name: position for position, (name, _) in enumerate(named_params)},
            first_position=first_position,
            size=size,
            base_model_path=base_model_path(modules),
            embedding_norm_paths=_norms_following_embeddings(modules),
            tied_to_embedding=_tied_to_embedding(model, modules),
        )


@dataclass
class _BlockStack:
    """One stack of blocks of one owner module (``bert.encoder.layer``), together with the lists that run
    alongside it, element by element (XLM's ``attentions``, ``ffns`` and ``layer_norm1``).

    Attributes:
        owner: path of the module that holds the lists.
        module_lists: paths of the ``ModuleList`` / ``Sequential`` modules; the first is the main stack.
        num_elements: the length they share.
        first_position: position of the first parameter below any of them.
        staged: whether each element is a stage holding a nested stack of blocks (Swin, ConvNeXt, ResNet).
        element_blocks: element index -> the paths of the blocks inside it (the element itself, or the
            blocks of a stage; none for a transition element without blocks).
        first_depth: depth of the lowest block.
        last_depth: depth of the highest block.
    """

    owner: str
    module_lists: list[str]
    num_elements: int
    first_position: int
    staged: bool = False
    element_blocks: list[list[str]] = field(default_factory=list)
    first_depth: int = 0
    last_depth: int = 0


@dataclass(frozen=True)
class _BlockNumbering:
    """The stacks with their blocks numbered.

    Attributes:
        stacks: the block stacks, ordered by their first parameter.
        block_depth: block path -> depth in 1..L.
        block_names: depth -> readable name of the block (or stage) there.
        num_layers: L.
    """

    stacks: list[_BlockStack]
    block_depth: dict[str, int]
    block_names: dict[int, str]
    num_layers: int

    @property
    def head_depth(self) -> int:
        return self.num_layers + 1

    def depth_above(self, stack: _BlockStack) -> int:
        """The depth right above a stack: the head for the last stack, else the next stack's first block."""
        return self.head_depth if stack is self.stacks[-1] else stack.last_depth + 1


def block_stack_depths(model: nn.Module, grouping: str, towers: Towers = "auto") -> BlockStackDepths | None:
    """Gives every parameter of ``model`` (frozen included) a depth from the model's block stacks.

    Args:
        model: any ``nn.Module``.
        grouping: ``"block"`` (one depth per block) or ``"stage"`` (one per stage of a staged backbone).
        towers: which parallel stacks are numbered side by side (see
            :func:`finetune_llrd.depths.towers.find_tower_roots`): ``"auto"``, ``"none"``, ``"encoder-decoder"`` or
            ``{name: module path}``.

    Returns:
        The depths, or None if the model has no block stack.
    """
    index = _ModelIndex.of(model)
    backbone = find_backbone(index.modules, index.size)
    if backbone is not None:
        # Only the backbone is pretrained: its blocks are numbered, and everything outside it is the head.
        index = dataclasses.replace(index, base_model_path=backbone)
    announced = _announced_block_counts(index.modules)
    stacks = _find_block_stacks(index)
    tower_roots = find_tower_roots(index.modules, index.size, index.base_model_path or "", towers)
    # Towers only when they hold every block stack: T5Gemma2's vision tower inside its encoder does not make
    # its encoder's text layers and its decoder towers.
    outside = [
        stack.module_lists[0]
        for stack in stacks
        if not any(_is_below(stack.module_lists[0], root) for root in tower_roots.values())
    ]
    found = _tower_depths(index, tower_roots, grouping, announced) if len(tower_roots) >= 2 and not outside else None
    if found is not None:
        return found
    if tower_roots and towers not in ("auto", "none", None):
        problem = f"the block stacks {outside} are in none of them" if outside else "fewer than two hold a block stack"
        raise ValueError(f"towers {tower_roots} cannot number this model side by side: {problem}.")
    if not stacks:
        return None
    for stack in stacks:
        _list_blocks(stack, index, announced)
    numbering = _number_blocks(stacks, grouping)
    depths = {name: _depth_of(name, index, numbering) for name in index.parameter_names}
    new_modules = tuple(new_modules_around(backbone, index.modules, index.size)) if backbone is not None else ()
    head_name = f"head (new: {', '.join(new_modules)})" if new_modules else "head"
    block_names = {0: "embeddings", **numbering.block_names, numbering.head_depth: head_name}
    return BlockStackDepths(
        depths=depths,
        num_layers=numbering.num_layers,
        block_names=block_names,
        backbone=backbone,
        new_modules=new_modules,
    )


def _numbered_stacks(index: _ModelIndex, grouping: str, announced: set[int]) -> _BlockNumbering | None:
    """The block stacks below ``index.base_model_path``, numbered 1..L; None without a stack."""
    stacks = _find_block_stacks(index)
    if not stacks:
        return None
    for stack in stacks:
        _list_blocks(stack, index, announced)
    return _number_blocks(stacks, grouping)


def _tower_depths(
    index: _ModelIndex, tower_roots: dict[str, str], grouping: str, announced: set[int]
) -> BlockStackDepths | None:
    """Depths of a model with towers: each tower numbered on its own, then spread over 1..L (L = the longest
    tower) by :func:`finetune_llrd.depths.towers.tower_block_depth`. Within a tower the usual placement holds
    (embeddings at 0, its final norm and pooler at the head); outside every tower, embeddings are at 0 and
    everything else (projections, projector, logit scale, LM head) at the head. None when fewer than two
    candidates hold a block stack."""
    numbered: dict[str, tuple[_ModelIndex, _BlockNumbering]] = {}
    for name, path in tower_roots.items():
        tower_index = dataclasses.replace(index, base_model_path=path)
        numbering = _numbered_stacks(tower_index, grouping, announced)
        if numbering is not None:
            numbered[name] = (tower_index, numbering)
    if len(numbered) < 2:
        return None
    num_layers = max(numbering.num_layers for _, numbering in numbered.values())
    head_depth = num_layers + 1

    def on_scale(local: int, numbering: _BlockNumbering) -> int:
        if local == 0:
            return 0
        if local == numbering.head_depth:
            return head_depth
        return tower_block_depth(local, numbering.num_layers, num_layers)

    depths: dict[str, int] = {}
    for parameter in index.parameter_names:
        tower = next((name for name in numbered if _is_below(parameter, tower_roots[name])), None)
        if tower is not None:
            tower_index, numbering = numbered[tower]
            depths[parameter] = on_scale(_depth_of(parameter, tower_index, numbering), numbering)
        else:
            depths[parameter] = 0 if _is_embedding_outside_towers(parameter, index) else head_depth
    shown: dict[int, list[str]] = {}
    for name, (_, numbering) in numbered.items():
        for local in range(1, numbering.num_layers + 1):
            shown.setdefault(on_scale(local, numbering), []).append(f"{name} {local}/{numbering.num_layers}")
    block_names = {
        0: "embeddings",
        **{depth: ", ".join(names) for depth, names in sorted(shown.items())},
        head_depth: "head",
    }
    towers = tuple(Tower(name, tower_roots[name], numbering.num_layers) for name, (_, numbering) in numbered.items())
    return BlockStackDepths(depths=depths, num_layers=num_layers, block_names=block_names, towers=towers)


def _is_embedding_outside_towers(name: str, index: _ModelIndex) -> bool:
    """An embedding-like parameter outside every tower (BLIP-2's ``query_tokens``, T5's ``shared``, a weight
    tied to an embedding)."""
    base = index.base_model_path
    if name in index.tied_to_embedding:
        return True
    if base is not None and not _is_below(name, base):
        return False
    local = name[len(base) + 1 :] if base else name
    return bool(_EMBEDDING_NAME.search(local)) or _has_embedding_ancestor(_parent_path(name), index.modules, base)


def base_model_path(modules: dict[str, nn.Module]) -> str | None:
    """Path of the transformers base model (``bert``, ``model``, ...) among a model's modules, or None.

    Everything outside it is the task head. PEFT wrappers are looked through.

    Args:
        modules: ``dict(model.named_modules())``.

    Returns:
        The path, or None for a model without a separate transformers base model.
    """
    hf_model = next(
        (module for module in modules.values() if hasattr(module, "base_model_prefix") and hasattr(module, "config")),
        None,
    )
    if hf_model is None:
        return None
    base = getattr(hf_model, hf_model.base_model_prefix, None) if hf_model.base_model_prefix else None
    if not isinstance(base, nn.Module) or base is hf_model:
        return None
    return next((path for path, module in modules.items() if module is base), None)


def _ancestor_paths(name: str) -> list[str]:
    """The paths of the modules above a parameter, from the root (``""``) down to its own module."""
    parts = name.split(".")
    return [".".join(parts[:cut]) for cut in range(len(parts))]


def _parent_path(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


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


def _find_block_stacks(index: _ModelIndex) -> list[_BlockStack]:
    """The trunk stacks (the outermost stacks holding at least a tenth of the largest one's parameters),
    those of one owner and one length joined into one :class:`_BlockStack` with their parallel lists."""
    modules = index.modules
    search_root = index.base_model_path if index.base_model_path is not None else ""
    all_stacks = [
        path
        for path, module in modules.items()
        if path and _is_below(path, search_root) and _is_stack(module) and not _is_stem(path, search_root)
    ]
    outermost = [
        path for path in all_stacks if not any(other != path and _is_below(path, other) for other in all_stacks)
    ]
    if not outermost:
        return []
    largest = max(index.size.get(path, 0) for path in outermost)
    trunk = [path for path in outermost if index.size.get(path, 0) * 10 >= largest]

    stacks: dict[tuple[str, int], _BlockStack] = {}
    for path in trunk:
        owner, num_elements = _parent_path(path), len(modules[path])
        stack = stacks.setdefault(
            (owner, num_elements),
            _BlockStack(
                owner=owner, module_lists=[], num_elements=num_elements, first_position=index.first_position[path]
            ),
        )
        stack.module_lists.append(path)
        stack.first_position = min(stack.first_position, index.first_position[path])
    for stack in stacks.values():
        for path, module in modules.items():
            if (
                _parent_path(path) == stack.owner
                and path not in stack.module_lists
                and path not in all_stacks
                and _is_parallel_list(module)
                and len(module) == stack.num_elements
            ):
                stack.module_lists.append(path)
    return sorted(stacks.values(), key=lambda stack: stack.first_position)


def _is_stem(path: str, search_root: str) -> bool:
    """Whether a stack sits inside an embedding module (the three-convolution stem of RT-DETR's ResNet in
    ``embedder``): it is part of depth 0, not of the blocks."""
    local = path[len(search_root) + 1 :] if search_root else path
    return any("embed" in part for part in local.split(".")[:-1])


def _announced_block_counts(modules: dict[str, nn.Module]) -> set[int]:
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


def _list_blocks(stack: _BlockStack, index: _ModelIndex, announced: set[int]) -> None:
    """Decides whether a stack's elements are blocks or stages of blocks, and lists the blocks of each element."""
    modules = index.modules
    nested: list[str | None] = []
    for element in range(stack.num_elements):
        found = [
            _nested_stack(f"{path}.{element}", modules)
            for path in stack.module_lists
            if f"{path}.{element}" in modules
        ]
        nested.append(next((path for path in found if path is not None), None))

    stack.staged = False
    if any(path is not None for path in nested):
        flat_announced = stack.num_elements in announced
        nested_announced = sum(len(modules[path]) for path in nested if path is not None) in announced
        if nested_announced and not flat_announced:
            stack.staged = True
        elif nested_announced == flat_announced:
            stack.staged = _looks_staged(stack, nested, index)
    stack.element_blocks = []
    for element in range(stack.num_elements):
        if stack.staged:
            path = nested[element]
            blocks = [] if path is None else [f"{path}.{k}" for k in range(len(modules[path]))]
            blocks = [block for block in blocks if index.size.get(block, 0) > 0]
        else:
            blocks = [f"{stack.module_lists[0]}.{element}"]
        stack.element_blocks.append(blocks)


def _looks_staged(stack: _BlockStack, nested: list[str | None], index: _ModelIndex) -> bool:
    """Without a config to tell: every element larger than the smallest stage holds a block stack, and
    the stages are named so or their block stack holds most of each stage."""

    def element_size(element: int) -> int:
        return sum(index.size.get(f"{path}.{element}", 0) for path in stack.module_lists)

    stage_sizes = [element_size(element) for element, path in enumerate(nested) if path is not None]
    for element, path in enumerate(nested):
        if path is None and element_size(element) > min(stage_sizes):
            return False
    for element, path in enumerate(nested):
        if path is None:
            continue
        element_class = type(index.modules[f"{stack.module_lists[0]}.{element}"]).__name__
        if _STAGE_CLASS_NAME.search(element_class):
            continue
        if index.size.get(path, 0) * 2 < element_size(element):
            return False
    return True


def _number_blocks(stacks: list[_BlockStack], grouping: str) -> _BlockNumbering:
    """Numbers the blocks 1..L, stack after stack; with ``grouping="stage"`` one depth per stage."""
    block_depth: dict[str, int] = {}
    names: dict[int, str] = {}
    depth = 0
    for stack in stacks:
        stack.first_depth = depth + 1
        for element, blocks in enumerate(stack.element_blocks):
            if not blocks:
                continue
            if grouping == "stage" and stack.staged:
                depth += 1
                names[depth] = f"{stack.module_lists[0]}.{element}"
                for block in blocks:
                    block_depth[block] = depth
            elif stack.staged:
                for block in blocks:
                    depth += 1
                    block_depth[block] = depth
                    names[depth] = block
            else:
                depth += 1
                for path in stack.module_lists:
                    block_depth[f"{path}.{element}"] = depth
                names[depth] = blocks[0]
        stack.last_depth = depth
    return _BlockNumbering(stacks=stacks, block_depth=block_depth, block_names=names, num_layers=depth)


def _tied_to_embedding(model: nn.Module, modules: dict[str, nn.Module]) -> set[str]:
    """Names (as ``named_parameters`` gives them: the first registration) of tensors that an ``nn.Embedding``
    also holds under another name."""
    aliases: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        aliases.setdefault(id(param), []).append(name)
    return {
        names[0]
        for names in aliases.values()
        if len(names) > 1
        and any(isinstance(modules.get(_parent_path(name)), (nn.Embedding, nn.EmbeddingBag)) for name in names)
    }


def _depth_of(name: str, index: _ModelIndex, numbering: _BlockNumbering) -> int:
    if name in index.tied_to_embedding:
        return 0
    depth = _depth_inside_blocks(name, numbering.block_depth)
    if depth is None:
        depth = _depth_inside_stack(name, index, numbering)
    if depth is None:
        depth = _place_outside_parameter(name, index, numbering)
    return depth


def _depth_inside_blocks(name: str, block_depth: dict[str, int]) -> int | None:
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        depth = block_depth.get(".".join(parts[:cut]))
        if depth is not None:
            return depth
    return None


def _depth_inside_stack(name: str, index: _ModelIndex, numbering: _BlockNumbering) -> int | None:
    """Depth of a parameter inside a stage but outside its blocks (Swin's ``downsample``, ConvNeXt's
    ``downsampling_layer``), or inside a transition element of a staged stack.

    As timm does, such a parameter joins the first block that follows it.
    """
    for stack in numbering.stacks:
        for path in stack.module_lists:
            if not name.startswith(path + "."):
                continue
            element = int(name[len(path) + 1 :].split(".", 1)[0])
            blocks = stack.element_blocks[element]
            following = _first_block_depth_after(stack, element + 1, numbering)
            if blocks:
                if index.position[name] < index.first_position[blocks[0]]:
                    return numbering.block_depth[blocks[0]]
                return following if following is not None else numbering.block_depth[blocks[-1]]
            if following is not None:
                return following
            previous = _last_block_depth_before(stack, element, numbering)
            return previous if previous is not None else numbering.head_depth
    return None


def _first_block_depth_after(stack: _BlockStack, start: int, numbering: _BlockNumbering) -> int | None:
    for blocks in stack.element_blocks[start:]:
        if blocks:
            return numbering.block_depth[blocks[0]]
    return None


def _last_block_depth_before(stack: _BlockStack, stop: int, numbering: _BlockNumbering) -> int | None:
    for blocks in reversed(stack.element_blocks[:stop]):
        if blocks:
            return numbering.block_depth[blocks[-1]]
    return None


def _place_outside_parameter(name: str, index: _ModelIndex, numbering: _BlockNumbering) -> int:
    """Depth of a parameter outside every block stack.

    In order: outside the transformers base model -> head; an embedding-like name or module
    (``embed``, ``wte``, ``patch``, ``stem``, ``cls_token``, any ``nn.Embedding``) -> 0; a head-like name
    (``pooler``, ``final_layer_norm``, ``ln_f``, ``post_layernorm``) -> above the stack it belongs to;
    anything else by registration order: before the stack -> below it, after -> above it. "Above" is
    the head for the last stack and the next stack's first block for an earlier one (T5's encoder norm).
    """
    base = index.base_model_path
    if base is not None and not _is_below(name, base):
        return numbering.head_depth
    module_path = _parent_path(name)
    local = name[len(base) + 1 :] if base else name
    if (
        _EMBEDDING_NAME.search(local)
        or _has_embedding_ancestor(module_path, index.modules, base)
        or module_path in index.embedding_norm_paths
    ):
        return 0
    owning = [stack for stack in numbering.stacks if _is_below(name, stack.owner)]
    stack = max(owning, key=lambda s: len(s.owner)) if owning else None
    if _HEAD_NAME.search(local):
        return numbering.depth_above(stack) if stack is not None else numbering.head_depth
    if stack is not None:
        if index.position[name] < stack.first_position:
            return stack.first_depth - 1
        return numbering.depth_above(stack)
    before = [s for s in numbering.stacks if s.first_position < index.position[name]]
    if not before:
        return 0
    return numbering.depth_above(before[-1])


def _has_embedding_ancestor(module_path: str, modules: dict[str, nn.Module], stop: str | None) -> bool:
    """Whether the parameter's module, or a module above it (below ``stop``), is an ``nn.Embedding``."""
    path = module_path
    while True:
        module = modules.get(path)
        if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            return True
        if not path or path == stop:
            return False
        path = _parent_path(path)


def _norms_following_embeddings(modules: dict[str, nn.Module]) -> set[str]:
    """Paths of norms registered right after an embedding in the same parent: such a norm normalizes
    that embedding (DeBERTa-v2's ``encoder.rel_embeddings`` and ``encoder.LayerNorm``). A norm named as a
    final one is not (OPT registers ``final_layer_norm`` right after ``embed_positions``)."""
    found = set()
    for parent_path, parent in modules.items():
        previous_was_embedding = False
        for child_name, child in parent.named_children():
            if not _has_parameters(child):
                continue
            if previous_was_embedding and is_norm_module(child) and not _HEAD_NAME.search(child_name):
                found.add(f"{parent_path}.{child_name}" if parent_path else child_name)
            previous_was_embedding = isinstance(child, (nn.Embedding, nn.EmbeddingBag))
    return found

"""Which parameters get no weight decay: biases, norms, 1-D parameters, learned tokens and positions, and
whatever a module declares (timm's ``no_weight_decay()``, Mamba's ``_no_weight_decay``)."""

from __future__ import annotations

import fnmatch
import re

from torch import nn

from ..depths.modules import clean_parameter_name, is_norm_module


# Learned tokens and positions that are registered as bare parameters (not inside a Linear/Conv/Embedding):
# cls / mask / distillation / register tokens, ViT-style position embeddings, relative position bias
# tables, layer scales.
_EXEMPT_FREE_PARAMETER = re.compile(
    r"(?:^|_)(?:cls|mask|dist|distillation|reg|register|class)_?(?:token|tokens|embedding)$"
    r"|pos_embed|position_embeddings?$|absolute_pos|bias_table$|^layer_scale|^lambda_?\d|^gamma_?\d?$|^ls\d"
)
# Relative position bias tables kept in an nn.Embedding (T5, MPNet): positions, not features.
_EXEMPT_POSITION_MODULE = re.compile(r"relative_(?:attention|position)_bias|(?:^|[._])rel_pos")
_VISION_POSITION_MODULE = re.compile(r"position_embeddings?$|pos_embed")
_WEIGHT_LAYERS = (nn.Linear, nn.Embedding, nn.EmbeddingBag, nn.modules.conv._ConvNd)


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """The parameters that should get no weight decay.

    A parameter is exempt if it is 1-D (biases, norm weights, layer scales), belongs to a normalization
    layer (judged by module class), is named ``bias`` / ``*_bias``, is a learned token or position
    registered as a bare parameter (cls / mask / distillation / register tokens, ViT position
    embeddings, relative position bias tables), is a learned position embedding of a vision model, is
    listed by a module's ``no_weight_decay()`` (names or wildcards) or ``no_weight_decay_keywords()``
    (the timm and Swin conventions), or carries ``_no_weight_decay = True`` (the Mamba convention).

    Args:
        model: the model.

    Returns:
        Names as in ``model.named_parameters()``.
    """
    exempt: set[str] = set()
    is_vision = _is_vision_model(model)
    original_shapes = _fsdp1_original_shapes(model)
    for module_path, module in model.named_modules():
        norm = is_norm_module(module)
        clean_path = clean_parameter_name(module_path)
        for attribute, param in module.named_parameters(recurse=False):
            ndim = len(original_shapes.get(id(param), param.shape))
            if (
                norm
                or ndim <= 1
                or attribute == "bias"
                or attribute.endswith("_bias")
                or getattr(param, "_no_weight_decay", False)
                or (not isinstance(module, _WEIGHT_LAYERS) and _EXEMPT_FREE_PARAMETER.search(attribute))
                or _EXEMPT_POSITION_MODULE.search(clean_path)
                or (is_vision and _VISION_POSITION_MODULE.search(clean_path))
            ):
                exempt.add(f"{module_path}.{attribute}" if module_path else attribute)
        exempt.update(_declared_exempt_names(module_path, module))
    return exempt


def _declared_exempt_names(module_path: str, module: nn.Module) -> set[str]:
    """The parameters below ``module`` that its ``no_weight_decay()`` or ``no_weight_decay_keywords()`` lists."""
    exempt_names, exempt_keywords = _declared_exemptions(module)
    if not exempt_names and not exempt_keywords:
        return set()
    exempt = set()
    for relative, _ in module.named_parameters():
        clean = clean_parameter_name(relative)
        if (
            clean in exempt_names
            or any(fnmatch.fnmatchcase(clean, pattern) for pattern in exempt_names)
            or any(keyword in clean for keyword in exempt_keywords)
        ):
            exempt.add(f"{module_path}.{relative}" if module_path else relative)
    return exempt


def _declared_exemptions(module: nn.Module) -> tuple[set[str], set[str]]:
    names: set[str] = set()
    keywords: set[str] = set()
    declared = getattr(type(module), "no_weight_decay", None)
    if callable(declared):
        names = set(module.no_weight_decay())
    declared_keywords = getattr(type(module), "no_weight_decay_keywords", None)
    if callable(declared_keywords):
        keywords = set(module.no_weight_decay_keywords())
    return names, keywords


def _fsdp1_original_shapes(model: nn.Module) -> dict[int, tuple[int, ...]]:
    """Under FSDP1 with ``use_orig_params=True`` each parameter is a 1-D slice of its shard; the flat
    parameter keeps the original shapes."""
    shapes: dict[int, tuple[int, ...]] = {}
    for module in model.modules():
        flat = getattr(getattr(module, "_handle", None), "flat_param", None)
        if flat is not None and getattr(flat, "_params", None) is not None:
            for param, shape in zip(flat._params, flat._shapes):
                shapes[id(param)] = tuple(shape)
    return shapes


def _is_vision_model(model: nn.Module) -> bool:
    for module in model.modules():
        main_input = getattr(module, "main_input_name", None)
        if isinstance(main_input, str):
            return main_input == "pixel_values"
        if callable(getattr(type(module), "group_matcher", None)):
            return True
    return False

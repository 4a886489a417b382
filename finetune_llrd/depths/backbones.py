"""The pretrained backbone of a dense-prediction model, and the new modules around it.

A segmentation, depth or detection model of transformers (UperNet, DPT, Mask2Former, DETR, RT-DETR, ...)
holds a backbone loaded from pretrained weights (``load_backbone`` / ``AutoBackbone``, a timm backbone)
and around it modules that are trained from scratch: a neck or pixel decoder, decode and auxiliary heads,
a detection transformer with its queries. As mmsegmentation's ``LayerDecayOptimizerConstructor`` (only
``backbone.*`` gets a layer id; decode head, auxiliary head and neck take the base rate) and detectron2's
ViTDet ``get_vit_lr_decay_rate`` (the simple feature pyramid and the heads at the base rate) do, only the
backbone gets depths; everything outside it sits at the head depth.
"""

from __future__ import annotations

from torch import nn


# Attribute names under which models keep their pretrained backbone.
BACKBONE_ATTRIBUTE_NAMES = ("backbone", "timm_backbone")
# Dense-prediction model classes whose vision encoder is the backbone when no module is named so (SAM).
DENSE_TASK_SUFFIXES = (
    "ForSemanticSegmentation",
    "ForDepthEstimation",
    "ForObjectDetection",
    "ForUniversalSegmentation",
    "ForInstanceSegmentation",
    "ForMaskGeneration",
)
DENSE_TASK_ENCODER_NAMES = ("vision_encoder", "image_encoder")
# SamModel and its kin are the mask-generation models of transformers, though not named ``*ForMaskGeneration``.
MASK_DECODER_NAME = "mask_decoder"


def is_backbone_class(module: nn.Module) -> bool:
    """Whether ``module`` is a transformers backbone (``AutoBackbone``, ``load_backbone``, ``TimmBackbone``):
    a subclass of ``BackboneMixin``, recognised by name so that the check does not depend on where a
    transformers release defines it."""
    return any(cls.__name__ == "BackboneMixin" for cls in type(module).__mro__)


def find_backbone(modules: dict[str, nn.Module], size: dict[str, int]) -> str | None:
    """The path of the pretrained backbone of a model, or None for a model without one.

    In order: a transformers backbone (``BackboneMixin``), else a module named ``backbone`` or
    ``timm_backbone``, else, in a dense-prediction model (``*ForSemanticSegmentation``, ``*ForDepthEstimation``,
    ``*ForObjectDetection``, ``*ForUniversalSegmentation``, ``*ForInstanceSegmentation``,
    ``*ForMaskGeneration``, or a model with a ``mask_decoder`` such as SAM), its ``vision_encoder`` or
    ``image_encoder``. Among several, the outermost and
    then the largest. A backbone inside an embedding (the CNN stem of a hybrid ViT, DPT-hybrid's
    ``dpt.embeddings.backbone``) is part of that embedding, not the model's backbone.
    Dense-prediction models without such a module (BEiT, Segformer, DPT on a ViT) keep their encoder as the
    transformers base model, and everything outside the base model is already the head.

    Args:
        modules: ``dict(model.named_modules())``.
        size: module path -> number of parameter elements below it.

    Returns:
        The backbone's module path, or None.
    """
    root = modules.get("")
    dense_task = root is not None and (
        type(root).__name__.endswith(DENSE_TASK_SUFFIXES)
        or isinstance(getattr(root, MASK_DECODER_NAME, None), nn.Module)
    )
    for is_candidate in (
        lambda path, module: is_backbone_class(module),
        lambda path, module: path.rsplit(".", 1)[-1] in BACKBONE_ATTRIBUTE_NAMES,
        lambda path, module: dense_task and path.rsplit(".", 1)[-1] in DENSE_TASK_ENCODER_NAMES,
    ):
        candidates = [
            path
            for path, module in modules.items()
            if path and size.get(path, 0) > 0 and not _inside_embedding(path) and is_candidate(path, module)
        ]
        outermost = [path for path in candidates if not any(_is_strictly_below(path, other) for other in candidates)]
        if outermost:
            return max(outermost, key=lambda path: size.get(path, 0))
    return None


def new_modules_around(backbone: str, modules: dict[str, nn.Module], size: dict[str, int]) -> list[str]:
    """The modules with parameters outside the backbone, each the largest such module (``decode_head``,
    ``neck``, ``model.encoder`` of a DETR), level by level from the root, each level in registration order.

    Args:
        backbone: the backbone's path.
        modules: ``dict(model.named_modules())``.
        size: module path -> number of parameter elements below it.

    Returns:
        Module paths; a parameter held directly by an ancestor of the backbone (DETR's query embeddings are
        modules, CLIP-style scalars are not) is listed by its own module's path.
    """
    parts = backbone.split(".")
    ancestors = [".".join(parts[:cut]) for cut in range(len(parts))]
    found = []
    for ancestor in ancestors:
        for child_name, _ in modules[ancestor].named_children():
            path = f"{ancestor}.{child_name}" if ancestor else child_name
            if path in ancestors or path == backbone or size.get(path, 0) == 0:
                continue
            found.append(path)
    return found


def _inside_embedding(path: str) -> bool:
    return any("embed" in part for part in path.split(".")[:-1])


def _is_strictly_below(path: str, ancestor: str) -> bool:
    return path != ancestor and path.startswith(ancestor + ".")

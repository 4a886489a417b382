"""Model in, depths out: which depth (0 = embeddings, 1..L = blocks, L+1 = head) every parameter sits at.

Imports torch alone: nothing here loads transformers' Trainer, accelerate or datasets.

* :mod:`.layer_maps`: :class:`LayerMap` and :func:`layer_map`, which tries a user's mapping, then timm's
  ``group_matcher`` (:mod:`.timm_matcher`), then the model's block stacks (:mod:`.block_stacks`);
* :mod:`.block_stacks`: the structural search for repeated blocks, and where everything else goes;
* :mod:`.backbones`: the pretrained backbone of a dense-prediction model and the new modules around it;
* :mod:`.towers`: parallel stacks (CLIP, vision-language models) numbered side by side;
* :mod:`.modules`: parameter names of wrapped models, and which modules are norms.
"""

from .block_stacks import base_model_path
from .layer_maps import (
    LAYER_GROUPINGS,
    LayerMap,
    LayerMapError,
    LayerMapping,
    layer_map,
    layer_map_of_wrapper,
    parse_layer_mapping,
    validate_layer_grouping,
)
from .modules import clean_parameter_name, is_norm_module
from .towers import TOWER_OPTIONS, Tower, Towers, parse_layer_towers, tower_block_depth, validate_towers


__all__ = [
    "LAYER_GROUPINGS",
    "TOWER_OPTIONS",
    "LayerMap",
    "LayerMapError",
    "LayerMapping",
    "Tower",
    "Towers",
    "base_model_path",
    "clean_parameter_name",
    "is_norm_module",
    "layer_map",
    "layer_map_of_wrapper",
    "parse_layer_mapping",
    "parse_layer_towers",
    "tower_block_depth",
    "validate_layer_grouping",
    "validate_towers",
]

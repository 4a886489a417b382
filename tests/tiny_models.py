"""Tiny real models built from configs (no download), shared by the tests."""

from __future__ import annotations

import contextlib
import os
import warnings

import torch
import transformers
from transformers import AutoConfig


transformers.logging.set_verbosity_error()
warnings.filterwarnings("ignore", message=".*was not found in model.*")

TEXT = "text"
VISION = "vision"

# model_type -> (kind, config overrides). Sizes are small but keep each architecture's structure.
_TEXT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37)
_DECODER = dict(_TEXT, num_key_value_heads=2, pad_token_id=0, max_position_embeddings=64)
_VIT = dict(
    image_size=32,
    patch_size=8,
    num_channels=3,
    hidden_size=32,
    num_hidden_layers=3,
    num_attention_heads=4,
    intermediate_size=37,
)

ARCHITECTURES: dict[str, tuple[str, dict]] = {
    "bert": (TEXT, _TEXT),
    "roberta": (TEXT, dict(_TEXT, pad_token_id=1)),
    "xlm-roberta": (TEXT, dict(_TEXT, pad_token_id=1)),
    "deberta-v2": (
        TEXT,
        dict(
            _TEXT, relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm", pos_att_type=["p2c", "c2p"]
        ),
    ),
    "electra": (TEXT, dict(_TEXT, embedding_size=16)),
    "albert": (TEXT, dict(_TEXT, embedding_size=16, num_hidden_groups=1, inner_group_num=1)),
    "distilbert": (TEXT, dict(vocab_size=99, dim=32, n_layers=3, n_heads=4, hidden_dim=37)),
    "mpnet": (TEXT, dict(_TEXT, pad_token_id=1)),
    "modernbert": (TEXT, dict(_TEXT, pad_token_id=0, global_attn_every_n_layers=2, local_attention=16)),
    "gpt2": (TEXT, dict(vocab_size=99, n_embd=32, n_layer=3, n_head=4, n_positions=64, pad_token_id=0)),
    "llama": (TEXT, _DECODER),
    "mistral": (TEXT, _DECODER),
    "qwen2": (TEXT, _DECODER),
    "qwen3": (TEXT, dict(_DECODER, head_dim=8)),
    "gemma": (TEXT, dict(_DECODER, head_dim=8)),
    "phi": (TEXT, dict(_TEXT, pad_token_id=0, max_position_embeddings=64)),
    "t5": (
        TEXT,
        dict(
            vocab_size=99,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=3,
            num_decoder_layers=2,
            num_heads=4,
            decoder_start_token_id=0,
        ),
    ),
    "bart": (
        TEXT,
        dict(
            vocab_size=99,
            d_model=32,
            encoder_layers=3,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            max_position_embeddings=64,
        ),
    ),
    "vit": (VISION, _VIT),
    "deit": (VISION, _VIT),
    "beit": (VISION, dict(_VIT, use_mask_token=True, use_relative_position_bias=True, layer_scale_init_value=0.1)),
    "dinov2": (VISION, dict(_VIT, layerscale_value=0.1)),
    "swin": (
        VISION,
        dict(
            image_size=32, patch_size=4, num_channels=3, embed_dim=16, depths=[1, 2], num_heads=[2, 4], window_size=2
        ),
    ),
    "convnext": (VISION, dict(image_size=32, num_channels=3, num_stages=2, hidden_sizes=[8, 16], depths=[1, 2])),
    "resnet": (
        VISION,
        dict(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2], layer_type="basic"),
    ),
    "clip": (
        VISION,
        dict(
            vision_config=dict(
                image_size=32,
                patch_size=8,
                hidden_size=32,
                num_hidden_layers=3,
                num_attention_heads=4,
                intermediate_size=37,
            ),
            text_config=dict(
                vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37
            ),
        ),
    ),
}

# The towers of the tiny multi-modal models (LLaVA, Idefics3, BLIP-2, ...): a 4-block vision tower and a 2-block Llama.
TOWER_VISION = dict(
    image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37
)
TOWER_LLAMA = dict(
    model_type="llama",
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=37,
    max_position_embeddings=64,
    pad_token_id=0,
)

# The tiny detection models (tests/test_dense_heads.py, tests/test_recipes_detection.py): a 4-stage transformers
# ResNet, RF-DETR's windowed DINOv2 (4 blocks of hidden 32) and its deformable decoder with 2 query groups.
RESNET = dict(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1], layer_type="basic")
RF_DETR_BACKBONE = dict(
    model_type="rf_detr_dinov2",
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    image_size=56,
    out_indices=[1, 2, 3, 4],
    window_block_indexes=[0, 2],
    num_windows=2,
)
QUERY_DETR_DECODER = dict(
    group_detr=2,
    d_model=32,
    decoder_layers=2,
    decoder_ffn_dim=32,
    decoder_self_attention_heads=2,
    decoder_cross_attention_heads=2,
)

# The number of blocks L each tiny model must have.
EXPECTED_NUM_LAYERS = dict.fromkeys(ARCHITECTURES, 3)
EXPECTED_NUM_LAYERS.update({"albert": 1, "t5": 5, "bart": 5, "swin": 3, "convnext": 3, "resnet": 3})


def tiny_config(model_type: str, num_labels: int = 3, **overrides):
    """The tiny config of one architecture of ``ARCHITECTURES``."""
    _, settings = ARCHITECTURES[model_type]
    return AutoConfig.for_model(model_type, num_labels=num_labels, **{**settings, **overrides})


def tiny_model(model_type: str, num_labels: int = 3, seed: int = 0, **overrides):
    """A freshly initialised tiny classification model (sequence or image classification)."""
    kind, _ = ARCHITECTURES[model_type]
    config = tiny_config(model_type, num_labels=num_labels, **overrides)
    torch.manual_seed(seed)
    auto = (
        transformers.AutoModelForImageClassification
        if kind == VISION
        else transformers.AutoModelForSequenceClassification
    )
    return model_class_for(auto, config)(config)


def model_class_for(auto_class, config):
    """The class ``auto_class`` maps ``config`` to; for a pair (DeiT, LeViT: with/without teacher) the first."""
    model_class = auto_class._model_mapping[type(config)]
    return model_class[0] if isinstance(model_class, (tuple, list)) else model_class


def build_shrunk(model_type: str, auto_class, device: str = "meta"):
    """Shrinks the default config of any model type and builds it on ``device``; None if it cannot be built."""
    for shrink in (True, False):
        try:
            config = AutoConfig.for_model(model_type)
            if shrink:
                _shrink(config)
            with torch.device(device), contextlib.redirect_stderr(open(os.devnull, "w")):
                return model_class_for(auto_class, config)(config)
        except Exception:  # noqa: BLE001 - some model types need extra packages or special configs
            continue
    return None


def _shrink(config) -> None:
    for sub in ("text_config", "vision_config", "encoder", "decoder"):
        nested = getattr(config, sub, None)
        if nested is not None and hasattr(nested, "to_dict"):
            _shrink(nested)
    small = {
        "hidden_size": 64,
        "d_model": 64,
        "n_embd": 64,
        "dim": 64,
        "embed_dim": 16,
        "num_hidden_layers": 3,
        "num_layers": 3,
        "n_layer": 3,
        "n_layers": 3,
        "encoder_layers": 3,
        "decoder_layers": 2,
        "num_attention_heads": 4,
        "n_head": 4,
        "n_heads": 4,
        "encoder_attention_heads": 4,
        "decoder_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 96,
        "ffn_dim": 96,
        "encoder_ffn_dim": 96,
        "decoder_ffn_dim": 96,
        "d_ff": 96,
        "n_inner": 96,
        "hidden_dim": 96,
        "head_dim": 16,
        "num_experts": 4,
        "num_local_experts": 4,
    }
    for key, value in small.items():
        if key in ("num_layers",) and isinstance(getattr(config, "depths", None), (list, tuple)):
            continue
        if isinstance(getattr(config, key, None), int) and not isinstance(getattr(config, key), bool):
            with contextlib.suppress(Exception):  # read-only attribute maps
                setattr(config, key, value)


def names_at(layers, depth: int) -> list[str]:
    """The parameter names a LayerMap puts at one depth, in registration order."""
    return [name for name, d in layers.depths.items() if d == depth]

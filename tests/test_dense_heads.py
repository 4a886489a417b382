"""Exact depth maps of dense-prediction models (a pretrained backbone and new modules around it),
built tiny from configs on the meta device (no memory, no weights)."""

from __future__ import annotations

import pytest
import torch
import transformers
from tiny_models import QUERY_DETR_DECODER, RESNET, RF_DETR_BACKBONE, TOWER_LLAMA, TOWER_VISION

from finetune_llrd import LayerwiseRates, layer_map, param_groups
from finetune_llrd.depths import layer_map_of_wrapper, tower_block_depth
from finetune_llrd.diagnostics import depth_learning_rate_logs
from finetune_llrd.groups import format_lr_table, lr_table


transformers.logging.set_verbosity_error()

_SWIN = dict(
    image_size=32,
    patch_size=4,
    embed_dim=16,
    depths=[1, 2, 1, 1],
    num_heads=[2, 2, 2, 2],
    window_size=2,
    out_features=["stage1", "stage2", "stage3", "stage4"],
)
_DETR_HEAD = dict(
    d_model=16,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=32,
    decoder_ffn_dim=32,
    num_queries=5,
    num_labels=3,
)
_DETR = dict(use_timm_backbone=False, use_pretrained_backbone=False, **_DETR_HEAD)

# RF-DETR / LW-DETR: a windowed ViT backbone under a projector and a deformable decoder with query groups.
_QUERY_DETR = dict(num_labels=3, num_queries=5, **QUERY_DETR_DECODER)
# RT-DETR / D-FINE: a hybrid encoder over a CNN's feature maps and a decoder of queries.
_HYBRID_DETR = dict(
    d_model=16,
    encoder_hidden_dim=16,
    encoder_layers=1,
    decoder_layers=2,
    num_queries=5,
    num_labels=3,
    encoder_ffn_dim=32,
    decoder_ffn_dim=32,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
)


def _upernet(backbone_config, in_channels):
    return transformers.UperNetForSemanticSegmentation, transformers.UperNetConfig(
        backbone_config=backbone_config,
        hidden_size=16,
        auxiliary_in_channels=in_channels,
        auxiliary_channels=8,
        num_labels=3,
    )


def _build(name):
    t = transformers
    if name == "upernet-convnext":
        return _upernet(
            t.ConvNextConfig(
                num_stages=4,
                hidden_sizes=[8, 16, 24, 32],
                depths=[1, 1, 2, 1],
                out_features=["stage1", "stage2", "stage3", "stage4"],
            ),
            24,
        )
    if name == "upernet-swin":
        return _upernet(t.SwinConfig(**_SWIN), 64)
    if name == "upernet-beit":
        return _upernet(
            t.BeitConfig(
                image_size=32,
                patch_size=8,
                hidden_size=32,
                num_hidden_layers=4,
                num_attention_heads=4,
                intermediate_size=37,
                out_indices=[1, 2, 3, 4],
                add_fpn=True,
                use_relative_position_bias=True,
            ),
            32,
        )
    if name == "dpt-dinov2":
        return t.DPTForDepthEstimation, t.DPTConfig(
            backbone_config=t.Dinov2Config(
                image_size=32,
                patch_size=8,
                hidden_size=32,
                num_hidden_layers=4,
                num_attention_heads=4,
                intermediate_size=37,
                out_features=["stage1", "stage2", "stage3", "stage4"],
                reshape_hidden_states=False,
            ),
            neck_hidden_sizes=[8, 16, 24, 32],
            fusion_hidden_size=16,
            hidden_size=32,
        )
    if name == "dpt-hybrid":
        return t.DPTForDepthEstimation, t.DPTConfig(
            is_hybrid=True,
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=37,
            backbone_featmap_shape=[1, 64, 2, 2],
            neck_hidden_sizes=[8, 16, 24, 32],
            fusion_hidden_size=16,
            backbone_config=t.BitConfig(
                global_padding="same",
                layer_type="bottleneck",
                depths=[1, 1, 1],
                embedding_size=8,
                hidden_sizes=[16, 32, 64],
                num_groups=2,
                embedding_dynamic_padding=True,
                out_features=["stage1", "stage2", "stage3"],
            ),
        )
    if name == "mask2former-swin":
        return t.Mask2FormerForUniversalSegmentation, t.Mask2FormerConfig(
            backbone_config=t.SwinConfig(**_SWIN),
            hidden_dim=32,
            feature_size=32,
            mask_feature_size=32,
            encoder_layers=2,
            decoder_layers=3,
            num_queries=5,
            encoder_feedforward_dim=32,
            dim_feedforward=32,
            num_attention_heads=2,
            num_labels=3,
        )
    if name == "detr":
        return t.DetrForObjectDetection, t.DetrConfig(
            backbone_config=t.ResNetConfig(**RESNET, out_features=["stage4"]), **_DETR
        )
    if name == "conditional-detr":
        return t.ConditionalDetrForObjectDetection, t.ConditionalDetrConfig(
            backbone_config=t.ResNetConfig(**RESNET, out_features=["stage4"]), **_DETR
        )
    if name == "rt-detr":
        return t.RTDetrForObjectDetection, t.RTDetrConfig(
            **_HYBRID_DETR,
            encoder_in_channels=[16, 24, 32],
            backbone_config=t.RTDetrResNetConfig(**RESNET, out_features=["stage2", "stage3", "stage4"]),
        )
    if name == "rf-detr":
        return t.RfDetrForObjectDetection, t.RfDetrConfig(
            backbone_config=dict(RF_DETR_BACKBONE),
            **_QUERY_DETR,
        )
    if name == "lw-detr":
        return t.LwDetrForObjectDetection, t.LwDetrConfig(
            backbone_config=t.LwDetrViTConfig(
                hidden_size=32,
                num_hidden_layers=4,
                num_attention_heads=2,
                mlp_ratio=2,
                image_size=64,
                patch_size=16,
                out_indices=[1, 2, 3, 4],
                window_block_indices=[0, 2],
                num_windows=4,
            ),
            **_QUERY_DETR,
        )
    if name == "d-fine":
        return t.DFineForObjectDetection, t.DFineConfig(
            **_HYBRID_DETR,
            encoder_in_channels=[32, 48, 64],
            backbone_config=t.HGNetV2Config(
                stem_channels=[3, 8, 8],
                stage_in_channels=[8, 16, 32, 48],
                stage_mid_channels=[8, 8, 16, 16],
                stage_out_channels=[16, 32, 48, 64],
                stage_num_blocks=[1, 1, 2, 1],
                stage_numb_of_layers=[2, 2, 2, 2],
                hidden_sizes=[16, 32, 48, 64],
                out_features=["stage2", "stage3", "stage4"],
            ),
        )
    if name == "segformer":
        return t.SegformerForSemanticSegmentation, t.SegformerConfig(
            num_encoder_blocks=2,
            depths=[1, 2],
            sr_ratios=[2, 1],
            hidden_sizes=[8, 16],
            num_attention_heads=[1, 2],
            decoder_hidden_size=16,
            num_labels=3,
        )
    if name == "beit-segmentation":
        return t.BeitForSemanticSegmentation, t.BeitConfig(
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=37,
            out_indices=[0, 1, 2, 3],
            use_relative_position_bias=True,
            auxiliary_channels=8,
            num_labels=3,
        )
    if name == "sam":
        return t.SamModel, t.SamConfig(
            vision_config=dict(
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                output_channels=16,
                image_size=64,
                patch_size=16,
                mlp_dim=32,
                global_attn_indexes=[1],
            ),
            prompt_encoder_config=dict(hidden_size=16),
            mask_decoder_config=dict(
                hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16
            ),
        )
    raise KeyError(name)


def build_meta(name):
    """A tiny model of one of the configurations above, every parameter on the meta device."""
    model_class, config = _build(name)
    with torch.device("meta"):
        return model_class(config)


def depth_by_prefix(names, prefixes: dict[str, int]) -> dict[str, int]:
    """Each name's depth from the longest prefix (a module path or a parameter name) that covers it."""
    depths = {}
    for name in names:
        covering = [p for p in prefixes if name == p or name.startswith(p + ".")]
        assert covering, f"no expected depth covers {name}"
        depths[name] = prefixes[max(covering, key=len)]
    return depths


# name -> (L, backbone, {module path or parameter name: depth}); the longest covering path wins.
BACKBONE_MAPS = {
    # mmsegmentation's ConvNeXt UperNet: only backbone.* gets depths; the stage's downsampling joins its
    # first block; the per-stage output norms, decode head and auxiliary head are new: head (L + 1 = 6).
    "upernet-convnext": (
        5,
        "backbone",
        {
            "backbone.embeddings": 0,
            "backbone.encoder.stages.0": 1,
            "backbone.encoder.stages.1": 2,
            "backbone.encoder.stages.2": 3,
            "backbone.encoder.stages.2.layers.1": 4,
            "backbone.encoder.stages.3": 5,
            "backbone.hidden_states_norms": 6,
            "decode_head": 6,
            "auxiliary_head": 6,
        },
    ),
    # Swin's patch merging closes a stage and joins the first block of the next (as timm groups it).
    "upernet-swin": (
        5,
        "backbone",
        {
            "backbone.swin.embeddings": 0,
            "backbone.swin.encoder.layers.0": 1,
            "backbone.swin.encoder.layers.0.downsample": 2,
            "backbone.swin.encoder.layers.1.blocks.0": 2,
            "backbone.swin.encoder.layers.1.blocks.1": 3,
            "backbone.swin.encoder.layers.1.downsample": 4,
            "backbone.swin.encoder.layers.2": 4,
            "backbone.swin.encoder.layers.2.downsample": 5,
            "backbone.swin.encoder.layers.3": 5,
            "backbone.swin.layernorm": 6,
            "backbone.hidden_states_norms": 6,
            "decode_head": 6,
            "auxiliary_head": 6,
        },
    ),
    # mmsegmentation's BEiT UperNet: the backbone's feature pyramid (fpn1-4) is new, like the heads.
    "upernet-beit": (
        4,
        "backbone",
        {
            "backbone.beit.embeddings": 0,
            **{f"backbone.beit.layers.{i}": i + 1 for i in range(4)},
            "backbone.fpn": 5,
            "decode_head": 5,
            "auxiliary_head": 5,
        },
    ),
    # The DINOv2 backbone's 4 blocks are L; the reassemble and fusion stages of the neck are new.
    "dpt-dinov2": (
        4,
        "backbone",
        {
            "backbone.embeddings": 0,
            **{f"backbone.encoder.layer.{i}": i + 1 for i in range(4)},
            "backbone.layernorm": 5,
            "neck": 5,
            "head": 5,
        },
    ),
    # DPT-hybrid: the BiT CNN is the ViT's patch embedding (timm puts a hybrid's patch_embed.backbone in its
    # stem group), so the ViT's blocks are the depths; the neck and head are outside the base model.
    "dpt-hybrid": (
        4,
        None,
        {
            "dpt.embeddings": 0,
            **{f"dpt.encoder.layer.{i}": i + 1 for i in range(4)},
            "dpt.layernorm": 5,
            "neck": 5,
            "head": 5,
        },
    ),
    # The Swin backbone of the pixel-level module; pixel decoder, transformer decoder and queries are new.
    "mask2former-swin": (
        5,
        "model.pixel_level_module.encoder",
        {
            "model.pixel_level_module.encoder.swin.embeddings": 0,
            "model.pixel_level_module.encoder.swin.encoder.layers.0": 1,
            "model.pixel_level_module.encoder.swin.encoder.layers.0.downsample": 2,
            "model.pixel_level_module.encoder.swin.encoder.layers.1.blocks.0": 2,
            "model.pixel_level_module.encoder.swin.encoder.layers.1.blocks.1": 3,
            "model.pixel_level_module.encoder.swin.encoder.layers.1.downsample": 4,
            "model.pixel_level_module.encoder.swin.encoder.layers.2": 4,
            "model.pixel_level_module.encoder.swin.encoder.layers.2.downsample": 5,
            "model.pixel_level_module.encoder.swin.encoder.layers.3": 5,
            "model.pixel_level_module.encoder.swin.layernorm": 6,
            "model.pixel_level_module.encoder.hidden_states_norms": 6,
            "model.pixel_level_module.decoder": 6,
            "model.transformer_module": 6,
            "class_predictor": 6,
        },
    ),
    # The ResNet backbone (which DETR freezes); the detection transformer, its queries and the box heads
    # are at the head.
    "detr": (
        5,
        "model.backbone.model",
        {
            "model.backbone.model.embedder": 0,
            "model.backbone.model.encoder.stages.0": 1,
            "model.backbone.model.encoder.stages.1": 2,
            "model.backbone.model.encoder.stages.2": 3,
            "model.backbone.model.encoder.stages.2.layers.1": 4,
            "model.backbone.model.encoder.stages.3": 5,
            "model": 6,
            "class_labels_classifier": 6,
            "bbox_predictor": 6,
        },
    ),
    "conditional-detr": (
        5,
        "model.backbone.model",
        {
            "model.backbone.model.embedder": 0,
            "model.backbone.model.encoder.stages.0": 1,
            "model.backbone.model.encoder.stages.1": 2,
            "model.backbone.model.encoder.stages.2": 3,
            "model.backbone.model.encoder.stages.2.layers.1": 4,
            "model.backbone.model.encoder.stages.3": 5,
            "model": 6,
            "class_labels_classifier": 6,
            "bbox_predictor": 6,
        },
    ),
    # RT-DETR's ResNet-D stem (three convolutions in ``embedder``) is depth 0, not three blocks.
    "rt-detr": (
        5,
        "model.backbone.model",
        {
            "model.backbone.model.embedder": 0,
            "model.backbone.model.encoder.stages.0": 1,
            "model.backbone.model.encoder.stages.1": 2,
            "model.backbone.model.encoder.stages.2": 3,
            "model.backbone.model.encoder.stages.2.layers.1": 4,
            "model.backbone.model.encoder.stages.3": 5,
            "model": 6,
        },
    ),
    # RF-DETR (RfDetrDinov2 blocks, DINOv2's names): the ViT's embeddings at 0, its blocks 1..L; its final norm,
    # the projector (inside ``model.backbone`` but new), queries, decoder, two-stage heads and box heads at the
    # head (L + 1), as RF-DETR's own ``get_param_dict`` puts everything outside the ViT at the component rates.
    "rf-detr": (
        4,
        "model.backbone.backbone",
        {
            "model.backbone.backbone.embeddings": 0,
            "model.backbone.backbone.encoder.layer.0": 1,
            "model.backbone.backbone.encoder.layer.1": 2,
            "model.backbone.backbone.encoder.layer.2": 3,
            "model.backbone.backbone.encoder.layer.3": 4,
            "model.backbone.backbone.layernorm": 5,
            "model.backbone.projector": 5,
            "model": 5,
            "class_embed": 5,
            "bbox_embed": 5,
        },
    ),
    # LW-DETR: the same around its own ViT (no final norm; gamma_1 / gamma_2 layer scales with their block).
    "lw-detr": (
        4,
        "model.backbone.backbone",
        {
            "model.backbone.backbone.embeddings": 0,
            "model.backbone.backbone.encoder.layer.0": 1,
            "model.backbone.backbone.encoder.layer.1": 2,
            "model.backbone.backbone.encoder.layer.2": 3,
            "model.backbone.backbone.encoder.layer.3": 4,
            "model": 5,
            "class_embed": 5,
            "bbox_embed": 5,
        },
    ),
    # D-FINE's HGNetV2: the stem at 0, one depth a block, a stage's downsampling with its first block; the
    # hybrid encoder, the decoder and its heads at the head.
    "d-fine": (
        5,
        "model.backbone.model",
        {
            "model.backbone.model.embedder": 0,
            "model.backbone.model.encoder.stages.0": 1,
            "model.backbone.model.encoder.stages.1": 2,
            "model.backbone.model.encoder.stages.2": 3,
            "model.backbone.model.encoder.stages.2.blocks.1": 4,
            "model.backbone.model.encoder.stages.3": 5,
            "model": 6,
        },
    ),
    # No backbone module: the base model (the Mix Transformer) is the encoder, the decode head is outside it.
    # A stage's overlapping patch embedding joins its first block; its closing norm joins the next stage's
    # first block, the last stage's stays with the last block.
    "segformer": (
        3,
        None,
        {
            "segformer.stages.0.patch_embeddings": 1,
            "segformer.stages.0.blocks.0": 1,
            "segformer.stages.0.layer_norm": 2,
            "segformer.stages.1.patch_embeddings": 2,
            "segformer.stages.1.blocks.0": 2,
            "segformer.stages.1.blocks.1": 3,
            "segformer.stages.1.layer_norm": 3,
            "decode_head": 4,
        },
    ),
    # BEiT's own segmentation model: its base model is the encoder; fpn1-4 and both heads are outside it.
    "beit-segmentation": (
        4,
        None,
        {
            "beit.embeddings": 0,
            **{f"beit.layers.{i}": i + 1 for i in range(4)},
            "fpn": 5,
            "decode_head": 5,
            "auxiliary_head": 5,
        },
    ),
    # SAM: the vision encoder (with its neck, which closes it) is the pretrained backbone; the prompt
    # encoder and mask decoder are at the head, as mask-decoder fine-tuning trains them.
    "sam": (
        2,
        "vision_encoder",
        {
            "vision_encoder.pos_embed": 0,
            "vision_encoder.patch_embed": 0,
            "vision_encoder.layers.0": 1,
            "vision_encoder.layers.1": 2,
            "vision_encoder.neck": 3,
            "shared_image_embedding": 3,
            "prompt_encoder": 3,
            "mask_decoder": 3,
        },
    ),
}


@pytest.mark.parametrize("name", sorted(BACKBONE_MAPS))
def test_backbone_depths_exact(name):
    model = build_meta(name)
    num_layers, backbone, prefixes = BACKBONE_MAPS[name]
    layers = layer_map(model, include_frozen=True)
    names = [parameter_name for parameter_name, _ in model.named_parameters()]
    assert layers.backbone == backbone
    assert layers.num_layers == num_layers
    assert layers.depths == depth_by_prefix(names, prefixes)
    for prefix in prefixes:
        assert any(n == prefix or n.startswith(prefix + ".") for n in names), f"{prefix} covers no parameter"


@pytest.mark.parametrize(
    "name, new_modules",
    [
        ("upernet-beit", ("decode_head", "auxiliary_head")),
        ("mask2former-swin", ("class_predictor", "model.transformer_module", "model.pixel_level_module.decoder")),
        (
            "detr",
            (
                "class_labels_classifier",
                "bbox_predictor",
                "model.query_position_embeddings",
                "model.input_projection",
                "model.encoder",
                "model.decoder",
            ),
        ),
        ("sam", ("shared_image_embedding", "prompt_encoder", "mask_decoder")),
        ("segformer", ()),
    ],
)
def test_the_new_modules_around_a_backbone_are_named(name, new_modules):
    assert layer_map(build_meta(name), include_frozen=True).new_modules == new_modules


@pytest.mark.parametrize("name", sorted(BACKBONE_MAPS))
def test_every_trainable_parameter_in_exactly_one_group(name):
    model = build_meta(name)
    groups = param_groups(model, lr=1e-3, layer_decay=0.8, weight_decay=0.05)
    grouped = [id(p) for group in groups for p in group["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters() if p.requires_grad}


def test_new_modules_train_at_the_head_rate():
    model = build_meta("upernet-convnext")
    groups = param_groups(model, lr=1e-3, layer_decay=0.9)
    rate = {name: group["lr"] for group in groups for name in group["param_names"]}
    assert rate["decode_head.fpn_convs.0.conv.weight"] == 1e-3
    assert rate["auxiliary_head.classifier.weight"] == 1e-3
    assert rate["backbone.encoder.stages.3.layers.0.pwconv1.weight"] == pytest.approx(1e-3 * 0.9)
    assert rate["backbone.embeddings.patch_embeddings.weight"] == pytest.approx(1e-3 * 0.9**6)


def test_lr_table_shows_the_backbone_boundary():
    model = build_meta("dpt-dinov2")
    layers = layer_map(model)
    assert layers.new_modules == ("neck", "head")
    rows = lr_table(param_groups(model, lr=1e-3, layer_decay=0.9, layers=layers), layers)
    assert [row["block"] for row in rows] == [
        "embeddings",
        *(f"backbone.encoder.layer.{i}" for i in range(4)),
        "head (new: neck, head)",
    ]
    assert "head (new: neck, head)" in format_lr_table(rows)


def test_a_detection_transformer_gets_its_own_depth_by_mapping():
    """DETR fine-tuned from detection weights: the transformer is pretrained, so a user mapping puts it at
    the top block's depth (README, "How depths are found"), below the freshly initialised box heads."""
    model = build_meta("detr")
    for param in model.parameters():
        param.requires_grad_(True)
    layers = layer_map(model, mapping={r"^model\.(input_projection|query_position_embeddings|encoder|decoder)\.": 5})
    assert layers.method == "user_mapping+block_stack"
    assert layers.depths["model.encoder.layers.0.self_attn.k_proj.weight"] == 5
    assert layers.depths["model.query_position_embeddings.weight"] == 5
    assert layers.depths["class_labels_classifier.weight"] == 6
    assert layers.depths["model.backbone.model.encoder.stages.3.layers.0.layer.0.convolution.weight"] == 5


# --------------------------------------------------------------------------------------------------
# Towers: CLIP-style dual encoders, BLIP-2, vision-language models; encoder-decoders in series unless asked
# --------------------------------------------------------------------------------------------------

_V = TOWER_VISION
_T = dict(vocab_size=99, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37)
_LLAMA = TOWER_LLAMA
_SEQ2SEQ = dict(
    vocab_size=99,
    d_model=32,
    encoder_layers=3,
    decoder_layers=2,
    encoder_attention_heads=4,
    decoder_attention_heads=4,
    encoder_ffn_dim=37,
    decoder_ffn_dim=37,
)


def _build_towers(name):
    t = transformers
    if name == "clip":
        return t.CLIPModel, t.CLIPConfig(vision_config=_V, text_config=_T, projection_dim=16)
    if name == "clip-uneven":
        return t.CLIPModel, t.CLIPConfig(
            vision_config=_V, text_config=dict(_T, num_hidden_layers=2), projection_dim=16
        )
    if name == "siglip":
        return t.SiglipModel, t.SiglipConfig(vision_config=_V, text_config=dict(_T, max_position_embeddings=16))
    if name == "align":
        return t.AlignModel, t.AlignConfig(
            text_config=_T,
            vision_config=dict(image_size=32, width_coefficient=0.1, depth_coefficient=0.1, hidden_dim=64),
            projection_dim=32,
        )
    if name == "blip-2":
        return t.Blip2ForConditionalGeneration, t.Blip2Config(
            vision_config=_V,
            qformer_config=dict(
                vocab_size=99,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=37,
                encoder_hidden_size=32,
            ),
            text_config=dict(
                model_type="opt",
                vocab_size=99,
                hidden_size=32,
                num_hidden_layers=3,
                num_attention_heads=4,
                ffn_dim=37,
                word_embed_proj_dim=32,
            ),
            num_query_tokens=4,
        )
    if name == "llava":
        return t.LlavaForConditionalGeneration, t.LlavaConfig(
            vision_config=dict(model_type="clip_vision_model", **_V), text_config=_LLAMA, image_token_index=5
        )
    if name == "idefics3":
        return t.Idefics3ForConditionalGeneration, t.Idefics3Config(
            vision_config=_V, text_config=_LLAMA, scale_factor=2, image_token_id=5
        )
    if name == "smolvlm":
        return t.SmolVLMForConditionalGeneration, t.SmolVLMConfig(
            vision_config=_V, text_config=_LLAMA, scale_factor=2, image_token_id=5
        )
    if name == "t5":
        return t.T5ForConditionalGeneration, t.T5Config(
            vocab_size=99,
            d_model=32,
            d_kv=8,
            d_ff=37,
            num_layers=3,
            num_decoder_layers=2,
            num_heads=4,
            decoder_start_token_id=0,
        )
    if name == "bart":
        return t.BartForConditionalGeneration, t.BartConfig(**_SEQ2SEQ, max_position_embeddings=64)
    if name == "whisper":
        return t.WhisperForConditionalGeneration, t.WhisperConfig(
            **_SEQ2SEQ,
            num_mel_bins=8,
            max_source_positions=16,
            max_target_positions=16,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
        )
    raise KeyError(name)


def build_towers_meta(name):
    model_class, config = _build_towers(name)
    with torch.device("meta"):
        return model_class(config)


def _blocks(prefix, depths):
    return {f"{prefix}.{k}": depth for k, depth in enumerate(depths)}


# name -> (L, {tower: (path, blocks)}, {module path or parameter name: depth}).
TOWER_MAPS = {
    # Two 4-layer towers side by side: layer k of each at depth k + 1; projections and logit scale at the head.
    "clip": (
        4,
        {"text": ("text_model", 4), "vision": ("vision_model", 4)},
        {
            "logit_scale": 5,
            "text_model.embeddings": 0,
            **_blocks("text_model.encoder.layers", [1, 2, 3, 4]),
            "text_model.final_layer_norm": 5,
            "vision_model.embeddings": 0,
            "vision_model.pre_layrnorm": 0,
            **_blocks("vision_model.encoder.layers", [1, 2, 3, 4]),
            "vision_model.post_layernorm": 5,
            "visual_projection": 5,
            "text_projection": 5,
        },
    ),
    # A 2-layer text tower beside a 4-layer vision tower: its first block at 1, its last at L = 4.
    "clip-uneven": (
        4,
        {"text": ("text_model", 2), "vision": ("vision_model", 4)},
        {
            "logit_scale": 5,
            "text_model.embeddings": 0,
            **_blocks("text_model.encoder.layers", [1, 4]),
            "text_model.final_layer_norm": 5,
            "vision_model.embeddings": 0,
            "vision_model.pre_layrnorm": 0,
            **_blocks("vision_model.encoder.layers", [1, 2, 3, 4]),
            "vision_model.post_layernorm": 5,
            "visual_projection": 5,
            "text_projection": 5,
        },
    ),
    # SigLIP: each tower's pooling head closes it (head depth), as do logit scale and bias.
    "siglip": (
        4,
        {"text": ("text_model", 4), "vision": ("vision_model", 4)},
        {
            "logit_scale": 5,
            "logit_bias": 5,
            "text_model.embeddings": 0,
            **_blocks("text_model.encoder.layers", [1, 2, 3, 4]),
            "text_model.final_layer_norm": 5,
            "text_model.head": 5,
            "vision_model.embeddings": 0,
            **_blocks("vision_model.encoder.layers", [1, 2, 3, 4]),
            "vision_model.post_layernorm": 5,
            "vision_model.head": 5,
        },
    ),
    # ALIGN: a 4-layer BERT beside a 7-block EfficientNet: the text layers at 1 + round(k * 6 / 3) = 1, 3, 5, 7.
    "align": (
        7,
        {"text": ("text_model", 4), "vision": ("vision_model", 7)},
        {
            "temperature": 8,
            "text_model.embeddings": 0,
            **_blocks("text_model.encoder.layer", [1, 3, 5, 7]),
            "text_model.pooler": 8,
            "vision_model.embeddings": 0,
            **_blocks("vision_model.encoder.blocks", [1, 2, 3, 4, 5, 6, 7]),
            "text_projection": 8,
        },
    ),
    # BLIP-2: vision tower, Q-Former and language model are three towers; the query tokens and the Q-Former's
    # input norm are embeddings, the language projection is new (head); the OPT LM head is tied to its
    # embeddings (depth 0).
    "blip-2": (
        4,
        {"vision": ("vision_model", 4), "qformer": ("qformer", 2), "text": ("language_model", 3)},
        {
            "query_tokens": 0,
            "vision_model.embeddings": 0,
            **_blocks("vision_model.encoder.layers", [1, 2, 3, 4]),
            "vision_model.post_layernorm": 5,
            "qformer.layernorm": 0,
            **_blocks("qformer.encoder.layer", [1, 4]),
            "language_projection": 5,
            "language_model.model.decoder.embed_tokens": 0,
            "language_model.model.decoder.embed_positions": 0,
            **_blocks("language_model.model.decoder.layers", [1, 3, 4]),
            "language_model.model.decoder.final_layer_norm": 5,
        },
    ),
    # LLaVA: the projector is new (head); the vision tower's and the language model's first layers share depth 1.
    "llava": (
        4,
        {"vision": ("model.vision_tower", 4), "text": ("model.language_model", 2)},
        {
            "model.vision_tower.embeddings": 0,
            "model.vision_tower.pre_layrnorm": 0,
            **_blocks("model.vision_tower.encoder.layers", [1, 2, 3, 4]),
            "model.vision_tower.post_layernorm": 5,
            "model.multi_modal_projector": 5,
            "model.language_model.embed_tokens": 0,
            **_blocks("model.language_model.layers", [1, 4]),
            "model.language_model.norm": 5,
            "lm_head": 5,
        },
    ),
    "idefics3": (
        4,
        {"vision": ("model.vision_model", 4), "text": ("model.text_model", 2)},
        {
            "model.vision_model.embeddings": 0,
            **_blocks("model.vision_model.encoder.layers", [1, 2, 3, 4]),
            "model.vision_model.post_layernorm": 5,
            "model.connector": 5,
            "model.text_model.embed_tokens": 0,
            **_blocks("model.text_model.layers", [1, 4]),
            "model.text_model.norm": 5,
            "lm_head": 5,
        },
    ),
    "smolvlm": (
        4,
        {"vision": ("model.vision_model", 4), "text": ("model.text_model", 2)},
        {
            "model.vision_model.embeddings": 0,
            **_blocks("model.vision_model.encoder.layers", [1, 2, 3, 4]),
            "model.vision_model.post_layernorm": 5,
            "model.connector": 5,
            "model.text_model.embed_tokens": 0,
            **_blocks("model.text_model.layers", [1, 4]),
            "model.text_model.norm": 5,
            "lm_head": 5,
        },
    ),
}

# Encoder-decoders by default: one stack in series, encoder blocks below decoder blocks; the encoder's final
# norm feeds the decoder (its first block's depth); the LM head is tied to the embeddings (depth 0).
SERIES_MAPS = {
    "t5": (
        5,
        {
            "shared": 0,
            **_blocks("encoder.block", [1, 2, 3]),
            "encoder.final_layer_norm": 4,
            **_blocks("decoder.block", [4, 5]),
            "decoder.final_layer_norm": 6,
        },
    ),
    "bart": (
        5,
        {
            "model.shared": 0,
            "model.encoder.embed_positions": 0,
            "model.encoder.layernorm_embedding": 0,
            **_blocks("model.encoder.layers", [1, 2, 3]),
            "model.decoder.embed_positions": 0,
            "model.decoder.layernorm_embedding": 0,
            **_blocks("model.decoder.layers", [4, 5]),
        },
    ),
    "whisper": (
        5,
        {
            "model.encoder.conv1": 0,
            "model.encoder.conv2": 0,
            "model.encoder.embed_positions": 0,
            **_blocks("model.encoder.layers", [1, 2, 3]),
            "model.encoder.layer_norm": 4,
            "model.decoder.embed_tokens": 0,
            "model.decoder.embed_positions": 0,
            **_blocks("model.decoder.layers", [4, 5]),
            "model.decoder.layer_norm": 6,
        },
    ),
}

# towers="encoder-decoder": the 3-block encoder and the 2-block decoder on one scale (L = 3); each stack's
# final norm closes its tower (head).
ENCODER_DECODER_MAPS = {
    "t5": (
        3,
        {"encoder": ("encoder", 3), "decoder": ("decoder", 2)},
        {
            "shared": 0,
            **_blocks("encoder.block", [1, 2, 3]),
            "encoder.final_layer_norm": 4,
            **_blocks("decoder.block", [1, 3]),
            "decoder.final_layer_norm": 4,
        },
    ),
    "bart": (
        3,
        {"encoder": ("model.encoder", 3), "decoder": ("model.decoder", 2)},
        {
            "model.shared": 0,
            "model.encoder.embed_positions": 0,
            "model.encoder.layernorm_embedding": 0,
            **_blocks("model.encoder.layers", [1, 2, 3]),
            "model.decoder.embed_positions": 0,
            "model.decoder.layernorm_embedding": 0,
            **_blocks("model.decoder.layers", [1, 3]),
        },
    ),
    "whisper": (
        3,
        {"encoder": ("model.encoder", 3), "decoder": ("model.decoder", 2)},
        {
            "model.encoder.conv1": 0,
            "model.encoder.conv2": 0,
            "model.encoder.embed_positions": 0,
            **_blocks("model.encoder.layers", [1, 2, 3]),
            "model.encoder.layer_norm": 4,
            "model.decoder.embed_tokens": 0,
            "model.decoder.embed_positions": 0,
            **_blocks("model.decoder.layers", [1, 3]),
            "model.decoder.layer_norm": 4,
        },
    ),
}


def _assert_exact(model, layers, num_layers, prefixes):
    names = [name for name, _ in model.named_parameters()]
    assert layers.num_layers == num_layers
    assert layers.depths == depth_by_prefix(names, prefixes)
    for prefix in prefixes:
        assert any(n == prefix or n.startswith(prefix + ".") for n in names), f"{prefix} covers no parameter"


@pytest.mark.parametrize("name", sorted(TOWER_MAPS))
def test_tower_depths_exact(name):
    model = build_towers_meta(name)
    num_layers, towers, prefixes = TOWER_MAPS[name]
    layers = layer_map(model, include_frozen=True)
    assert {tower.name: (tower.path, tower.num_blocks) for tower in layers.towers} == towers
    _assert_exact(model, layers, num_layers, prefixes)
    groups = param_groups(model, lr=1e-3, layer_decay=0.8, weight_decay=0.05, layers=layers)
    grouped = [id(p) for group in groups for p in group["params"]]
    assert len(grouped) == len(set(grouped)) == len({id(p) for p in model.parameters()})


@pytest.mark.parametrize("name", sorted(SERIES_MAPS))
def test_encoder_decoder_is_in_series_by_default(name):
    model = build_towers_meta(name)
    num_layers, prefixes = SERIES_MAPS[name]
    layers = layer_map(model, include_frozen=True)
    assert layers.towers == ()
    _assert_exact(model, layers, num_layers, prefixes)


@pytest.mark.parametrize("name", sorted(ENCODER_DECODER_MAPS))
def test_encoder_decoder_as_towers_when_asked(name):
    model = build_towers_meta(name)
    num_layers, towers, prefixes = ENCODER_DECODER_MAPS[name]
    layers = layer_map(model, towers="encoder-decoder", include_frozen=True)
    assert {tower.name: (tower.path, tower.num_blocks) for tower in layers.towers} == towers
    _assert_exact(model, layers, num_layers, prefixes)
    rates = LayerwiseRates(1e-3, 0.8, tower_layer_decay={"decoder": 0.9})
    groups = param_groups(model, rates=rates, weight_decay=0.05, towers="encoder-decoder")
    grouped = [id(p) for group in groups for p in group["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in model.parameters() if p.requires_grad}


@pytest.mark.parametrize(
    "name, head, embedding",
    [
        ("t5", "lm_head.weight", "shared.weight"),
        ("bart", "lm_head.weight", "model.shared.weight"),
        ("whisper", "proj_out.weight", "model.decoder.embed_tokens.weight"),
        ("llava-tied", "lm_head.weight", "model.language_model.embed_tokens.weight"),
    ],
)
def test_a_tied_lm_head_is_one_parameter_at_the_embeddings_depth(name, head, embedding):
    if name == "llava-tied":
        model_class, config = _build_towers("llava")
        config.tie_word_embeddings = config.text_config.tie_word_embeddings = True
        with torch.device("meta"):
            model = model_class(config)
    else:
        model = build_towers_meta(name)
    assert model.get_parameter(head) is model.get_parameter(embedding)
    layers = layer_map(model)
    assert layers.depths[embedding] == 0
    assert head not in layers.depths


def test_a_tied_head_registered_before_its_embedding_is_still_at_depth_0():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mix = torch.nn.Linear(8, 8)
            self.norm = torch.nn.LayerNorm(8)

    class HeadFirst(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(8, 20, bias=False)
            self.embed = torch.nn.Embedding(20, 8)
            self.blocks = torch.nn.ModuleList(Block() for _ in range(3))
            self.head.weight = self.embed.weight

    layers = layer_map(HeadFirst())
    assert layers.depths["head.weight"] == 0
    assert "embed.weight" not in layers.depths
    assert layers.num_layers == 3


@pytest.mark.parametrize(
    "block, num_blocks, num_layers, depth",
    [
        *((k, 6, 12, d) for k, d in zip(range(1, 7), [1, 3, 5, 8, 10, 12])),
        *((k, 3, 4, d) for k, d in zip(range(1, 4), [1, 3, 4])),
        *((k, 12, 12, k) for k in range(1, 13)),
        (1, 1, 5, 5),
    ],
)
def test_tower_block_depth_spreads_a_tower_from_1_to_L(block, num_blocks, num_layers, depth):
    assert tower_block_depth(block, num_blocks, num_layers) == depth


def test_tower_block_depth_refuses_a_tower_longer_than_L():
    with pytest.raises(ValueError, match=r"num_blocks \(5\) <= num_layers \(4\)"):
        tower_block_depth(1, 5, 4)


def test_tower_layer_decay_gives_each_tower_its_own_rates():
    model = build_towers_meta("clip-uneven")
    rates = LayerwiseRates(1e-3, layer_decay=0.9, tower_layer_decay={"vision": 0.75, "text": 0.85})
    groups = param_groups(model, rates=rates, weight_decay=0.0)
    rate = {name: group["lr"] for group in groups for name in group["param_names"]}
    tower = {name: group.get("tower") for group in groups for name in group["param_names"]}
    # L = 4: depth d gets 1e-3 * decay ** (5 - d) with its tower's decay.
    assert rate["vision_model.encoder.layers.0.mlp.fc1.weight"] == pytest.approx(1e-3 * 0.75**4)
    assert rate["vision_model.encoder.layers.3.mlp.fc1.weight"] == pytest.approx(1e-3 * 0.75)
    assert rate["vision_model.embeddings.patch_embedding.weight"] == pytest.approx(1e-3 * 0.75**5)
    assert rate["text_model.encoder.layers.0.mlp.fc1.weight"] == pytest.approx(1e-3 * 0.85**4)
    assert rate["text_model.encoder.layers.1.mlp.fc1.weight"] == pytest.approx(1e-3 * 0.85)
    assert rate["text_model.embeddings.token_embedding.weight"] == pytest.approx(1e-3 * 0.85**5)
    assert (
        rate["visual_projection.weight"] == rate["logit_scale"] == rate["vision_model.post_layernorm.weight"] == 1e-3
    )
    assert tower["vision_model.encoder.layers.0.mlp.fc1.weight"] == "vision"
    assert tower["text_model.encoder.layers.0.mlp.fc1.weight"] == "text"
    assert tower["logit_scale"] is None
    for group in groups:
        assert {tower[name] for name in group["param_names"]} == {group.get("tower")}


def test_with_tower_decays_every_tower_logs_its_own_rates():
    model = build_towers_meta("clip-uneven")
    rates = LayerwiseRates(1e-3, layer_decay=0.9, tower_layer_decay={"vision": 0.75, "text": 0.85})
    logs = depth_learning_rate_logs(param_groups(model, rates=rates, weight_decay=0.0))
    assert sorted(logs) == sorted(
        ["lr/head"]
        + [f"lr/vision/layer_0{d}" for d in range(5)]
        + ["lr/vision/head"]
        + ["lr/text/layer_00", "lr/text/layer_01", "lr/text/layer_04", "lr/text/head"]
    )
    assert logs["lr/vision/layer_01"] == pytest.approx(1e-3 * 0.75**4)
    assert logs["lr/text/layer_04"] == pytest.approx(1e-3 * 0.85)
    assert logs["lr/text/layer_00"] == pytest.approx(1e-3 * 0.85**5)
    assert logs["lr/head"] == logs["lr/vision/head"] == logs["lr/text/head"] == 1e-3


def test_a_wrapper_of_a_two_tower_model_keeps_its_towers_and_their_decays():
    # As sentence-transformers' trainer maps the loss module that wraps the model (with a classifier of its own).
    model = build_towers_meta("clip-uneven")
    classifier = torch.nn.Linear(4, 2, device="meta")
    wrapper = torch.nn.ModuleDict({"model": torch.nn.ModuleDict({"0": model}), "classifier": classifier})
    layers = layer_map_of_wrapper(wrapper, model, layer_map(model))
    assert {tower.name: tower.path for tower in layers.towers} == {
        "text": "model.0.text_model",
        "vision": "model.0.vision_model",
    }
    rates = LayerwiseRates(1e-3, layer_decay=0.9, tower_layer_decay={"vision": 0.75, "text": 0.85})
    groups = param_groups(wrapper, rates=rates, weight_decay=0.0, layers=layers)
    rate = {name: group["lr"] for group in groups for name in group["param_names"]}
    assert rate["model.0.vision_model.encoder.layers.0.mlp.fc1.weight"] == pytest.approx(1e-3 * 0.75**4)
    assert rate["model.0.text_model.encoder.layers.0.mlp.fc1.weight"] == pytest.approx(1e-3 * 0.85**4)
    assert rate["classifier.weight"] == rate["model.0.logit_scale"] == 1e-3


def test_without_tower_decay_the_towers_share_the_groups_of_a_depth():
    model = build_towers_meta("clip")
    groups = param_groups(model, lr=1e-3, layer_decay=0.5)
    assert [group["layer"] for group in groups] == [0, 1, 2, 3, 4, 5]
    assert not any("tower" in group for group in groups)
    assert {name.split(".")[0] for name in groups[1]["param_names"]} == {"text_model", "vision_model"}


def test_tower_layer_decay_naming_an_unknown_tower_is_refused():
    rates = LayerwiseRates(1e-3, layer_decay=0.9, tower_layer_decay={"audio": 0.8})
    with pytest.raises(ValueError, match="tower_layer_decay names 'audio', but its towers are text, vision"):
        param_groups(build_towers_meta("clip"), rates=rates)
    with pytest.raises(ValueError, match=r"it has no towers .*towers='encoder-decoder'"):
        param_groups(build_towers_meta("t5"), rates=LayerwiseRates(1e-3, 0.9, tower_layer_decay={"encoder": 0.8}))
    groups = param_groups(
        build_towers_meta("t5"),
        rates=LayerwiseRates(1e-3, 0.9, tower_layer_decay={"encoder": 0.8}),
        towers="encoder-decoder",
    )
    assert {group.get("tower") for group in groups} == {None, "encoder", "decoder"}


@pytest.mark.parametrize(
    "value, message",
    [
        ({"vision": 1.5}, r"tower_layer_decay\['vision'\] must be a decay in \(0, 1\], got 1.5"),
        ("{vision: 0.7}", "tower_layer_decay is not valid JSON"),
        ({}, "must be a non-empty mapping"),
    ],
)
def test_invalid_tower_layer_decay_is_refused(value, message):
    with pytest.raises(ValueError, match=message):
        LayerwiseRates(1e-3, 0.9, tower_layer_decay=value)


def test_towers_can_be_named_or_turned_off():
    model = build_towers_meta("llava")
    assert layer_map(model, towers="none").towers == ()
    assert layer_map(model, towers="none").num_layers == 6
    named = layer_map(model, towers={"vit": "model.vision_tower", "lm": "model.language_model"})
    assert [tower.name for tower in named.towers] == ["vit", "lm"]
    assert named.depths == layer_map(model).depths
    with pytest.raises(ValueError, match="towers must be one of"):
        layer_map(model, towers="parallel")
    with pytest.raises(ValueError, match="towers='encoder-decoder' needs a model with an encoder and a decoder"):
        layer_map(build_towers_meta("clip"), towers="encoder-decoder")


def test_lr_table_names_each_towers_blocks():
    model = build_towers_meta("clip-uneven")
    layers = layer_map(model)
    rows = lr_table(param_groups(model, lr=1e-3, layer_decay=0.5, layers=layers), layers)
    assert [row["block"] for row in rows] == [
        "embeddings",
        "text 1/2, vision 1/4",
        "vision 2/4",
        "vision 3/4",
        "text 2/2, vision 4/4",
        "head",
    ]
    rates = LayerwiseRates(1e-3, 0.5, tower_layer_decay={"text": 0.8})
    rows = lr_table(param_groups(model, rates=rates, layers=layers), layers)
    assert [(row["block"], row.get("tower")) for row in rows] == [
        ("text embeddings", "text"),
        ("vision embeddings", "vision"),
        ("text 1/2", "text"),
        ("vision 1/4", "vision"),
        ("vision 2/4", "vision"),
        ("vision 3/4", "vision"),
        ("text 2/2", "text"),
        ("vision 4/4", "vision"),
        ("head", None),
        ("text head", "text"),
        ("vision head", "vision"),
    ]


def test_training_arguments_carry_towers_and_tower_decay_to_the_optimizer(tmp_path):
    from finetune_llrd import LLRDTrainer, LLRDTrainingArguments

    model_class, config = _build_towers("t5")
    model = model_class(config)
    args = LLRDTrainingArguments(
        output_dir=str(tmp_path),
        learning_rate=1e-3,
        layer_decay=0.5,
        layer_towers="encoder-decoder",
        tower_layer_decay='{"decoder": 0.8}',
        weight_decay=0.0,
        report_to="none",
        use_cpu=True,
    )
    assert args.tower_layer_decay == {"decoder": 0.8}
    optimizer = LLRDTrainer(model=model, args=args).create_optimizer()
    rate = {name: group["lr"] for group in optimizer.param_groups for name in group["param_names"]}
    # L = 3 (the 3-block encoder); the 2-block decoder at depths 1 and 3 with its own decay.
    assert rate["encoder.block.0.layer.0.SelfAttention.q.weight"] == pytest.approx(1e-3 * 0.5**3)
    assert rate["decoder.block.0.layer.0.SelfAttention.q.weight"] == pytest.approx(1e-3 * 0.8**3)
    assert rate["decoder.block.1.layer.0.SelfAttention.q.weight"] == pytest.approx(1e-3 * 0.8)
    assert rate["shared.weight"] == pytest.approx(1e-3 * 0.5**4)


def test_training_arguments_refuse_an_unknown_towers_option(tmp_path):
    from finetune_llrd import LLRDTrainingArguments

    with pytest.raises(ValueError, match="layer_towers must be one of"):
        LLRDTrainingArguments(output_dir=str(tmp_path), layer_towers="parallel", report_to="none")


def test_a_vision_language_classifier_gets_its_towers_side_by_side():
    """Gemma 3 for sequence classification holds a SigLIP vision tower and a language model: before towers,
    the vision tower sat below the language model; now the first layers of both are at depth 1."""
    from tiny_models import build_shrunk

    model = build_shrunk("gemma3", transformers.AutoModelForSequenceClassification)
    layers = layer_map(model)
    assert {tower.name: tower.path for tower in layers.towers} == {
        "vision": "model.vision_tower",
        "text": "model.language_model",
    }
    vision_first = next(n for n in layers.depths if n.startswith("model.vision_tower.encoder.layers.0."))
    text_first = next(n for n in layers.depths if n.startswith("model.language_model.layers.0."))
    assert layers.depths[vision_first] == layers.depths[text_first] == 1
    assert layers.depths["score.weight"] == layers.head_depth


def test_towers_that_leave_out_a_stack_are_refused():
    model = build_towers_meta("blip-2")
    with pytest.raises(
        ValueError, match=r"the block stacks \['language_model.model.decoder.layers'\] are in none of them"
    ):
        layer_map(model, towers={"vision": "vision_model", "qformer": "qformer"})
    with pytest.raises(ValueError, match=r"cannot number this model side by side: the block stacks \['qformer"):
        layer_map(model, towers={"vision": "vision_model"})


# RF-DETR's published optimizer (rfdetr's get_param_dict and DINOv2 backbone's get_named_param_lr_pairs) as our
# flags: --learning_rate 1e-4 --layer_decay 0.8 --weight_decay 1e-4 and these rules (docs/settings.md). The ViT at
# lr_encoder / lr x lr_component_decay ** 2 = 1.5 x 0.49 = 0.735 of its depth's rate, its embeddings without weight
# decay; the decoder at lr_component_decay (0.7); every parameter outside the ViT decayed, biases and norms too.
# RF-DETR's no-decay rule names "gamma", which its DINOv2 calls layer_scale.lambda1: those are decayed.
RF_DETR_RULES = [
    {"pattern": r"backbone\.backbone\.embeddings\.", "name": "vit-embeddings", "lr_scale": 0.735, "weight_decay": 0},
    {
        "pattern": r"backbone\.backbone\..*layer_scale",
        "name": "vit-layer-scale",
        "lr_scale": 0.735,
        "weight_decay": 1e-4,
    },
    {"pattern": r"backbone\.backbone\.", "name": "vit", "lr_scale": 0.735},
    {"pattern": r"^model\.decoder\.", "name": "decoder", "lr_scale": 0.7, "weight_decay": 1e-4},
    {"pattern": r"^(?!model\.backbone\.backbone\.)", "name": "head", "weight_decay": 1e-4},
]


def rf_detr_published_rate(name: str, num_layers: int) -> tuple[float, float]:
    """(lr, weight decay) RF-DETR gives a parameter of transformers' RfDetrForObjectDetection, by its own rules
    (lr 1e-4, lr_encoder 1.5e-4, lr_vit_layer_decay 0.8, lr_component_decay 0.7, weight_decay 1e-4)."""
    if "backbone.backbone." in name:
        original = "backbone.0.encoder." + name.split("backbone.backbone.", 1)[1]
        layer_id = num_layers + 1
        if "embeddings" in original:
            layer_id = 0
        elif ".layer." in original:
            layer_id = int(original[original.find(".layer.") :].split(".")[2]) + 1
        no_decay = ("gamma", "pos_embed", "rel_pos", "bias", "norm", "embeddings")
        return (
            1.5e-4 * 0.8 ** (num_layers + 1 - layer_id) * 0.7**2,
            0.0 if any(key in original for key in no_decay) else 1e-4,
        )
    return (1e-4 * 0.7 if name.startswith("model.decoder.") else 1e-4), 1e-4


def test_rf_detr_published_settings_as_flags_and_rules():
    model = build_meta("rf-detr")
    groups = param_groups(model, lr=1e-4, layer_decay=0.8, weight_decay=1e-4, rules=RF_DETR_RULES)
    ours = {name: (group["lr"], group["weight_decay"]) for group in groups for name in group["param_names"]}
    assert set(ours) == {name for name, _ in model.named_parameters()}
    for name, (lr, weight_decay) in ours.items():
        expected_lr, expected_decay = rf_detr_published_rate(name, num_layers=4)
        assert lr == pytest.approx(expected_lr, rel=1e-12), name
        assert weight_decay == expected_decay, name


def test_detr_on_a_timm_resnet_gets_one_depth_a_block():
    # Not run where timm is absent (it needs torchvision, which does not import beside this machine's CPU torch).
    pytest.importorskip("timm")
    config = transformers.DetrConfig(
        use_timm_backbone=True, backbone="resnet18", use_pretrained_backbone=False, **_DETR_HEAD
    )
    with torch.device("meta"):
        model = transformers.DetrForObjectDetection(config)
    layers = layer_map(model, include_frozen=True)
    names = [name for name, _ in model.named_parameters()]
    prefixes = {"model.backbone.model.conv1": 0, "model": 9, "class_labels_classifier": 9, "bbox_predictor": 9}
    for stage in range(4):
        for block in range(2):
            prefixes[f"model.backbone.model.layer{stage + 1}.{block}"] = 2 * stage + block + 1
    assert layers.backbone == "model.backbone.model"
    assert layers.num_layers == 8
    assert layers.depths == depth_by_prefix(names, prefixes)

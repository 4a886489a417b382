"""Exact depth maps of dense-prediction models (a pretrained backbone and new modules around it),
built tiny from configs on the meta device (no memory, no weights)."""

from __future__ import annotations

import pytest
import torch
import transformers

from finetune_llrd import layer_map, param_groups
from finetune_llrd.param_groups import format_lr_table, lr_table

transformers.logging.set_verbosity_error()

_SWIN = dict(image_size=32, patch_size=4, embed_dim=16, depths=[1, 2, 1, 1], num_heads=[2, 2, 2, 2], window_size=2,
             out_features=["stage1", "stage2", "stage3", "stage4"])
_RESNET = dict(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1], layer_type="basic")
_DETR = dict(use_timm_backbone=False, use_pretrained_backbone=False, d_model=16, encoder_layers=2, decoder_layers=2,
             encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=5,
             num_labels=3)


def _upernet(backbone_config, in_channels):
    return transformers.UperNetForSemanticSegmentation, transformers.UperNetConfig(
        backbone_config=backbone_config, hidden_size=16, auxiliary_in_channels=in_channels, auxiliary_channels=8, num_labels=3
    )


def _build(name):
    t = transformers
    if name == "upernet-convnext":
        return _upernet(t.ConvNextConfig(num_stages=4, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1],
                                         out_features=["stage1", "stage2", "stage3", "stage4"]), 24)
    if name == "upernet-swin":
        return _upernet(t.SwinConfig(**_SWIN), 64)
    if name == "upernet-beit":
        return _upernet(t.BeitConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                                     intermediate_size=37, out_indices=[1, 2, 3, 4], add_fpn=True,
                                     use_relative_position_bias=True), 32)
    if name == "dpt-dinov2":
        return t.DPTForDepthEstimation, t.DPTConfig(
            backbone_config=t.Dinov2Config(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                                           intermediate_size=37, out_features=["stage1", "stage2", "stage3", "stage4"],
                                           reshape_hidden_states=False),
            neck_hidden_sizes=[8, 16, 24, 32], fusion_hidden_size=16, hidden_size=32,
        )
    if name == "dpt-hybrid":
        return t.DPTForDepthEstimation, t.DPTConfig(
            is_hybrid=True, image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
            intermediate_size=37, backbone_featmap_shape=[1, 64, 2, 2], neck_hidden_sizes=[8, 16, 24, 32], fusion_hidden_size=16,
            backbone_config=t.BitConfig(global_padding="same", layer_type="bottleneck", depths=[1, 1, 1], embedding_size=8,
                                        hidden_sizes=[16, 32, 64], num_groups=2, embedding_dynamic_padding=True,
                                        out_features=["stage1", "stage2", "stage3"]),
        )
    if name == "mask2former-swin":
        return t.Mask2FormerForUniversalSegmentation, t.Mask2FormerConfig(
            backbone_config=t.SwinConfig(**_SWIN), hidden_dim=32, feature_size=32, mask_feature_size=32, encoder_layers=2,
            decoder_layers=3, num_queries=5, encoder_feedforward_dim=32, dim_feedforward=32, num_attention_heads=2, num_labels=3,
        )
    if name == "detr":
        return t.DetrForObjectDetection, t.DetrConfig(backbone_config=t.ResNetConfig(**_RESNET, out_features=["stage4"]), **_DETR)
    if name == "conditional-detr":
        return t.ConditionalDetrForObjectDetection, t.ConditionalDetrConfig(
            backbone_config=t.ResNetConfig(**_RESNET, out_features=["stage4"]), **_DETR
        )
    if name == "rt-detr":
        return t.RTDetrForObjectDetection, t.RTDetrConfig(
            d_model=16, encoder_hidden_dim=16, encoder_layers=1, decoder_layers=2, num_queries=5, num_labels=3, encoder_ffn_dim=32,
            decoder_ffn_dim=32, encoder_attention_heads=2, decoder_attention_heads=2, encoder_in_channels=[16, 24, 32],
            backbone_config=t.RTDetrResNetConfig(**_RESNET, out_features=["stage2", "stage3", "stage4"]),
        )
    if name == "segformer":
        return t.SegformerForSemanticSegmentation, t.SegformerConfig(
            num_encoder_blocks=2, depths=[1, 2], sr_ratios=[2, 1], hidden_sizes=[8, 16], num_attention_heads=[1, 2],
            decoder_hidden_size=16, num_labels=3,
        )
    if name == "beit-segmentation":
        return t.BeitForSemanticSegmentation, t.BeitConfig(
            image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37,
            out_indices=[0, 1, 2, 3], use_relative_position_bias=True, auxiliary_channels=8, num_labels=3,
        )
    if name == "sam":
        return t.SamModel, t.SamConfig(
            vision_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, output_channels=16, image_size=64,
                               patch_size=16, mlp_dim=32, global_attn_indexes=[1]),
            prompt_encoder_config=dict(hidden_size=16),
            mask_decoder_config=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32, iou_head_hidden_dim=16),
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
    "upernet-convnext": (5, "backbone", {
        "backbone.embeddings": 0,
        "backbone.encoder.stages.0": 1,
        "backbone.encoder.stages.1": 2,
        "backbone.encoder.stages.2": 3,
        "backbone.encoder.stages.2.layers.1": 4,
        "backbone.encoder.stages.3": 5,
        "backbone.hidden_states_norms": 6,
        "decode_head": 6,
        "auxiliary_head": 6,
    }),
    # Swin's patch merging closes a stage and joins the first block of the next (as timm groups it).
    "upernet-swin": (5, "backbone", {
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
    }),
    # mmsegmentation's BEiT UperNet: the backbone's feature pyramid (fpn1-4) is new, like the heads.
    "upernet-beit": (4, "backbone", {
        "backbone.beit.embeddings": 0,
        **{f"backbone.beit.layers.{i}": i + 1 for i in range(4)},
        "backbone.fpn": 5,
        "decode_head": 5,
        "auxiliary_head": 5,
    }),
    # The DINOv2 backbone's 4 blocks are L; the reassemble and fusion stages of the neck are new.
    "dpt-dinov2": (4, "backbone", {
        "backbone.embeddings": 0,
        **{f"backbone.encoder.layer.{i}": i + 1 for i in range(4)},
        "backbone.layernorm": 5,
        "neck": 5,
        "head": 5,
    }),
    # DPT-hybrid: the BiT CNN is the ViT's patch embedding (timm puts a hybrid's patch_embed.backbone in its
    # stem group), so the ViT's blocks are the depths; the neck and head are outside the base model.
    "dpt-hybrid": (4, None, {
        "dpt.embeddings": 0,
        **{f"dpt.encoder.layer.{i}": i + 1 for i in range(4)},
        "dpt.layernorm": 5,
        "neck": 5,
        "head": 5,
    }),
    # The Swin backbone of the pixel-level module; pixel decoder, transformer decoder and queries are new.
    "mask2former-swin": (5, "model.pixel_level_module.encoder", {
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
    }),
    # The ResNet backbone (which DETR freezes); the detection transformer, its queries and the box heads
    # are at the head.
    "detr": (5, "model.backbone.model", {
        "model.backbone.model.embedder": 0,
        "model.backbone.model.encoder.stages.0": 1,
        "model.backbone.model.encoder.stages.1": 2,
        "model.backbone.model.encoder.stages.2": 3,
        "model.backbone.model.encoder.stages.2.layers.1": 4,
        "model.backbone.model.encoder.stages.3": 5,
        "model": 6,
        "class_labels_classifier": 6,
        "bbox_predictor": 6,
    }),
    "conditional-detr": (5, "model.backbone.model", {
        "model.backbone.model.embedder": 0,
        "model.backbone.model.encoder.stages.0": 1,
        "model.backbone.model.encoder.stages.1": 2,
        "model.backbone.model.encoder.stages.2": 3,
        "model.backbone.model.encoder.stages.2.layers.1": 4,
        "model.backbone.model.encoder.stages.3": 5,
        "model": 6,
        "class_labels_classifier": 6,
        "bbox_predictor": 6,
    }),
    # RT-DETR's ResNet-D stem (three convolutions in ``embedder``) is depth 0, not three blocks.
    "rt-detr": (5, "model.backbone.model", {
        "model.backbone.model.embedder": 0,
        "model.backbone.model.encoder.stages.0": 1,
        "model.backbone.model.encoder.stages.1": 2,
        "model.backbone.model.encoder.stages.2": 3,
        "model.backbone.model.encoder.stages.2.layers.1": 4,
        "model.backbone.model.encoder.stages.3": 5,
        "model": 6,
    }),
    # No backbone module: the base model (the Mix Transformer) is the encoder, the decode head is outside it.
    # A stage's overlapping patch embedding joins its first block; its closing norm joins the next stage's
    # first block, the last stage's stays with the last block.
    "segformer": (3, None, {
        "segformer.stages.0.patch_embeddings": 1,
        "segformer.stages.0.blocks.0": 1,
        "segformer.stages.0.layer_norm": 2,
        "segformer.stages.1.patch_embeddings": 2,
        "segformer.stages.1.blocks.0": 2,
        "segformer.stages.1.blocks.1": 3,
        "segformer.stages.1.layer_norm": 3,
        "decode_head": 4,
    }),
    # BEiT's own segmentation model: its base model is the encoder; fpn1-4 and both heads are outside it.
    "beit-segmentation": (4, None, {
        "beit.embeddings": 0,
        **{f"beit.layers.{i}": i + 1 for i in range(4)},
        "fpn": 5, "decode_head": 5, "auxiliary_head": 5,
    }),
    # SAM: the vision encoder (with its neck, which closes it) is the pretrained backbone; the prompt
    # encoder and mask decoder are at the head, as mask-decoder fine-tuning trains them.
    "sam": (2, "vision_encoder", {
        "vision_encoder.pos_embed": 0,
        "vision_encoder.patch_embed": 0,
        "vision_encoder.layers.0": 1,
        "vision_encoder.layers.1": 2,
        "vision_encoder.neck": 3,
        "shared_image_embedding": 3,
        "prompt_encoder": 3,
        "mask_decoder": 3,
    }),
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
        "embeddings", *(f"backbone.encoder.layer.{i}" for i in range(4)), "head (new: neck, head)"
    ]
    assert "head (new: neck, head)" in format_lr_table(rows)


def test_a_detection_transformer_gets_its_own_depth_by_mapping():
    """DETR fine-tuned from detection weights: the transformer is pretrained, so a user mapping puts it at
    the top block's depth (README, "How depths are found"), below the freshly initialised box heads."""
    model = build_meta("detr")
    for param in model.parameters():
        param.requires_grad_(True)
    layers = layer_map(model, mapping={r"^model\.(input_projection|query_position_embeddings|encoder|decoder)\.": 5})
    assert layers.rule == "user_mapping+block_stack"
    assert layers.depths["model.encoder.layers.0.self_attn.k_proj.weight"] == 5
    assert layers.depths["model.query_position_embeddings.weight"] == 5
    assert layers.depths["class_labels_classifier.weight"] == 6
    assert layers.depths["model.backbone.model.encoder.stages.3.layers.0.layer.0.convolution.weight"] == 5

"""Exact depth maps of every architecture the toolkit promises, built tiny from configs."""

import re

import pytest
import torch
from tiny_models import ARCHITECTURES, EXPECTED_NUM_LAYERS, names_at, tiny_model
from torch import nn

from finetune_llrd import LayerMapError, layer_map


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


def _bert_like(prefix, embeddings, head, extra_embeddings=()):
    return dict(
        embeddings={f"{prefix}.embeddings.{name}" for name in embeddings} | set(extra_embeddings),
        head=set(head),
        blocks=[f"{prefix}.encoder.layer.{i}" for i in range(3)],
    )


_EMB = [
    "word_embeddings.weight",
    "position_embeddings.weight",
    "token_type_embeddings.weight",
    "LayerNorm.weight",
    "LayerNorm.bias",
]
_ROBERTA_EMB = [
    "word_embeddings.weight",
    "token_type_embeddings.weight",
    "LayerNorm.weight",
    "LayerNorm.bias",
    "position_embeddings.weight",
]
_ROBERTA_HEAD = [
    "classifier.dense.weight",
    "classifier.dense.bias",
    "classifier.out_proj.weight",
    "classifier.out_proj.bias",
]
_DECODER = dict(
    embeddings={"model.embed_tokens.weight"},
    head={"model.norm.weight", "score.weight"},
    blocks=[f"model.layers.{i}" for i in range(3)],
)


def _vit_like(prefix, tokens, layers="layers", final="layernorm"):
    return dict(
        embeddings={f"{prefix}.embeddings.{t}" for t in tokens}
        | {
            f"{prefix}.embeddings.patch_embeddings.projection.weight",
            f"{prefix}.embeddings.patch_embeddings.projection.bias",
        },
        head={f"{prefix}.{final}.weight", f"{prefix}.{final}.bias", "classifier.weight", "classifier.bias"},
        blocks=[f"{prefix}.{layers}.{i}" for i in range(3)],
    )


EXPECTED = {
    "bert": _bert_like(
        "bert", _EMB, ["bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias"]
    ),
    "roberta": _bert_like("roberta", _ROBERTA_EMB, _ROBERTA_HEAD),
    "xlm-roberta": _bert_like("roberta", _ROBERTA_EMB, _ROBERTA_HEAD),
    # The relative position table and the norm that normalizes it serve every layer: depth 0.
    "deberta-v2": _bert_like(
        "deberta",
        ["word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias"],
        ["pooler.dense.weight", "pooler.dense.bias", "classifier.weight", "classifier.bias"],
        extra_embeddings=[
            "deberta.encoder.rel_embeddings.weight",
            "deberta.encoder.LayerNorm.weight",
            "deberta.encoder.LayerNorm.bias",
        ],
    ),
    "electra": _bert_like(
        "electra",
        _EMB,
        _ROBERTA_HEAD,
        extra_embeddings=["electra.embeddings_project.weight", "electra.embeddings_project.bias"],
    ),
    # One layer shared by all 12 applications: it is one block (L=1) between embeddings and head.
    "albert": dict(
        embeddings={f"albert.embeddings.{n}" for n in _EMB}
        | {"albert.encoder.embedding_hidden_mapping_in.weight", "albert.encoder.embedding_hidden_mapping_in.bias"},
        head={"albert.pooler.weight", "albert.pooler.bias", "classifier.weight", "classifier.bias"},
        blocks=["albert.encoder.albert_layer_groups.0"],
    ),
    "distilbert": dict(
        embeddings={
            f"distilbert.embeddings.{n}"
            for n in ["word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias"]
        },
        head={"pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"},
        blocks=[f"distilbert.transformer.layer.{i}" for i in range(3)],
    ),
    "mpnet": _bert_like(
        "mpnet",
        ["word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias"],
        _ROBERTA_HEAD,
        extra_embeddings=["mpnet.encoder.relative_attention_bias.weight"],
    ),
    "modernbert": dict(
        embeddings={"model.embeddings.tok_embeddings.weight", "model.embeddings.norm.weight"},
        head={
            "model.final_norm.weight",
            "head.dense.weight",
            "head.norm.weight",
            "classifier.weight",
            "classifier.bias",
        },
        blocks=[f"model.layers.{i}" for i in range(3)],
    ),
    "gpt2": dict(
        embeddings={"transformer.wte.weight", "transformer.wpe.weight"},
        head={"transformer.ln_f.weight", "transformer.ln_f.bias", "score.weight"},
        blocks=[f"transformer.h.{i}" for i in range(3)],
    ),
    "llama": _DECODER,
    "mistral": _DECODER,
    "qwen2": _DECODER,
    "qwen3": _DECODER,
    "gemma": _DECODER,
    "phi": dict(_DECODER, head={"model.final_layernorm.weight", "model.final_layernorm.bias", "score.weight"}),
    # Encoder blocks below decoder blocks; the encoder's final norm feeds the decoder's first block.
    "t5": dict(
        embeddings={"transformer.shared.weight"},
        head={"transformer.decoder.final_layer_norm.weight"}
        | {f"classification_head.{n}" for n in ["dense.weight", "dense.bias", "out_proj.weight", "out_proj.bias"]},
        blocks=[f"transformer.encoder.block.{i}" for i in range(3)]
        + [f"transformer.decoder.block.{i}" for i in range(2)],
        extra={"transformer.encoder.final_layer_norm.weight": 4},
    ),
    "bart": dict(
        embeddings={"model.shared.weight"}
        | {
            f"model.{side}.{n}"
            for side in ("encoder", "decoder")
            for n in ["embed_positions.weight", "layernorm_embedding.weight", "layernorm_embedding.bias"]
        },
        head={f"classification_head.{n}" for n in ["dense.weight", "dense.bias", "out_proj.weight", "out_proj.bias"]},
        blocks=[f"model.encoder.layers.{i}" for i in range(3)] + [f"model.decoder.layers.{i}" for i in range(2)],
    ),
    "vit": _vit_like("vit", ["cls_token", "position_embeddings"]),
    "deit": _vit_like("deit", ["cls_token", "position_embeddings", "distillation_token"]),
    "beit": _vit_like("beit", ["cls_token", "mask_token"], final="pooler.layernorm"),
    "dinov2": _vit_like("dinov2", ["cls_token", "mask_token", "position_embeddings"], layers="encoder.layer"),
    # Patch merging at the end of stage 0 joins the block that follows it (as timm groups Swin).
    "swin": dict(
        embeddings={
            f"swin.embeddings.{n}"
            for n in [
                "patch_embeddings.projection.weight",
                "patch_embeddings.projection.bias",
                "norm.weight",
                "norm.bias",
            ]
        },
        head={"swin.layernorm.weight", "swin.layernorm.bias", "classifier.weight", "classifier.bias"},
        blocks=["swin.encoder.layers.0.blocks.0", "swin.encoder.layers.1.blocks.0", "swin.encoder.layers.1.blocks.1"],
        extra={"swin.encoder.layers.0.downsample": 2},
    ),
    "convnext": dict(
        embeddings={
            f"convnext.embeddings.{n}"
            for n in ["patch_embeddings.weight", "patch_embeddings.bias", "layernorm.weight", "layernorm.bias"]
        },
        head={"convnext.layernorm.weight", "convnext.layernorm.bias", "classifier.weight", "classifier.bias"},
        blocks=[
            "convnext.encoder.stages.0.layers.0",
            "convnext.encoder.stages.1.layers.0",
            "convnext.encoder.stages.1.layers.1",
        ],
        extra={"convnext.encoder.stages.1.downsampling_layer": 2},
    ),
    "resnet": dict(
        embeddings={
            f"resnet.embedder.embedder.{n}"
            for n in ["convolution.weight", "normalization.weight", "normalization.bias"]
        },
        head={"classifier.1.weight", "classifier.1.bias"},
        blocks=[
            "resnet.encoder.stages.0.layers.0",
            "resnet.encoder.stages.1.layers.0",
            "resnet.encoder.stages.1.layers.1",
        ],
    ),
    "clip": dict(
        embeddings={
            f"vision_model.embeddings.{n}"
            for n in ["class_embedding", "patch_embedding.weight", "position_embedding.weight"]
        }
        | {"vision_model.pre_layrnorm.weight", "vision_model.pre_layrnorm.bias"},
        head={
            "vision_model.post_layernorm.weight",
            "vision_model.post_layernorm.bias",
            "classifier.weight",
            "classifier.bias",
        },
        blocks=[f"vision_model.encoder.layers.{i}" for i in range(3)],
    ),
}


def test_every_promised_architecture_has_an_expectation():
    assert set(EXPECTED) == set(ARCHITECTURES)


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_exact_depth_map(model_type):
    model = tiny_model(model_type)
    layers = layer_map(model)
    expected = EXPECTED[model_type]
    num_layers = EXPECTED_NUM_LAYERS[model_type]

    assert layers.num_layers == num_layers
    assert layers.method == "block_stack"
    assert set(names_at(layers, 0)) == expected["embeddings"]
    assert set(names_at(layers, num_layers + 1)) == expected["head"]
    assert len(expected["blocks"]) == num_layers
    extra = expected.get("extra", {})
    for depth, prefix in enumerate(expected["blocks"], start=1):
        in_block = {name for name in layers.depths if name.startswith(prefix + ".")}
        assert in_block, prefix
        in_extra = {
            name
            for name in layers.depths
            for p, d in extra.items()
            if d == depth and (name == p or name.startswith(p + "."))
        }
        assert set(names_at(layers, depth)) == in_block | in_extra
    assert set(layers.depths) == {name for name, _ in model.named_parameters()}


@pytest.mark.parametrize(
    "model_type, stages",
    [
        ("swin", [["swin.encoder.layers.0.blocks"], ["swin.encoder.layers.0.downsample", "swin.encoder.layers.1"]]),
        ("convnext", [["convnext.encoder.stages.0"], ["convnext.encoder.stages.1"]]),
        ("resnet", [["resnet.encoder.stages.0"], ["resnet.encoder.stages.1"]]),
    ],
)
def test_stage_grouping_gives_one_depth_per_stage(model_type, stages):
    model = tiny_model(model_type)
    layers = layer_map(model, grouping="stage")
    assert layers.num_layers == 2
    for depth, prefixes in enumerate(stages, start=1):
        expected = {name for name in layers.depths if any(name.startswith(p + ".") for p in prefixes)}
        assert set(names_at(layers, depth)) == expected
    assert set(names_at(layers, 3)) == set(EXPECTED[model_type]["head"])


def test_stage_grouping_equals_block_grouping_without_stages():
    model = tiny_model("bert")
    assert layer_map(model, grouping="stage").depths == layer_map(model, grouping="block").depths


def test_frozen_parameters_are_left_out_unless_asked():
    model = tiny_model("bert")
    model.bert.embeddings.requires_grad_(False)
    layers = layer_map(model)
    assert not any(name.startswith("bert.embeddings.") for name in layers.depths)
    assert layers.num_layers == 3
    assert layer_map(model, include_frozen=True).depths["bert.embeddings.word_embeddings.weight"] == 0


def test_tied_weight_appears_once():
    model = tiny_model("t5")
    assert model.transformer.encoder.embed_tokens.weight is model.transformer.shared.weight
    layers = layer_map(model)
    assert "transformer.shared.weight" in layers.depths
    assert not any("embed_tokens" in name for name in layers.depths)


def test_user_mapping_wins_and_the_rest_is_automatic():
    model = tiny_model("bert")
    layers = layer_map(model, mapping={r"^bert\.pooler\.": 3, r"position_embeddings": 1})
    assert layers.method == "user_mapping+block_stack"
    assert layers.depths["bert.pooler.dense.weight"] == 3
    assert layers.depths["bert.embeddings.position_embeddings.weight"] == 1
    assert layers.depths["bert.embeddings.word_embeddings.weight"] == 0
    assert layers.depths["classifier.weight"] == 4


def test_callable_mapping_covering_everything_sets_its_own_depths():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2))
    depth_of = {"0": 0, "2": 1, "3": 2}
    layers = layer_map(model, mapping=lambda name: depth_of[name.split(".")[0]])
    assert layers.method == "user_mapping"
    assert layers.num_layers == 1
    assert layers.depths == {"0.weight": 0, "0.bias": 0, "2.weight": 1, "2.bias": 1, "3.weight": 2, "3.bias": 2}


def test_model_without_block_stack_gets_an_error_that_shows_the_fix():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(LayerMapError, match=r"Sequential.*mapping=\{"):
        layer_map(model)


def test_mapping_depth_outside_range_is_refused():
    model = tiny_model("bert")
    with pytest.raises(ValueError, match=r"Depth 9 .* outside 0\.\.4"):
        layer_map(model, mapping={r"classifier": 9})
    with pytest.raises(ValueError, match="non-negative integer"):
        layer_map(model, mapping={r"classifier": -1})


def test_invalid_regex_in_a_mapping_names_the_pattern_and_the_field():
    model = tiny_model("bert")
    with pytest.raises(
        ValueError, match=r"^layer_mapping key '\[a' is not a valid regex: unterminated character set at position 0\.$"
    ):
        layer_map(model, mapping={r"^classifier\.": 4, "[a": 1})


def test_model_with_no_trainable_parameters_is_refused():
    model = tiny_model("bert").requires_grad_(False)
    with pytest.raises(LayerMapError, match="BertForSequenceClassification has no trainable parameters"):
        layer_map(model)


def test_unknown_grouping_is_refused():
    with pytest.raises(ValueError, match="grouping must be one of"):
        layer_map(tiny_model("bert"), grouping="layer")


class _Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.mix = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)


class _CustomNet(nn.Module):
    """A model of nobody's library: a stem, a stack of blocks, a head."""

    def __init__(self, depth=4, width=8):
        super().__init__()
        self.stem = nn.Conv1d(1, width, 3)
        self.body = nn.ModuleList(_Block(width) for _ in range(depth))
        self.out_norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, 2)


def test_generic_fallback_finds_the_block_stack_of_any_model():
    layers = layer_map(_CustomNet())
    assert layers.num_layers == 4
    assert set(names_at(layers, 0)) == {"stem.weight", "stem.bias"}
    for depth in range(1, 5):
        assert set(names_at(layers, depth)) == {
            f"body.{depth - 1}.{p}" for p in ["mix.weight", "mix.bias", "norm.weight", "norm.bias"]
        }
    assert set(names_at(layers, 5)) == {"out_norm.weight", "out_norm.bias", "fc.weight", "fc.bias"}


def test_wrapper_prefixes_are_understood_by_user_mappings():
    model = tiny_model("bert")
    compiled = torch.compile(model, backend="eager")
    layers = layer_map(compiled, mapping={r"^classifier\.": 4})
    assert layers.depths["_orig_mod.classifier.weight"] == 4
    assert layers.depths["_orig_mod.bert.encoder.layer.2.output.dense.weight"] == 3
    assert re.fullmatch(r"user_mapping\+block_stack", layers.method)


def test_a_final_norm_right_after_the_position_embedding_is_still_the_head():
    """OPT registers ``final_layer_norm`` right after ``embed_positions`` when it has no projection; it is the
    decoder's final norm, not the embeddings' norm."""
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(
        vocab_size=99,
        hidden_size=32,
        word_embed_proj_dim=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        ffn_dim=37,
        max_position_embeddings=64,
    )
    with torch.device("meta"):
        model = OPTForCausalLM(config)
    assert [name for name, _ in model.model.decoder.named_children()][:3] == [
        "embed_tokens",
        "embed_positions",
        "final_layer_norm",
    ]
    layers = layer_map(model)
    assert layers.depths["model.decoder.final_layer_norm.weight"] == 4
    assert layers.depths["model.decoder.embed_positions.weight"] == 0

"""Parameter groups: exact rates, the exactly-once invariant, the lr table and refused settings."""

import math

import pytest
import torch
from tiny_models import ARCHITECTURES, tiny_model

from finetune_llrd import layer_map, lr_table, no_weight_decay_names, param_groups


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


def _group_of_each_param(groups):
    owner = {}
    for index, group in enumerate(groups):
        for param in group["params"]:
            assert id(param) not in owner, "a parameter is in two groups"
            owner[id(param)] = index
    return owner


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_invariants_on_every_architecture(model_type):
    model = tiny_model(model_type)
    first_param = next(model.parameters())
    first_param.requires_grad_(False)  # a frozen parameter must land in no group
    groups = param_groups(model, lr=1e-3, layer_decay=0.75, weight_decay=0.05)
    layers = layer_map(model)

    owner = _group_of_each_param(groups)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(owner) == trainable
    assert id(first_param) not in owner
    assert all(group["params"] for group in groups)
    for group in groups:
        assert len(group["params"]) == len(group["param_names"])
        assert {layers.depths[name] for name in group["param_names"]} == {group["layer"]}

    rate_by_depth = {group["layer"]: group["lr"] for group in groups}
    depths = sorted(rate_by_depth)
    assert rate_by_depth[layers.head_depth] == max(rate_by_depth.values()) == 1e-3
    assert rate_by_depth[depths[0]] == min(rate_by_depth.values())
    assert all(rate_by_depth[a] < rate_by_depth[b] for a, b in zip(depths, depths[1:]))
    for depth, rate in rate_by_depth.items():
        assert rate == pytest.approx(1e-3 * 0.75 ** (layers.num_layers + 1 - depth), rel=1e-12)

    keys = [(group["layer"], group["weight_decay"]) for group in groups]
    assert len(keys) == len(set(keys)), "same depth and weight decay must share one group"

    exempt = no_weight_decay_names(model)
    for group in groups:
        for name, param in zip(group["param_names"], group["params"]):
            if param.ndim <= 1 or name.endswith("bias"):
                assert group["weight_decay"] == 0.0, name
            assert group["weight_decay"] == (0.0 if name in exempt else 0.05), name


def test_exact_rates_and_names_for_bert():
    model = tiny_model("bert")
    groups = param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    summary = [(g["layer"], g["lr"], g["weight_decay"], len(g["params"])) for g in groups]
    assert summary == [
        (0, 1e-3 * 0.5**4, 0.01, 3),
        (0, 1e-3 * 0.5**4, 0.0, 2),
        (1, 1e-3 * 0.5**3, 0.01, 6),
        (1, 1e-3 * 0.5**3, 0.0, 10),
        (2, 1e-3 * 0.5**2, 0.01, 6),
        (2, 1e-3 * 0.5**2, 0.0, 10),
        (3, 1e-3 * 0.5, 0.01, 6),
        (3, 1e-3 * 0.5, 0.0, 10),
        (4, 1e-3, 0.01, 2),
        (4, 1e-3, 0.0, 2),
    ]
    assert groups[0]["param_names"] == [
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.token_type_embeddings.weight",
    ]
    assert groups[1]["param_names"] == ["bert.embeddings.LayerNorm.weight", "bert.embeddings.LayerNorm.bias"]
    assert groups[-2]["param_names"] == ["bert.pooler.dense.weight", "classifier.weight"]
    assert groups[-1]["param_names"] == ["bert.pooler.dense.bias", "classifier.bias"]


def test_no_weight_decay_means_one_group_per_depth():
    groups = param_groups(tiny_model("bert"), lr=1e-3, layer_decay=0.5)
    assert [g["layer"] for g in groups] == [0, 1, 2, 3, 4]
    assert {g["weight_decay"] for g in groups} == {0.0}


def test_frozen_depths_and_tied_weights():
    model = tiny_model("t5")
    model.transformer.encoder.block[0].requires_grad_(False)
    groups = param_groups(model, lr=1e-3, layer_decay=0.8, weight_decay=0.1)
    names = [n for g in groups for n in g["param_names"]]
    assert not any(n.startswith("transformer.encoder.block.0.") for n in names)
    assert names.count("transformer.shared.weight") == 1
    assert not any("embed_tokens" in n for n in names)
    assert 1 not in {g["layer"] for g in groups}


def test_lr_table_rows():
    model = tiny_model("bert")
    layers = layer_map(model)
    rows = lr_table(param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01, layers=layers), layers)
    assert [row["depth"] for row in rows] == [0, 1, 2, 3, 4]
    assert [row["block"] for row in rows] == [
        "embeddings",
        "bert.encoder.layer.0",
        "bert.encoder.layer.1",
        "bert.encoder.layer.2",
        "head",
    ]
    assert [row["lr"] for row in rows] == [1e-3 * 0.5**k for k in (4, 3, 2, 1, 0)]
    params_at = {d: sum(p.numel() for n, p in model.named_parameters() if layers.depths[n] == d) for d in range(5)}
    assert [row["num_params"] for row in rows] == [params_at[d] for d in range(5)]
    assert rows[0]["num_params_no_decay"] == 64  # the embeddings' LayerNorm weight and bias
    assert all(row["weight_decay"] == 0.01 for row in rows)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(layer_decay=0.0), "layer_decay must be in \\(0, 1\\]"),
        (dict(layer_decay=1.5), "layer_decay must be in \\(0, 1\\]"),
        (dict(layer_decay=math.nan), "layer_decay must be in \\(0, 1\\]"),
        (dict(lr=-1.0), "lr must be a finite number >= 0"),
        (dict(lr=math.nan), "lr must be a finite number >= 0"),
        (dict(head_learning_rate=-1e-3), "head_learning_rate must be a finite number >= 0"),
        (dict(embedding_learning_rate=math.inf), "embedding_learning_rate must be a finite number >= 0"),
        (dict(layer_decay_min_scale=1.5), "layer_decay_min_scale must be in \\[0, 1\\]"),
        (dict(layer_grouping="layers"), "layer_grouping must be one of \\['block', 'stage'\\]"),
        (dict(weight_decay=-0.1), "weight_decay must be a finite number >= 0"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    settings = dict(lr=1e-3, layer_decay=0.8) | kwargs
    with pytest.raises(ValueError, match=message):
        param_groups(tiny_model("bert"), **settings)


@pytest.mark.parametrize("model_type", sorted(ARCHITECTURES))
def test_every_schedule_keeps_the_ratios_on_every_architecture(model_type):
    from transformers import get_scheduler

    model = tiny_model(model_type)
    for schedule, kwargs in [
        ("linear", {}),
        ("cosine", {}),
        ("cosine_with_min_lr", {"min_lr_rate": 0.1}),
        ("constant_with_warmup", {}),
    ]:
        groups = param_groups(model, lr=1e-3, layer_decay=0.7, weight_decay=0.05)
        initial = [g["lr"] for g in groups]
        optimizer = torch.optim.AdamW(groups)
        scheduler = get_scheduler(
            schedule, optimizer, num_warmup_steps=2, num_training_steps=10, scheduler_specific_kwargs=kwargs
        )
        for _ in range(7):
            optimizer.step()
            scheduler.step()
            factor = optimizer.param_groups[-1]["lr"] / initial[-1]
            assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
                [r * factor for r in initial], rel=1e-12
            ), schedule

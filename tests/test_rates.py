"""LayerwiseRates: the five rate settings as one checked value, the rate of every depth, and their use by
param_groups."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
from tiny_models import tiny_model

from finetune_llrd import LayerwiseRates, depth_learning_rates, param_groups


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


def test_head_and_embedding_rates_and_the_floor():
    assert depth_learning_rates(3, lr=1.0, layer_decay=0.5) == [0.0625, 0.125, 0.25, 0.5, 1.0]
    assert depth_learning_rates(3, lr=1.0, layer_decay=0.5, layer_decay_min_scale=0.2) == [0.2, 0.2, 0.25, 0.5, 1.0]
    assert depth_learning_rates(3, lr=1.0, layer_decay=0.5, head_learning_rate=4.0, embedding_learning_rate=0.01) == [
        0.01,
        0.125,
        0.25,
        0.5,
        4.0,
    ]
    groups = param_groups(
        tiny_model("bert"), lr=1.0, layer_decay=0.5, head_learning_rate=4.0, embedding_learning_rate=0.0
    )
    assert [(g["layer"], g["lr"]) for g in groups] == [(0, 0.0), (1, 0.125), (2, 0.25), (3, 0.5), (4, 4.0)]


def test_electra_and_fastai_conventions_map_onto_the_arguments():
    # ELECTRA: head at lr_e, layer k of n at lr_e * d ** (n + 2 - k), embeddings at lr_e * d ** (n + 2).
    lr_e, d, n = 1e-4, 0.8, 3
    rates = depth_learning_rates(n, lr=lr_e * d, layer_decay=d, head_learning_rate=lr_e)
    electra = [lr_e * d ** (n + 2)] + [lr_e * d ** (n + 2 - k) for k in range(1, n + 1)] + [lr_e]
    assert rates == pytest.approx(electra, rel=1e-12)
    # fastai slice(lo, hi): geometric from lo (embeddings) to hi (head).
    lo, hi = 1e-6, 1e-4
    rates = depth_learning_rates(n, lr=hi, layer_decay=(lo / hi) ** (1 / (n + 1)))
    assert rates == pytest.approx([lo * (hi / lo) ** (i / (n + 1)) for i in range(n + 2)], rel=1e-12)


def test_the_value_gives_the_rate_of_every_depth():
    rates = LayerwiseRates(learning_rate=1.0, layer_decay=0.5, head_learning_rate=4.0, layer_decay_min_scale=0.1)
    assert rates.depth_rates(3) == [0.1, 0.125, 0.25, 0.5, 4.0]
    assert LayerwiseRates(learning_rate=1.0, layer_decay=0.5, embedding_learning_rate=0.01).depth_rates(1) == [
        0.01,
        0.5,
        1.0,
    ]
    assert LayerwiseRates(learning_rate=2e-5).depth_rates(2) == [2e-5] * 4
    assert depth_learning_rates(
        3, lr=1.0, layer_decay=0.5, head_learning_rate=4.0, layer_decay_min_scale=0.1
    ) == rates.depth_rates(3)


def test_the_value_is_frozen_and_compares_by_its_settings():
    rates = LayerwiseRates(learning_rate=1e-3, layer_decay=0.8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rates.layer_decay = 0.5
    assert rates == LayerwiseRates(1e-3, 0.8, None, None, 0.0)
    assert rates != LayerwiseRates(learning_rate=1e-3, layer_decay=0.8, layer_decay_min_scale=0.1)


def test_is_layerwise():
    assert not LayerwiseRates(learning_rate=1e-3).is_layerwise
    assert not LayerwiseRates(
        learning_rate=1e-3, layer_decay_min_scale=0.5
    ).is_layerwise  # a floor alone changes nothing
    assert LayerwiseRates(learning_rate=1e-3, layer_decay=0.9).is_layerwise
    assert LayerwiseRates(learning_rate=1e-3, head_learning_rate=1e-3).is_layerwise
    assert LayerwiseRates(learning_rate=1e-3, embedding_learning_rate=0.0).is_layerwise


def test_from_attributes_reads_the_settings_by_name():
    flags = SimpleNamespace(
        learning_rate=1e-3,
        layer_decay=0.8,
        head_learning_rate=2e-3,
        embedding_learning_rate=None,
        layer_decay_min_scale=0.1,
        weight_decay=0.01,
        layer_grouping="stage",
    )
    assert LayerwiseRates.from_attributes(flags) == LayerwiseRates(1e-3, 0.8, 2e-3, None, 0.1)


@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(learning_rate=-1.0), r"^learning_rate must be a finite number >= 0, got -1\.0\.$"),
        (dict(learning_rate=True), r"^learning_rate must be a finite number >= 0, got True\.$"),
        (dict(layer_decay=0.0), r"^layer_decay must be in \(0, 1\] \(1\.0 turns layer-wise decay off"),
        (dict(layer_decay=math.inf), r"^layer_decay must be in \(0, 1\]"),
        (dict(head_learning_rate=-1e-3), r"^head_learning_rate must be a finite number >= 0 or None, got -0\.001\.$"),
        (dict(embedding_learning_rate=math.nan), r"^embedding_learning_rate must be a finite number >= 0 or None"),
        (dict(layer_decay_min_scale=-0.5), r"^layer_decay_min_scale must be in \[0, 1\]"),
    ],
)
def test_bad_settings_are_refused_when_the_value_is_built(settings, message):
    with pytest.raises(ValueError, match=message):
        LayerwiseRates(**(dict(learning_rate=1e-3, layer_decay=0.8) | settings))


def test_depth_learning_rates_names_its_own_keyword():
    with pytest.raises(ValueError, match=r"^lr must be a finite number >= 0, got -1\.0\.$"):
        depth_learning_rates(3, lr=-1.0, layer_decay=0.5)


def test_param_groups_takes_the_value_in_place_of_the_settings():
    model = tiny_model("bert")
    rates = LayerwiseRates(learning_rate=1e-3, layer_decay=0.5, head_learning_rate=2e-3, layer_decay_min_scale=0.1)
    from_value = param_groups(model, rates=rates, weight_decay=0.01)
    from_keywords = param_groups(
        model, lr=1e-3, layer_decay=0.5, head_learning_rate=2e-3, layer_decay_min_scale=0.1, weight_decay=0.01
    )
    summary = [(g["layer"], g["lr"], g["weight_decay"], g["param_names"]) for g in from_value]
    assert summary == [(g["layer"], g["lr"], g["weight_decay"], g["param_names"]) for g in from_keywords]
    assert [g["lr"] for g in from_value if g["weight_decay"]] == [1e-4, 1.25e-4, 2.5e-4, 5e-4, 2e-3]


def test_param_groups_refuses_the_value_together_with_settings():
    rates = LayerwiseRates(learning_rate=1e-3, layer_decay=0.5)
    with pytest.raises(
        ValueError, match=r"param_groups got rates and also lr, layer_decay_min_scale: rates holds every rate setting"
    ):
        param_groups(tiny_model("bert"), rates=rates, lr=1e-3, layer_decay_min_scale=0.1)
    with pytest.raises(TypeError, match=r"param_groups needs lr and layer_decay, or rates=LayerwiseRates"):
        param_groups(tiny_model("bert"), lr=1e-3)

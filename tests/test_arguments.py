"""LLRDTrainingArguments: every bad value is refused when the arguments are built."""

import json
import math

import pytest

from finetune_llrd import LayerwiseRates, LLRDTrainingArguments


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


def _build(**fields):
    return LLRDTrainingArguments(output_dir="unused", report_to=[], **fields)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"layer_decay": 0.0}, r"layer_decay must be in \(0, 1\]"),
        ({"layer_decay": -0.5}, r"layer_decay must be in \(0, 1\]"),
        ({"layer_decay": 1.01}, r"layer_decay must be in \(0, 1\]"),
        ({"layer_decay": math.nan}, r"layer_decay must be in \(0, 1\]"),
        ({"learning_rate": -1e-5}, r"learning_rate must be a finite number >= 0"),
        ({"learning_rate": math.nan}, r"learning_rate must be a finite number >= 0"),
        ({"head_learning_rate": -1.0}, r"head_learning_rate must be a finite number >= 0 or None"),
        ({"head_learning_rate": math.nan}, r"head_learning_rate must be a finite number >= 0 or None"),
        ({"embedding_learning_rate": math.inf}, r"embedding_learning_rate must be a finite number >= 0 or None"),
        ({"layer_decay_min_scale": -0.1}, r"layer_decay_min_scale must be in \[0, 1\]"),
        ({"layer_decay_min_scale": 2.0}, r"layer_decay_min_scale must be in \[0, 1\]"),
        ({"layer_grouping": "layer"}, r"layer_grouping must be one of \['block', 'stage'\]"),
        (
            {"layer_mapping": "not-a-file.json"},
            r"layer_mapping must be a JSON object .* or the path of a JSON or YAML file",
        ),
        ({"layer_mapping": "{not json"}, r"layer_mapping is not valid JSON"),
        ({"layer_mapping": '{"(": 1}'}, r"layer_mapping key '\(' is not a valid regex"),
        ({"layer_mapping": '{"x": -1}'}, r"layer_mapping depth for 'x' must be an integer >= 0"),
        ({"layer_mapping": '{"x": 1.5}'}, r"layer_mapping depth for 'x' must be an integer >= 0"),
    ],
)
def test_bad_values_raise_when_the_arguments_are_built(fields, message):
    with pytest.raises(ValueError, match=message):
        _build(**fields)


def test_defaults_leave_the_stock_optimizer():
    args = _build()
    assert (args.layer_decay, args.head_learning_rate, args.embedding_learning_rate) == (1.0, None, None)
    assert (args.layer_decay_min_scale, args.layer_grouping, args.layer_mapping) == (0.0, "block", None)
    assert not args.uses_layerwise_groups
    assert _build(layer_decay=0.9).uses_layerwise_groups
    assert _build(head_learning_rate=1e-3).uses_layerwise_groups


def test_layerwise_rates_hold_the_five_rate_settings():
    args = _build(learning_rate=1e-3, layer_decay=0.8, head_learning_rate=2e-3, layer_decay_min_scale=0.1)
    assert args.layerwise_rates == LayerwiseRates(1e-3, 0.8, 2e-3, None, 0.1)
    args.layer_decay = 0.5  # as hyperparameter_search sets a trial's values
    assert args.layerwise_rates.depth_rates(3) == [1e-4, 1.25e-4, 2.5e-4, 5e-4, 2e-3]
    assert not _build(layer_decay_min_scale=0.5).uses_layerwise_groups


def test_layer_mapping_from_a_file(tmp_path):
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps({r"^stem\.": 0, r"^head\.": 5}))
    assert _build(layer_mapping=str(path)).layer_mapping == {r"^stem\.": 0, r"^head\.": 5}


def test_every_field_has_help():
    from dataclasses import fields

    from transformers import TrainingArguments

    stock = {f.name for f in fields(TrainingArguments)}
    ours = [f for f in fields(LLRDTrainingArguments) if f.name not in stock]
    assert {f.name for f in ours} >= {
        "layer_decay",
        "head_learning_rate",
        "embedding_learning_rate",
        "layer_decay_min_scale",
        "layer_grouping",
        "layer_mapping",
    }
    assert all(f.metadata.get("help") for f in ours)

"""Parameter rules on top of the depths (param_group_rules) and LoRA+: every parameter's exact rate and weight decay,
the forms rules come in, and what is refused, naming the rule."""

import json
import re

import pytest
import torch
import transformers
from tiny_models import TOWER_LLAMA, TOWER_VISION, tiny_model
from transformers import HfArgumentParser

from finetune_llrd import LLRDTrainingArguments, ParamGroupRule, layer_map, loraplus_rules, param_groups
from finetune_llrd.groups import ParamGroupRuleError, frozen_by_rules, lr_table, parse_param_group_rules


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


LR, DECAY, WD = 1e-3, 0.5, 0.01


def _rates(groups):
    """name -> (lr, weight_decay, rule) of every grouped parameter; each name once."""
    found = {}
    for group in groups:
        for name in group["param_names"]:
            assert name not in found, f"{name} is in two groups"
            found[name] = (group["lr"], group["weight_decay"], group.get("rule"))
    return found


def _assert_minimal(groups):
    keys = [(g["layer"], g.get("tower"), g.get("rule"), g["weight_decay"]) for g in groups]
    assert len(keys) == len(set(keys)), "two groups share depth, tower, rule and weight decay"
    assert all(g["params"] for g in groups)


# ---- a BERT classifier ----


def _bert_depth(name):
    if name.startswith("bert.embeddings."):
        return 0
    match = re.match(r"bert\.encoder\.layer\.(\d+)\.", name)
    return int(match.group(1)) + 1 if match else 4  # pooler and classifier: the head


def test_bert_classifier_every_rate_and_weight_decay():
    model = tiny_model("bert", num_labels=2)
    rules = [
        {"pattern": r"^classifier\.", "name": "classifier", "lr": 5e-3},
        {"pattern": r"attention\.self\.(query|key)\.", "name": "qk", "lr_scale": 0.5, "weight_decay": 0.1},
        {"pattern": r"embeddings\.position_embeddings", "freeze": True},
        {"pattern": r"LayerNorm", "name": "norms", "weight_decay": 0.05},
    ]
    groups = param_groups(model, lr=LR, layer_decay=DECAY, weight_decay=WD, rules=rules)
    _assert_minimal(groups)
    expected = {}
    for name, param in model.named_parameters():
        if name == "bert.embeddings.position_embeddings.weight":
            continue  # frozen by the rule: in no group
        depth_rate = LR * DECAY ** (4 - _bert_depth(name))
        decay = 0.0 if param.ndim == 1 else WD
        if name.startswith("classifier."):
            expected[name] = (5e-3, decay, "classifier")
        elif re.search(r"attention\.self\.(query|key)\.", name):
            expected[name] = (depth_rate * 0.5, 0.1, "qk")
        elif "LayerNorm" in name:
            expected[name] = (depth_rate, 0.05, "norms")
        else:
            expected[name] = (depth_rate, decay, None)
    assert _rates(groups) == expected
    # the classifier's weight and bias: one rule, two decay classes
    assert [(g["layer"], g["weight_decay"]) for g in groups if g.get("rule") == "classifier"] == [(4, WD), (4, 0.0)]
    assert frozen_by_rules(model, rules) == ["bert.embeddings.position_embeddings.weight"]


def test_the_first_matching_rule_wins_and_the_others_keep_the_depth_rate():
    model = tiny_model("bert", num_labels=2)
    rules = [
        {"pattern": r"encoder\.layer\.2\.", "name": "top", "lr_scale": 2.0},
        {"pattern": r"encoder\.layer\.", "name": "blocks", "lr_scale": 0.5},
    ]
    rates = _rates(param_groups(model, lr=LR, layer_decay=DECAY, weight_decay=WD, rules=rules))
    assert {rule for name, (_, _, rule) in rates.items() if "encoder.layer.2." in name} == {"top"}
    assert {rule for name, (_, _, rule) in rates.items() if re.search(r"encoder\.layer\.[01]\.", name)} == {"blocks"}
    assert rates["bert.encoder.layer.2.output.dense.weight"][0] == LR * DECAY * 2.0
    assert rates["bert.encoder.layer.0.output.dense.weight"][0] == LR * DECAY**3 * 0.5
    assert rates["bert.pooler.dense.weight"] == (LR, WD, None)


def test_lr_table_and_inspect_rows_show_each_rule():
    model = tiny_model("bert", num_labels=2)
    groups = param_groups(
        model,
        lr=LR,
        layer_decay=DECAY,
        weight_decay=WD,
        rules=[{"pattern": "^classifier", "name": "classifier", "lr_scale": 10}],
    )
    rows = lr_table(groups, layer_map(model))
    assert [(row["depth"], row["block"], row.get("rule"), row["lr"]) for row in rows[-2:]] == [
        (4, "head", None, LR),
        (4, "head [classifier]", "classifier", LR * 10),
    ]
    assert rows[-1]["num_params"] == 32 * 2 + 2


# ---- a LoRA Llama and LoRA+ ----

peft = pytest.importorskip("peft")


def _lora_llama(embedding=False):
    targets = ["q_proj", "v_proj"] + (["embed_tokens"] if embedding else [])
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=targets)
    return peft.get_peft_model(tiny_model("llama"), config)


def _lora_depth(name):
    match = re.search(r"\.layers\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    return 0 if "embed_tokens" in name else 4  # the score head


@pytest.mark.parametrize("embedding", [False, True])
def test_loraplus_with_decay_one_gives_every_parameter_peft_s_rate(embedding):
    from peft.optimizers import create_loraplus_optimizer

    model = _lora_llama(embedding)
    names = {id(param): name for name, param in model.named_parameters()}
    reference = create_loraplus_optimizer(model, torch.optim.AdamW, lr=LR, loraplus_lr_ratio=16)
    peft_rates = {names[id(p)]: group["lr"] for group in reference.param_groups for p in group["params"]}
    groups = param_groups(model, lr=LR, layer_decay=1.0, weight_decay=WD, rules=loraplus_rules(model, 16))
    ours = {name: lr for name, (lr, _, _) in _rates(groups).items()}
    assert ours == peft_rates
    assert {name for name, lr in ours.items() if lr == LR * 16} == {name for name in ours if "lora_B" in name} | (
        {name for name in ours if "score" in name and name.endswith("bias")}
    )
    if embedding:
        assert {name for name, lr in ours.items() if lr == 1e-6} == {
            "base_model.model.model.embed_tokens.lora_embedding_A.default",
            "base_model.model.model.embed_tokens.lora_embedding_B.default",
        }


def test_loraplus_composes_with_the_depths():
    model = _lora_llama()
    args = LLRDTrainingArguments(
        output_dir="unused", report_to=[], learning_rate=LR, layer_decay=DECAY, weight_decay=WD, loraplus_lr_ratio=16
    )
    groups = param_groups(model, rates=args.layerwise_rates, weight_decay=WD, rules=args.rules_for(model))
    _assert_minimal(groups)
    expected = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth_rate = LR * DECAY ** (4 - _lora_depth(name))
        b_matrix = "lora_B" in name or param.ndim == 1
        expected[name] = (
            depth_rate * 16 if b_matrix else depth_rate,
            0.0 if param.ndim == 1 else WD,
            "loraplus_B" if b_matrix else None,
        )
    assert _rates(groups) == expected
    assert len([name for name in expected if "lora_B" in name]) == 6  # 3 blocks x (q, v)


def test_loraplus_on_a_model_without_lora_is_refused():
    model = tiny_model("bert")
    with pytest.raises(
        ParamGroupRuleError,
        match=r"loraplus_lr_ratio is set but BertForSequenceClassification has no trainable LoRA B matrix",
    ):
        param_groups(model, lr=LR, layer_decay=1.0, rules=loraplus_rules(model, 16))
    with pytest.raises(ValueError, match="loraplus_lr_embedding is set but loraplus_lr_ratio is not"):
        LLRDTrainingArguments(output_dir="unused", report_to=[], loraplus_lr_embedding=1e-5)
    with pytest.raises(ValueError, match="loraplus_lr_ratio must be a finite number > 0"):
        LLRDTrainingArguments(output_dir="unused", report_to=[], loraplus_lr_ratio=0)


# ---- a LLaVA-style model: a projector rule beside the towers ----


def _llava_depth(name):
    """Depths of the tiny LLaVA (tests/test_dense_heads.py pins them): the 4 vision blocks at 1..4, the 2 language
    blocks at 1 and 4, embeddings at 0, the projector, final norms and LM head at the head (5)."""
    vision = re.match(r"model\.vision_tower\.encoder\.layers\.(\d+)\.", name)
    if vision:
        return int(vision.group(1)) + 1
    text = re.match(r"model\.language_model\.layers\.(\d+)\.", name)
    if text:
        return (1, 4)[int(text.group(1))]
    if "embeddings" in name or "pre_layrnorm" in name or "embed_tokens" in name:
        return 0
    return 5


def test_llava_projector_rule_beside_the_towers():
    torch.manual_seed(0)
    config = transformers.LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", **TOWER_VISION),
        text_config=TOWER_LLAMA,
        image_token_index=5,
    )
    model = transformers.LlavaForConditionalGeneration(config)
    rules = [
        {"pattern": r"multi_modal_projector\.", "name": "projector", "lr": 2e-4},
        {"pattern": r"^model\.vision_tower\.", "name": "vision", "lr_scale": 0.1},
    ]
    base = 2e-5
    groups = param_groups(model, lr=base, layer_decay=0.8, weight_decay=WD, rules=rules)
    _assert_minimal(groups)
    expected = {}
    for name, param in model.named_parameters():
        depth_rate = base * 0.8 ** (5 - _llava_depth(name))
        # As LLaVA's own training (the Trainer's default groups): only 1-D parameters go without weight decay; the
        # vision tower's position embedding is decayed, as in a CLIP trained by open_clip.
        decay = 0.0 if param.ndim == 1 else WD
        if "multi_modal_projector." in name:
            expected[name] = (2e-4, decay, "projector")
        elif name.startswith("model.vision_tower."):
            expected[name] = (depth_rate * 0.1, decay, "vision")
        else:
            expected[name] = (depth_rate, decay, None)
    rates = _rates(groups)
    assert sorted(rates) == sorted(expected)
    for name, (rate, decay, rule) in expected.items():
        assert rates[name] == (pytest.approx(rate, rel=1e-12), decay, rule), name
    assert {g["layer"] for g in groups if g.get("rule") == "projector"} == {5}


# ---- a ViT: position embeddings without weight decay ----


def test_vit_position_embeddings_without_weight_decay():
    model = tiny_model("vit")
    rule = {
        "pattern": r"embeddings\.(position_embeddings|cls_token)$",
        "name": "positions",
        "weight_decay": 0.0,
        "lr_scale": 0.5,
    }
    groups = param_groups(model, lr=LR, layer_decay=DECAY, weight_decay=0.05, rules=[rule])
    _assert_minimal(groups)
    expected = {}
    for name, param in model.named_parameters():
        block = re.match(r"vit\.layers\.(\d+)\.", name)
        depth = 0 if name.startswith("vit.embeddings.") else int(block.group(1)) + 1 if block else 4
        depth_rate = LR * DECAY ** (4 - depth)
        if name in ("vit.embeddings.position_embeddings", "vit.embeddings.cls_token"):
            expected[name] = (depth_rate * 0.5, 0.0, "positions")
        else:
            expected[name] = (depth_rate, 0.0 if param.ndim == 1 else 0.05, None)
    assert _rates(groups) == expected


# ---- the forms rules come in ----

RULES = [{"pattern": "^classifier", "name": "classifier", "lr_scale": 10}, {"pattern": "LayerNorm", "weight_decay": 0}]


def test_rules_from_python_json_yaml_and_the_command_line(tmp_path):
    json_file = tmp_path / "rules.json"
    json_file.write_text(json.dumps(RULES))
    yaml_file = tmp_path / "rules.yaml"
    yaml_file.write_text(
        "- pattern: ^classifier\n  name: classifier\n  lr_scale: 10\n- pattern: LayerNorm\n  weight_decay: 0\n"
    )
    nested = tmp_path / "nested.yaml"
    nested.write_text(
        "param_group_rules:\n  - {pattern: ^classifier, name: classifier, lr_scale: 10}\n  - {pattern: LayerNorm, weight_decay: 0}\n"
    )
    forms = [
        RULES,
        json.dumps(RULES),
        str(json_file),
        str(yaml_file),
        str(nested),
        [ParamGroupRule(**rule) for rule in RULES],
    ]
    for form in forms:
        assert parse_param_group_rules(form) == RULES
    (args,) = HfArgumentParser(LLRDTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--report_to", "none", "--param_group_rules", str(yaml_file)]
    )
    assert args.param_group_rules == RULES and args.uses_layerwise_groups
    config = tmp_path / "train.yaml"
    config.write_text(
        f"output_dir: {tmp_path}\nreport_to: none\nparam_group_rules:\n  - {{pattern: ^classifier, name: classifier, lr_scale: 10}}\n"
    )
    (from_yaml,) = HfArgumentParser(LLRDTrainingArguments).parse_yaml_file(str(config))
    assert from_yaml.param_group_rules == RULES[:1]
    # Plain data: the arguments stay serializable and pickle.
    assert json.loads(args.to_json_string())["param_group_rules"] == RULES
    torch.save(args, tmp_path / "args.bin")
    assert torch.load(tmp_path / "args.bin", weights_only=False).param_group_rules == RULES


@pytest.mark.parametrize(
    "rules, message",
    [
        ([{"pattern": "(", "lr_scale": 2}], r"Parameter rule '\(': '\(' is not a valid regex"),
        ([{"pattern": "x", "lr": 1e-3, "lr_scale": 2}], r"Parameter rule 'x' sets both lr .* and lr_scale"),
        (
            [{"pattern": "x", "lr_scale": 0}],
            r"Parameter rule 'x': lr_scale must be a finite number > 0, got 0 \(to train nothing, use freeze: true\)",
        ),
        ([{"pattern": "x", "lr": -1}], r"Parameter rule 'x': lr must be a finite number >= 0"),
        (
            [{"pattern": "x", "weight_decay": float("nan")}],
            r"Parameter rule 'x': weight_decay must be a finite number",
        ),
        ([{"pattern": "x", "name": "a/b", "lr_scale": 2}], r"name must be a non-empty string without '/'"),
        (
            [{"pattern": "x", "freeze": True, "lr": 1e-3}],
            r"Parameter rule 'x' freezes its parameters and also sets lr",
        ),
        ([{"pattern": "x"}], r"Parameter rule 'x' changes nothing"),
        ([{"pattern": "x", "lr_Scale": 2}], r"param_group_rules\[0\] \('x'\) has unknown keys \['lr_Scale'\]"),
        ([{"lr_scale": 2}], r"param_group_rules\[0\] has no pattern"),
        (
            [{"pattern": "a", "name": "n", "lr_scale": 2}, {"pattern": "b", "name": "n", "lr_scale": 3}],
            r"name \['n'\] more than once",
        ),
        ('{"pattern": "x"}', r"must be a list of rules"),
        ("no/such/file.yaml", r"neither"),
    ],
)
def test_invalid_rules_are_refused_naming_the_rule(rules, message):
    with pytest.raises(ParamGroupRuleError, match=message):
        parse_param_group_rules(rules)
    with pytest.raises(ValueError, match=message):
        LLRDTrainingArguments(output_dir="unused", report_to=[], param_group_rules=rules)


def test_a_rule_that_matches_no_trainable_parameter_is_refused():
    model = tiny_model("bert", num_labels=2)
    with pytest.raises(
        ParamGroupRuleError,
        match=r"Parameter rule 'projector' \('multi_modal_projector'\) matches no trainable parameter .*bert\.embeddings",
    ):
        param_groups(
            model,
            lr=LR,
            layer_decay=DECAY,
            rules=[{"pattern": "multi_modal_projector", "name": "projector", "lr_scale": 10}],
        )
    # An earlier rule takes everything the later one would match.
    with pytest.raises(
        ParamGroupRuleError, match=r"Parameter rule 'pooler' .*2 parameters taken by the earlier rule 'bert'"
    ):
        param_groups(
            model,
            lr=LR,
            layer_decay=DECAY,
            rules=[{"pattern": "bert", "lr_scale": 2}, {"pattern": "pooler", "name": "pooler", "lr_scale": 3}],
        )
    for param in model.bert.pooler.parameters():
        param.requires_grad_(False)
    with pytest.raises(ParamGroupRuleError, match="'pooler' matches no trainable parameter"):
        param_groups(model, lr=LR, layer_decay=DECAY, rules=[{"pattern": "pooler", "lr_scale": 3}])
    # A freeze rule on parameters that are frozen already does what it says: they stay out of every group.
    groups = param_groups(model, lr=LR, layer_decay=DECAY, rules=[{"pattern": "pooler", "freeze": True}])
    assert not any("pooler" in name for group in groups for name in group["param_names"])


# ---- every parameter in exactly one group, with rules, on every architecture of the tiny set ----

GENERIC_RULES = [
    {"pattern": r"(?i)norm|ln_", "name": "norms", "weight_decay": 0.0, "lr_scale": 2.0},
    {"pattern": r"embed|shared|wte|wpe", "name": "embeddings", "lr": 1e-5},
]


@pytest.mark.parametrize(
    "model_type",
    [
        "bert",
        "roberta",
        "deberta-v2",
        "electra",
        "gpt2",
        "llama",
        "t5",
        "bart",
        "vit",
        "beit",
        "swin",
        "convnext",
        "clip",
    ],
)
def test_every_parameter_lands_in_exactly_one_group_with_rules(model_type):
    model = tiny_model(model_type)
    groups = param_groups(model, lr=LR, layer_decay=DECAY, weight_decay=WD, rules=GENERIC_RULES)
    _assert_minimal(groups)
    grouped = [name for group in groups for name in group["param_names"]]
    assert sorted(grouped) == sorted(name for name, p in model.named_parameters() if p.requires_grad)
    rates = _rates(groups)
    norms = {name for name in rates if re.search(r"(?i)norm|ln_", name)}
    assert {name for name, (_, _, rule) in rates.items() if rule == "norms"} == norms
    assert {name for name, (_, _, rule) in rates.items() if rule == "embeddings"} == {
        name for name in rates if re.search(r"embed|shared|wte|wpe", name) and name not in norms
    }
    assert all(rate == 1e-5 for rate, _, rule in rates.values() if rule == "embeddings")
    assert all(decay == 0.0 for _, decay, rule in rates.values() if rule == "norms")

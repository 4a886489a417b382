"""Every rule example of the README and docs/rules.md, applied to a tiny model of the family it names (built from a
config): the tables' rows of other frameworks (axolotl, NeMo, LLaMA-Factory, DETR, ViTDet, peft) on Llama, Qwen2-MoE,
Mixtral, LLaVA, HF's DETR and VitDet, and the page's first example on a LLaVA; and what a rule that matches only
frozen parameters says."""

import re
import shlex
import sys
import types
from pathlib import Path

import pytest
import torch
import transformers
import yaml
from tiny_models import TOWER_LLAMA, TOWER_VISION
from transformers import HfArgumentParser

from finetune_llrd import LLRDTrainingArguments, layer_map, param_groups
from finetune_llrd.groups import ParamGroupRuleError, frozen_by_rules
from finetune_llrd.optimizers import layerwise_muon


ROOT = Path(__file__).resolve().parent.parent
# The tiny decoders: the 2-block Llama of the multi-modal towers.
DECODER = {key: value for key, value in TOWER_LLAMA.items() if key != "model_type"}


def llama():
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**DECODER))


def qwen2_moe():
    config = transformers.Qwen2MoeConfig(
        **DECODER, moe_intermediate_size=16, shared_expert_intermediate_size=16, num_experts=4, num_experts_per_tok=2
    )
    return transformers.Qwen2MoeForCausalLM(config)


def mixtral():
    return transformers.MixtralForCausalLM(transformers.MixtralConfig(**DECODER, num_local_experts=4))


def lora_llama():
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(
        task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "embed_tokens"]
    )
    return peft.get_peft_model(llama(), config)


def llava():
    config = transformers.LlavaConfig(
        vision_config=dict(model_type="clip_vision_model", **TOWER_VISION),
        text_config=TOWER_LLAMA,
        image_token_index=5,
    )
    return transformers.LlavaForConditionalGeneration(config)


def detr(unfreeze=True):
    """HF's DETR with a transformers ResNet backbone (no timm); transformers freezes that backbone whole."""
    backbone = dict(
        model_type="resnet", embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], out_features=["stage2"]
    )
    config = transformers.DetrConfig(
        use_timm_backbone=False,
        use_pretrained_backbone=False,
        backbone_config=backbone,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        num_queries=5,
        num_labels=3,
    )
    model = transformers.DetrForObjectDetection(config)
    if unfreeze:
        model.model.unfreeze_backbone()
    return model


def vitdet():
    config = transformers.VitDetConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2, image_size=32, pretrain_image_size=32
    )
    return transformers.VitDetModel(config)


# The first cell of a table row (the other framework's option) -> the families its rules are tried on.
FAMILIES = [
    ("ViTDet", (vitdet,)),
    ("DETR", (detr,)),
    ("loraplus", (lora_llama,)),
    ("vision-tower", (llava,)),
    ("freeze_vision_tower", (llava,)),
    ("lr_groups", (llama, qwen2_moe, mixtral)),
    ("NeMo", (qwen2_moe, mixtral)),
    ("embedding", (llama, qwen2_moe)),
    ("use_muon", (llama, mixtral)),
]


def _table_rows(page):
    """(first cell, [argument lists]) of every row of the page's framework tables that has a runnable flag."""
    rows = []
    for line in (ROOT / page).read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if len(cells) != 2 or not line.startswith("|") or set(cells[1]) <= set("-"):
            continue
        commands = [span for span in re.findall(r"`([^`]+)`", cells[1]) if span.startswith("--") and " " in span]
        if commands and "--" in cells[1]:
            rows.append((cells[0], [shlex.split(command) for command in commands]))
    return rows


ROWS = [
    (page, cell, argv)
    for page in ("README.md", "docs/rules.md")
    for cell, argvs in _table_rows(page)
    for argv in argvs
]


def _families(cell):
    return next(families for key, families in FAMILIES if key in cell)


def _arguments(tmp_path, argv):
    (args,) = HfArgumentParser(LLRDTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--report_to", "none", "--learning_rate", "1e-3", *argv]
    )
    return args


def _apply(model, args):
    """What the trainers do: freeze what a freeze rule takes, then build the groups."""
    rules = args.rules_for(model)
    params = dict(model.named_parameters())
    for name in frozen_by_rules(model, rules):
        params[name].requires_grad_(False)
    return rules, param_groups(model, rates=args.layerwise_rates, weight_decay=0.01, rules=rules)


def test_every_framework_row_names_a_family():
    cells = [cell for _, cell, _ in ROWS]
    assert len(ROWS) == 17, cells  # README: 8 rows; docs/rules.md: 8 rows with a command, one with two
    for cell in cells:
        assert any(key in cell for key, _ in FAMILIES), cell


@pytest.mark.parametrize(
    "page, cell, argv, family",
    [(page, cell, argv, family) for page, cell, argv in ROWS for family in _families(cell)],
    ids=lambda value: value.__name__ if callable(value) else None,
)
def test_each_framework_row_works_on_its_family(page, cell, argv, family, tmp_path):
    torch.manual_seed(0)
    model = family()
    args = _arguments(tmp_path, argv)
    user_rules = args.rules_for(model)[: len(args.param_group_rules or [])]
    rules, groups = _apply(model, args)
    grouped = {name: group for group in groups for name in group["param_names"]}
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    assert sorted(grouped) == sorted(trainable)
    taken = set()
    for rule in user_rules:
        names = {name for name, _ in model.named_parameters() if re.search(rule.pattern, name)} - taken
        taken |= names
        assert names, (cell, rule)
        if rule.freeze:
            assert not names & set(grouped)
            continue
        assert {name for name, group in grouped.items() if group.get("rule") == rule.name} == names
        for name in names:
            if rule.lr is not None:
                assert grouped[name]["lr"] == rule.lr
            if rule.weight_decay is not None:
                assert grouped[name]["weight_decay"] == rule.weight_decay
    if args.loraplus_lr_ratio is not None:
        b_groups = [group for group in groups if group.get("rule") == "loraplus_B"]
        assert sum(len(group["params"]) for group in b_groups) == 4  # 2 blocks x (q, v)
    if args.embedding_learning_rate is not None:
        assert {group["lr"] for group in groups if group["layer"] == 0} == {args.embedding_learning_rate}
    if args.use_muon:
        # Muon on the blocks' hidden matrices, AdamW on the rest (embeddings, norms, head), each at its depth's rate.
        layers = layer_map(model)
        optimizer = layerwise_muon(model, layers=layers, rates=args.layerwise_rates, weight_decay=0.01)
        for group in optimizer.param_groups:
            for name, param in zip(group["param_names"], group["params"]):
                depth = layers.depths[name]
                assert group["use_muon"] is (param.ndim == 2 and 1 <= depth <= layers.num_layers), name
                assert group["lr"] == args.layerwise_rates.depth_rates(layers.num_layers)[depth], name


def test_the_first_example_of_the_rules_page_on_a_llava(tmp_path, monkeypatch):
    text = (ROOT / "docs/rules.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    module = types.ModuleType("docs_rules_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(code, module.__dict__)
    args = module.args
    torch.manual_seed(0)
    model = llava()
    groups = param_groups(model, rates=args.layerwise_rates, weight_decay=0.01, rules=args.rules_for(model))
    rates = {
        name: (group["lr"], group["weight_decay"], group.get("rule"))
        for group in groups
        for name in group["param_names"]
    }
    # depths: the 4 vision blocks 1..4, embeddings 0, head 5; rate 2e-5 * 0.9 ** (5 - depth).
    assert rates["model.vision_tower.embeddings.position_embedding.weight"] == (
        pytest.approx(2e-5 * 0.9**5 * 0.1, rel=1e-12),
        0.0,
        "positions",
    )
    assert rates["model.vision_tower.encoder.layers.3.mlp.fc1.weight"] == (
        pytest.approx(2e-5 * 0.9 * 0.1, rel=1e-12),
        0.01,
        "vision",
    )
    assert rates["model.multi_modal_projector.linear_1.weight"] == (2e-4, 0.01, "projector")
    assert {rule for _, _, rule in rates.values()} == {"positions", "vision", "projector", None}
    # The yaml file of the page, on the same family: the tower frozen, the projector at its rate.
    rules = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))
    frozen = frozen_by_rules(model, rules)
    assert len(frozen) == sum(1 for name, _ in model.named_parameters() if name.startswith("model.vision_tower."))


def test_the_pages_old_order_is_refused_naming_the_rule_that_took_the_positions():
    model = llava()
    rules = [
        {"pattern": r"^model\.vision_tower\.", "name": "vision", "lr_scale": 0.1},
        {"pattern": r"pos_embed|position_embedding", "name": "positions", "weight_decay": 0.0},
    ]
    with pytest.raises(ParamGroupRuleError) as error:
        param_groups(model, lr=1e-3, layer_decay=1.0, rules=rules)
    assert str(error.value) == (
        "Parameter rule 'positions' ('pos_embed|position_embedding') matches no trainable parameter and would be "
        "dropped in silence: its pattern matches 1 parameter, 1 parameter taken by the earlier rule 'vision' "
        "('^model\\\\.vision_tower\\\\.') (the first rule that matches wins), e.g. "
        "model.vision_tower.embeddings.position_embedding.weight. Put the rule before the ones that take its "
        "parameters, or narrow their patterns, or drop the rule. See every parameter with `finetune-llrd inspect "
        'MODEL --json` (its "parameters").'
    )


def test_a_rule_on_parameters_the_model_froze_says_they_are_frozen(tmp_path):
    model = detr(unfreeze=False)
    backbone = [name for name, _ in model.named_parameters() if "backbone" in name]
    assert len(backbone) == 8 and not any(p.requires_grad for n, p in model.named_parameters() if n in backbone)
    with pytest.raises(ParamGroupRuleError) as error:
        param_groups(model, lr=1e-4, layer_decay=1.0, rules=[{"pattern": "backbone", "lr": 1e-5}])
    assert str(error.value) == (
        "Parameter rule 'backbone' matches no trainable parameter and would be dropped in silence: its pattern "
        "matches 8 parameters, 8 parameters frozen before the rules apply (requires_grad=False: by the model, as "
        f"HF's DETR freezes its ResNet backbone, or by your code), e.g. {', '.join(backbone[:3])}, .... Unfreeze "
        "them (requires_grad_(True)) before training to train them, or drop the rule. See every parameter with "
        '`finetune-llrd inspect MODEL --json` (its "parameters").'
    )
    # As the page says, from_pretrained leaves that backbone trainable (transformers 5.25).
    model.save_pretrained(tmp_path)
    loaded = transformers.DetrForObjectDetection.from_pretrained(tmp_path)
    assert all(p.requires_grad for n, p in loaded.named_parameters() if "backbone" in n)
    # The page's fix: unfreeze, then freeze what the DETR paper freezes.
    text = (ROOT / "docs/rules.md").read_text()
    line = next(line for line in text.splitlines() if line.startswith('`[{"pattern": "backbone'))
    rules = line.rstrip(".").strip("`")
    model.model.unfreeze_backbone()
    args = LLRDTrainingArguments(output_dir="unused", report_to=[], learning_rate=1e-4, param_group_rules=rules)
    _, groups = _apply(model, args)
    grouped = {name for group in groups if group.get("rule") == "backbone" for name in group["param_names"]}
    assert sorted(grouped) == sorted(name for name in backbone if ".stages.1." in name)


def test_a_rule_behind_a_freeze_rule_says_which_froze_its_parameters():
    model = llava()
    rules = [
        {"pattern": "vision_tower", "freeze": True},
        {"pattern": "position_embedding", "name": "positions", "weight_decay": 0.0},
    ]
    # The trainers call frozen_by_rules before building the groups: it refuses the rule, as param_groups does.
    message = (
        r"^Parameter rule 'positions' \('position_embedding'\) matches no trainable parameter and would be "
        r"dropped in silence: its pattern matches 1 parameter, 1 parameter frozen by the earlier freeze rule "
        r"'vision_tower', e\.g\. model\.vision_tower\.embeddings\.position_embedding\.weight\. Put the rule before"
    )
    with pytest.raises(ParamGroupRuleError, match=message):
        frozen_by_rules(model, rules)
    model.model.vision_tower.requires_grad_(False)
    with pytest.raises(ParamGroupRuleError, match=message):
        param_groups(model, lr=1e-3, layer_decay=1.0, rules=rules)

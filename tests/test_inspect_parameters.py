"""``finetune-llrd inspect``: every parameter in ``--json`` (trained and frozen, with who froze it), the count of the
frozen parameters under the table, and LoRA+ on a PEFT adapter folder or a base model with ``--use_peft``."""

import json

import pytest
from test_rules_examples import llama, llava

from finetune_llrd.cli import main


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    llava().save_pretrained(root / "llava")
    llama().save_pretrained(root / "llama")
    return root


def _inspect_json(capsys, *argv):
    capsys.readouterr()
    assert main(["inspect", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_lists_every_parameter_with_its_group_and_who_froze_the_frozen(folders, capsys):
    rules = '[{"pattern": "vision_tower", "freeze": true}, {"pattern": "multi_modal_projector", "lr": 2e-4}]'
    rows = _inspect_json(capsys, folders / "llava", "--from_config", "--param_group_rules", rules)
    parameters = [entry for row in rows for entry in row["parameters"]]
    expected = [name for name, _ in llava().named_parameters()]
    assert sorted(entry["name"] for entry in parameters) == sorted(expected)
    by_name = {entry["name"]: entry for entry in parameters}
    assert by_name["model.multi_modal_projector.linear_1.weight"] == {
        "name": "model.multi_modal_projector.linear_1.weight",
        "depth": 5,
        "group": "head [multi_modal_projector]",
        "lr": 2e-4,
        "weight_decay": 0.01,
        "trains": True,
    }
    assert by_name["model.vision_tower.embeddings.position_embedding.weight"] == {
        "name": "model.vision_tower.embeddings.position_embedding.weight",
        "depth": 0,
        "group": None,
        "lr": None,
        "weight_decay": None,
        "trains": False,
        "frozen_by": "rule vision_tower",
    }
    frozen_rows = [row for row in rows if row.get("frozen")]
    assert [(row["depth"], row["block"]) for row in frozen_rows] == [
        (0, "vision embeddings [frozen]"),
        (1, "vision 1/4 [frozen]"),
        (2, "vision 2/4 [frozen]"),
        (3, "vision 3/4 [frozen]"),
        (4, "vision 4/4 [frozen]"),
        (5, "vision head [frozen]"),
    ]
    vision = sum(p.numel() for name, p in llava().named_parameters() if name.startswith("model.vision_tower."))
    assert sum(row["num_params"] for row in frozen_rows) == vision
    assert all(row["lr"] is None for row in frozen_rows)


def test_the_table_counts_the_frozen_parameters(folders, capsys):
    capsys.readouterr()
    argv = [
        "inspect",
        str(folders / "llava"),
        "--from_config",
        "--param_group_rules",
        '[{"pattern": "vision_tower", "freeze": true}]',
    ]
    assert main(argv) == 0
    vision = [(name, p.numel()) for name, p in llava().named_parameters() if name.startswith("model.vision_tower.")]
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"frozen, not trained: {sum(size for _, size in vision):,} parameters in {len(vision)} tensors frozen by the "
        f"rule vision_tower, e.g. {vision[0][0]}, {vision[1][0]}, ..."
    )


def _loraplus_rates(rows):
    return {entry["name"]: entry["lr"] for row in rows for entry in row["parameters"] if entry["trains"]}


def test_loraplus_on_a_base_model_with_use_peft(folders, capsys):
    rows = _inspect_json(
        capsys, folders / "llama", "--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj",
        "--learning_rate", "2e-4", "--layer_decay", "0.5", "--loraplus_lr_ratio", "16",
    )  # fmt: skip
    rates = _loraplus_rates(rows)
    # 2 blocks, depths 1 and 2 of 0..3: 2e-4 * 0.5 ** (3 - depth); the B matrices at 16 times that.
    assert rates == {
        f"base_model.model.model.layers.{block}.self_attn.{proj}.lora_{matrix}.default.weight": 2e-4
        * 0.5 ** (2 - block)
        * (16 if matrix == "B" else 1)
        for block in (0, 1)
        for proj in ("q_proj", "v_proj")
        for matrix in ("A", "B")
    }
    assert sum(1 for row in rows for entry in row["parameters"] if not entry["trains"]) == 21


def test_loraplus_on_a_peft_adapter_folder(folders, capsys, tmp_path):
    peft = pytest.importorskip("peft")
    config = peft.LoraConfig(task_type="CAUSAL_LM", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    model = peft.get_peft_model(llama(), config)
    model.peft_config["default"].base_model_name_or_path = str(folders / "llama")
    model.save_pretrained(tmp_path / "adapter")
    rows = _inspect_json(
        capsys, tmp_path / "adapter", "--learning_rate", "2e-4", "--layer_decay", "1.0", "--loraplus_lr_ratio", "16"
    )
    rates = _loraplus_rates(rows)
    assert len(rates) == 8
    assert {name: lr for name, lr in rates.items() if lr == 2e-4 * 16} == {
        name: 2e-4 * 16 for name in rates if "lora_B" in name
    }


def test_loraplus_without_lora_layers_is_one_line(folders, capsys):
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main(["inspect", str(folders / "llama"), "--from_config", "--loraplus_lr_ratio", "16"])
    assert exited.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "finetune-llrd inspect: loraplus_lr_ratio is set but LlamaForCausalLM has no trainable LoRA B matrix (lora_B): "
        "LoRA+ sets the rates of LoRA adapters. Add adapters (peft's get_peft_model, or --use_peft in the SFT recipe), "
        "or leave loraplus_lr_ratio out."
    ]

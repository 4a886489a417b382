"""PEFT-wrapped models: only the adapters and the head are grouped, at the depths of the base model."""

import pytest
from tiny_models import tiny_model

from finetune_llrd import layer_map, param_groups


peft = pytest.importorskip("peft")


@pytest.mark.parametrize(
    "model_type, targets, block_path, head",
    [
        ("bert", ["query", "value"], "bert.encoder.layer", "classifier"),
        ("llama", ["q_proj", "v_proj"], "model.layers", "score"),
    ],
)
def test_lora_adapters_and_head_only(model_type, targets, block_path, head):
    base = tiny_model(model_type)
    config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=targets)
    model = peft.get_peft_model(base, config)
    groups = param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    layers = layer_map(model)

    grouped = {name for group in groups for name in group["param_names"]}
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert grouped == trainable
    adapters = {name for name in grouped if ".lora_" in name}
    heads = grouped - adapters
    assert len(adapters) == 3 * len(targets) * 2  # 3 blocks x targets x (A, B)
    assert heads and all(f"{head}.modules_to_save.default." in name for name in heads)

    assert layers.num_layers == 3
    prefix = f"base_model.model.{block_path}."
    for name in adapters:
        block = int(name[len(prefix) :].split(".", 1)[0])
        assert layers.depths[name] == block + 1, name
    assert {layers.depths[name] for name in heads} == {4}
    rates = {g["layer"]: g["lr"] for g in groups}
    assert rates == {1: 1e-3 * 0.5**3, 2: 1e-3 * 0.5**2, 3: 1e-3 * 0.5, 4: 1e-3}
    assert {g["weight_decay"] for g in groups if g["layer"] < 4} == {0.01}  # LoRA matrices are 2-D

"""Paths that work with parameter rules and LoRA+, pinned: TRL's RewardTrainer, KTOTrainer and GRPOTrainer composed
with a rule, a resume refused after a LoRA+ change, and a freeze rule beside gradual unfreezing."""

import pytest
import torch
from composition_helpers import random_texts, tiny_llama, word_tokenizer
from tiny_models import tiny_config, tiny_model
from training import RandomTokens, training_args
from transformers import LlamaForSequenceClassification

from finetune_llrd import LLRDTrainer, layerwise_arguments, layerwise_trainer
from finetune_llrd.checkpoints import CheckpointError


trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

# Tiny Llama: 3 blocks, depths 0..4; lr 1e-3 and decay 0.5 give 1e-3 * 0.5 ** (4 - d). The rule: o_proj at 1e-6.
LLAMA_RATES = {depth: 1e-3 * 0.5 ** (4 - depth) for depth in range(5)}
O_PROJ = [{"pattern": r"self_attn\.o_proj", "name": "o_proj", "lr": 1e-6}]


def _config(cls, output_dir, **overrides):
    settings = dict(
        layer_decay=0.5,
        max_steps=1,
        logging_steps=1,
        per_device_train_batch_size=4,
        bf16=False,
        gradient_checkpointing=False,
        param_group_rules=O_PROJ,
    )
    settings.update(overrides)
    return training_args(output_dir, cls=layerwise_arguments(cls), **settings)


def _check_groups(trainer, model):
    groups = trainer.optimizer.param_groups
    assert {g["layer"]: g["initial_lr"] for g in groups if "rule" not in g} == LLAMA_RATES
    o_proj = sorted(name for g in groups if g.get("rule") == "o_proj" for name in g["param_names"])
    assert o_proj == [f"model.layers.{block}.self_attn.o_proj.weight" for block in range(3)]
    assert {g["initial_lr"] for g in groups if g.get("rule") == "o_proj"} == {1e-6}
    grouped = sorted(name for g in groups for name in g["param_names"])
    assert grouped == sorted(name for name, p in model.named_parameters() if p.requires_grad)
    first = trainer.state.log_history[0]
    assert first["lr/o_proj/layer_01"] == 1e-6 and first["lr/head"] == 1e-3


def test_reward_trainer_with_a_rule(tmp_path):
    config = tiny_config("llama", num_labels=1, vocab_size=94, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    texts = random_texts(16, seed=3)
    data = datasets.Dataset.from_dict({"chosen": texts[:8], "rejected": texts[8:]})
    trainer = layerwise_trainer(trl.RewardTrainer)(
        model=model,
        args=_config(trl.RewardConfig, tmp_path, max_length=16),
        train_dataset=data,
        processing_class=word_tokenizer(),
    )
    trainer.train()
    _check_groups(trainer, model)


def test_kto_trainer_with_a_rule(tmp_path):
    prompts, completions = random_texts(8, seed=1), random_texts(8, length=4, seed=2)
    data = datasets.Dataset.from_dict(
        {"prompt": prompts, "completion": [" " + c for c in completions], "label": [True, False] * 4}
    )
    model = tiny_llama()
    trainer = layerwise_trainer(trl.KTOTrainer)(
        model=model,
        ref_model=tiny_llama(seed=1),
        args=_config(trl.KTOConfig, tmp_path, max_length=32, per_device_train_batch_size=8),
        train_dataset=data,
        processing_class=word_tokenizer(),
    )
    trainer.train()
    _check_groups(trainer, model)


def test_grpo_trainer_with_a_rule(tmp_path):
    data = datasets.Dataset.from_dict({"prompt": random_texts(4, length=4, seed=1)})
    model = tiny_llama()
    trainer = layerwise_trainer(trl.GRPOTrainer)(
        model=model,
        reward_funcs=lambda completions, **kwargs: [float(len(c)) for c in completions],
        args=_config(
            trl.GRPOConfig,
            tmp_path,
            num_generations=2,
            per_device_train_batch_size=2,
            max_completion_length=4,
        ),
        train_dataset=data,
        processing_class=word_tokenizer(),
    )
    trainer.train()
    _check_groups(trainer, model)


def test_a_resume_after_a_loraplus_change_is_refused(tmp_path):
    peft = pytest.importorskip("peft")

    def lora_model():
        config = peft.LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
        return peft.get_peft_model(tiny_model("llama", num_labels=2), config)

    data = RandomTokens(num_labels=2)
    args = training_args(
        tmp_path / "out", layer_decay=0.5, max_steps=2, save_strategy="steps", save_steps=2, loraplus_lr_ratio=16
    )
    LLRDTrainer(model=lora_model(), args=args, train_dataset=data).train()
    args = training_args(tmp_path / "out", layer_decay=0.5, max_steps=4, loraplus_lr_ratio=4)
    trainer = LLRDTrainer(model=lora_model(), args=args, train_dataset=data)
    with pytest.raises(CheckpointError, match=r"lr 0\.008 in the checkpoint, 0\.002 now"):
        trainer.train(resume_from_checkpoint=True)


def test_a_freeze_rule_beside_gradual_unfreezing_stays_frozen(tmp_path):
    model = tiny_model("bert")
    rules = [
        {"pattern": r"embeddings\.position_embeddings", "freeze": True},
        {"pattern": r"^classifier\.", "name": "classifier", "lr_scale": 10},
    ]
    args = training_args(tmp_path, layer_decay=0.5, gradual_unfreeze_steps=1, max_steps=5, param_group_rules=rules)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens())
    trainer.train()
    frozen = "bert.embeddings.position_embeddings.weight"
    # Step 5 trains depth 0 (the embeddings) too; the frozen position embeddings never move and stay frozen.
    changed = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert frozen not in changed and "bert.embeddings.word_embeddings.weight" in changed
    assert {name for name, p in model.named_parameters() if not p.requires_grad} == {frozen}
    grouped = {name for g in trainer.optimizer.param_groups for name in g["param_names"]}
    assert frozen not in grouped and {g["initial_lr"] for g in trainer.optimizer.param_groups if g.get("rule")} == {
        1e-2
    }

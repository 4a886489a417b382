"""TRL's SFTTrainer and DPOTrainer with layer-wise rates: layerwise_trainer / layerwise_arguments on a tiny Llama."""

import dataclasses

import pytest
import torch
from composition_helpers import random_texts, tiny_llama, word_tokenizer
from transformers import HfArgumentParser

from finetune_llrd import LayerwiseArgumentsMixin, layerwise_arguments, layerwise_trainer


trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

# Tiny Llama: 3 blocks, so depths 0..4; lr 1e-3 and decay 0.5 give 1e-3 * 0.5 ** (4 - d).
LLAMA_RATES = {depth: 1e-3 * 0.5 ** (4 - depth) for depth in range(5)}
LLAMA_LOGS = {
    "lr/layer_00": LLAMA_RATES[0],
    "lr/layer_01": LLAMA_RATES[1],
    "lr/layer_02": LLAMA_RATES[2],
    "lr/layer_03": LLAMA_RATES[3],
    "lr/head": LLAMA_RATES[4],
}


def _field_defaults(cls):
    return {
        f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        for f in dataclasses.fields(cls)
    }


def _config(cls, output_dir, **overrides):
    settings = dict(
        output_dir=str(output_dir),
        learning_rate=1e-3,
        layer_decay=0.5,
        weight_decay=0.01,
        max_steps=2,
        logging_steps=1,
        per_device_train_batch_size=4,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        bf16=False,
        seed=0,
        data_seed=0,
        gradient_checkpointing=False,
        max_length=16,
    )
    settings.update(overrides)
    return layerwise_arguments(cls)(**settings)


def _sft_trainer(output_dir, model=None, **overrides):
    texts = random_texts(16)
    return layerwise_trainer(trl.SFTTrainer)(
        model=tiny_llama() if model is None else model,
        args=_config(trl.SFTConfig, output_dir, **overrides),
        train_dataset=datasets.Dataset.from_dict({"text": texts}),
        processing_class=word_tokenizer(),
    )


@pytest.mark.parametrize("config_cls", [trl.SFTConfig, trl.DPOConfig])
def test_the_configs_keep_their_own_defaults(config_cls):
    composed = layerwise_arguments(config_cls)
    assert composed.__name__ == f"LLRD{config_cls.__name__}"
    ours = {f.name for f in dataclasses.fields(LayerwiseArgumentsMixin)}
    defaults = _field_defaults(composed)
    assert {k: v for k, v in defaults.items() if k not in ours} == _field_defaults(config_cls)
    built = composed(output_dir="unused", report_to=[], use_cpu=True)
    stock = config_cls(output_dir="unused", report_to=[], use_cpu=True)
    assert {k: v for k, v in built.to_dict().items() if k not in ours} == stock.to_dict()


def test_sft_config_defaults_are_trls_not_transformers():
    defaults = _field_defaults(layerwise_arguments(trl.SFTConfig))
    assert (defaults["learning_rate"], defaults["logging_steps"], defaults["gradient_checkpointing"]) == (
        2e-5,
        10,
        True,
    )
    assert (defaults["lr_scheduler_type"], defaults["bf16"]) == ("linear", None)
    args = layerwise_arguments(trl.SFTConfig)(output_dir="unused", report_to=[], use_cpu=True)
    assert (args.learning_rate, args.logging_steps, args.gradient_checkpointing) == (2e-5, 10, True)
    assert args.bf16 is True  # SFTConfig's __post_init__: bf16 unless fp16
    (parsed,) = HfArgumentParser(layerwise_arguments(trl.SFTConfig)).parse_args_into_dataclasses(
        [
            "--output_dir",
            "unused",
            "--report_to",
            "none",
            "--use_cpu",
            "true",
            "--layer_decay",
            "0.8",
            "--lr_scheduler_type",
            "slanted_triangular",
        ]
    )
    assert (parsed.layer_decay, parsed.learning_rate, parsed.logging_steps, parsed.lr_scheduler_type) == (
        0.8,
        2e-5,
        10,
        "slanted_triangular",
    )
    assert layerwise_arguments(trl.DPOConfig)(output_dir="unused", report_to=[], use_cpu=True).learning_rate == 1e-6


def test_sft_trainer_logs_per_depth_rates_on_a_tiny_llama(tmp_path):
    trainer = _sft_trainer(tmp_path)
    assert isinstance(trainer.args, trl.SFTConfig)  # SFTTrainer keeps the composed config (no to_dict() copy)
    trainer.train()
    groups = trainer.optimizer.param_groups
    assert {g["layer"]: g["initial_lr"] for g in groups} == LLAMA_RATES
    grouped = [name for g in groups for name in g["param_names"]]
    assert sorted(grouped) == sorted(n for n, p in trainer.model.named_parameters() if p.requires_grad)
    first = trainer.state.log_history[0]
    assert {key: first[key] for key in first if key.startswith("lr/")} == LLAMA_LOGS
    assert "mean_token_accuracy" in first  # SFTTrainer's own log still runs


def test_sft_checkpoint_saves_and_a_resumed_run_continues_with_the_same_groups(tmp_path):
    first = _sft_trainer(tmp_path / "run", max_steps=3, save_strategy="steps", save_steps=2)
    first.train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    saved = torch.load(checkpoint / "training_args.bin", weights_only=False)
    assert type(saved).__name__ == "LLRDSFTConfig" and saved.layer_decay == 0.5

    resumed = _sft_trainer(
        tmp_path / "run", model=tiny_llama(seed=1), max_steps=3, save_strategy="steps", save_steps=2
    )
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 3
    summary = [(g["layer"], g["initial_lr"], g["param_names"]) for g in first.optimizer.param_groups]
    assert [(g["layer"], g["initial_lr"], g["param_names"]) for g in resumed.optimizer.param_groups] == summary
    assert resumed.state.log_history[-2]["step"] == 3
    assert resumed.state.log_history[-2]["lr/head"] == pytest.approx(first.state.log_history[2]["lr/head"])


def test_lora_given_to_sft_keeps_the_full_models_depths(tmp_path):
    peft = pytest.importorskip("peft")
    texts = random_texts(16)
    trainer = layerwise_trainer(trl.SFTTrainer)(
        model=tiny_llama(),
        args=_config(trl.SFTConfig, tmp_path, max_steps=1),
        train_dataset=datasets.Dataset.from_dict({"text": texts}),
        processing_class=word_tokenizer(),
        peft_config=peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    trainer.train()
    groups = trainer.optimizer.param_groups
    names = [name for g in groups for name in g["param_names"]]
    assert len(names) == 3 * 2 * 2 and all(".lora_" in name for name in names)  # 3 blocks x (q, v) x (A, B)
    for group in groups:
        blocks = {int(name.split("model.layers.")[1].split(".")[0]) for name in group["param_names"]}
        assert blocks == {group["layer"] - 1}
        assert group["initial_lr"] == LLAMA_RATES[group["layer"]]
    assert sorted(g["layer"] for g in groups) == [1, 2, 3]


def test_dpo_reference_model_gets_no_group(tmp_path):
    prompts, completions = random_texts(8, seed=1), random_texts(16, length=4, seed=2)
    data = datasets.Dataset.from_dict(
        {
            "prompt": prompts,
            "chosen": [" " + c for c in completions[:8]],
            "rejected": [" " + c for c in completions[8:]],
        }
    )
    policy, reference = tiny_llama(), tiny_llama(seed=1)
    trainer = layerwise_trainer(trl.DPOTrainer)(
        model=policy,
        ref_model=reference,
        args=_config(trl.DPOConfig, tmp_path, max_steps=1, max_length=32),
        train_dataset=data,
        processing_class=word_tokenizer(),
    )
    reference_before = {n: p.detach().clone() for n, p in reference.named_parameters()}
    trainer.train()
    grouped = [id(p) for g in trainer.optimizer.param_groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in policy.parameters()}
    assert not {id(p) for p in reference.parameters()} & set(grouped)
    assert all(torch.equal(reference_before[n], p) for n, p in reference.named_parameters())
    assert {g["layer"]: g["initial_lr"] for g in trainer.optimizer.param_groups} == LLAMA_RATES
    first = trainer.state.log_history[0]
    assert {key: first[key] for key in first if key.startswith("lr/")} == LLAMA_LOGS
    assert "rewards/margins" in first


def test_foreign_layerwise_arguments_are_copied_into_the_composed_config(tmp_path, caplog):
    from finetune_llrd import LLRDTrainingArguments

    args = LLRDTrainingArguments(
        output_dir=str(tmp_path),
        learning_rate=1e-3,
        layer_decay=0.5,
        weight_decay=0.01,
        max_steps=1,
        per_device_train_batch_size=4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        head_learning_rate=2e-3,
    )
    trainer = layerwise_trainer(trl.SFTTrainer)(
        tiny_llama(),
        args,
        train_dataset=datasets.Dataset.from_dict({"text": random_texts(8)}),
        processing_class=word_tokenizer(),
    )
    assert type(trainer.args).__name__ == "LLRDSFTConfig"
    assert (trainer.args.layer_decay, trainer.args.head_learning_rate, trainer.args.learning_rate) == (0.5, 2e-3, 1e-3)
    assert (
        "LLRDSFTTrainer takes SFTConfig: the LLRDTrainingArguments given were copied into LLRDSFTConfig" in caplog.text
    )
    rates = {g["layer"]: g["lr"] for g in trainer.create_optimizer().param_groups}
    assert rates == {**LLAMA_RATES, 4: 2e-3}

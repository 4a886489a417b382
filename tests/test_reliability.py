"""Reliability and scale: checkpoints, resume, non-finite losses, FSDP and DeepSpeed on CPU, a 70B-class
decoder on the meta device, adapters on a quantized base."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import torch
from launch import accelerate_launch, free_port
from safetensors.torch import load_file
from tiny_models import tiny_model
from training import RandomTokens, training_args
from transformers import LlamaConfig, LlamaForSequenceClassification

from finetune_llrd import LLRDTrainer, LLRDTrainingArguments, layer_map, param_groups
from finetune_llrd.callbacks import NonFiniteLossCallback, NonFiniteLossError
from finetune_llrd.checkpoints import (
    CheckpointError,
    complete_checkpoints,
    parse_resume_argument,
    resolve_resume_checkpoint,
)


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")


@pytest.fixture(scope="module")
def checkpointed_run(tmp_path_factory):
    """A run of 6 steps with layer_decay=0.5 and checkpoints at steps 2, 4 and 6; tests take copies."""
    output_dir = tmp_path_factory.mktemp("checkpointed")
    args = training_args(output_dir, layer_decay=0.5, max_steps=6, save_strategy="steps", save_steps=2)
    LLRDTrainer(model=tiny_model("bert"), args=args, train_dataset=RandomTokens()).train()
    return output_dir


def _copy_run(run, tmp_path, keep=(2, 4)):
    """Copies the run into ``tmp_path`` with the checkpoints of ``keep`` only."""
    shutil.copytree(run, tmp_path, dirs_exist_ok=True)
    for step in (2, 4, 6):
        if step not in keep:
            shutil.rmtree(tmp_path / f"checkpoint-{step}")


# ---- resuming ----


@pytest.mark.parametrize(
    "changed, message",
    [
        ({"layer_decay": 0.8}, r"group 0 \(depth 0\): lr 6\.25e-05 in the checkpoint, 0\.0004096 now"),
        ({"weight_decay": 0.0}, r"the checkpoint has 10 parameter groups, this run 5"),
        ({"layer_decay": 1.0}, r"the checkpoint has 10 parameter groups, this run 2"),
        ({"layer_mapping": '{"^bert\\\\.pooler\\\\.": 3}'}, r"group 6: parameters 6 in the checkpoint, 7 now"),
    ],
)
def test_resuming_with_other_groups_is_refused_with_what_changed(checkpointed_run, tmp_path, changed, message):
    _copy_run(checkpointed_run, tmp_path)
    settings = {"layer_decay": 0.5, **changed}
    args = training_args(tmp_path, max_steps=6, save_strategy="no", **settings)
    trainer = LLRDTrainer(model=tiny_model("bert"), args=args, train_dataset=RandomTokens())
    with pytest.raises(CheckpointError, match=message) as error:
        trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-4"))
    assert "Resume with the settings the checkpoint was trained with" in str(error.value)
    assert "doesn't match" not in str(error.value)


def test_resuming_with_the_same_settings_continues(checkpointed_run, tmp_path):
    _copy_run(checkpointed_run, tmp_path)
    args = training_args(tmp_path, layer_decay=0.5, max_steps=6, save_strategy="no")
    trainer = LLRDTrainer(model=tiny_model("bert"), args=args, train_dataset=RandomTokens())
    trainer.train(resume_from_checkpoint=True)
    assert trainer.state.global_step == 6


@pytest.mark.parametrize("spelling", ["true", "YES", "1"])
def test_resume_from_checkpoint_given_as_text_takes_the_newest_complete_checkpoint(
    checkpointed_run, tmp_path, spelling
):
    _copy_run(checkpointed_run, tmp_path, keep=(2, 4))
    args = training_args(tmp_path, layer_decay=0.5, max_steps=6, save_strategy="no")
    trainer = LLRDTrainer(model=tiny_model("bert"), args=args, train_dataset=RandomTokens())
    trainer.train(resume_from_checkpoint=spelling)
    assert trainer._resume_checkpoint == str(tmp_path / "checkpoint-4")
    assert trainer.state.global_step == 6


def test_resuming_a_checkpoint_that_holds_every_step_trains_no_more(checkpointed_run, tmp_path):
    # The stock loop would take one step more (global step 7 of max_steps 6).
    _copy_run(checkpointed_run, tmp_path, keep=(2, 4, 6))
    args = training_args(tmp_path, layer_decay=0.5, max_steps=6, save_strategy="no")
    trainer = LLRDTrainer(model=tiny_model("bert"), args=args, train_dataset=RandomTokens())
    output = trainer.train(resume_from_checkpoint="true")
    assert (output.global_step, trainer.state.global_step) == (6, 6)
    saved = load_file(str(tmp_path / "checkpoint-6" / "model.safetensors"))
    weights = dict(trainer.model.named_parameters())
    assert all(torch.equal(weights[name].detach(), tensor) for name, tensor in saved.items() if name in weights)
    assert sum(name in weights for name in saved) == len(weights)


def test_resume_words_and_folders():
    assert [parse_resume_argument(value) for value in ("True", " yes ", "1", "false", "No", "0")] == [True] * 3 + [
        None
    ] * 3
    assert [parse_resume_argument(value) for value in ("./True", "checkpoint-4", True, None)] == [
        "./True",
        "checkpoint-4",
        True,
        None,
    ]
    with pytest.raises(CheckpointError, match=r"Cannot resume from \./True: the folder does not exist"):
        resolve_resume_checkpoint("./True", "out")


def test_incomplete_newest_checkpoint_is_skipped(checkpointed_run, tmp_path, caplog):
    _copy_run(checkpointed_run, tmp_path, keep=(2, 4, 6))
    os.remove(tmp_path / "checkpoint-6" / "trainer_state.json")  # as if killed while saving
    assert complete_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-2"), str(tmp_path / "checkpoint-4")]
    args = training_args(tmp_path, layer_decay=0.5, max_steps=6, save_strategy="no")
    trainer = LLRDTrainer(model=tiny_model("bert"), args=args, train_dataset=RandomTokens())
    with caplog.at_level("WARNING"):
        trainer.train(resume_from_checkpoint=True)
    assert "Skipping checkpoint-6" in caplog.text
    assert trainer.state.global_step == 6


@pytest.mark.parametrize(
    "damage, message",
    [
        ("missing", r"the folder does not exist"),
        ("truncated optimizer", r"optimizer\.pt cannot be read"),
        ("no weights", r"it holds no model weights"),
        ("broken state", r"trainer_state\.json is missing or not valid JSON"),
    ],
)
def test_corrupt_or_missing_checkpoint_gets_a_clear_error(checkpointed_run, tmp_path, damage, message):
    _copy_run(checkpointed_run, tmp_path)
    checkpoint = tmp_path / "checkpoint-4"
    if damage == "missing":
        shutil.rmtree(checkpoint)
    elif damage == "truncated optimizer":
        data = (checkpoint / "optimizer.pt").read_bytes()
        (checkpoint / "optimizer.pt").write_bytes(data[: len(data) // 3])
    elif damage == "no weights":
        os.remove(checkpoint / "model.safetensors")
    else:
        (checkpoint / "trainer_state.json").write_text("{ cut sho")
    args = training_args(tmp_path, layer_decay=0.5, max_steps=6, save_strategy="no")
    trainer = LLRDTrainer(model=tiny_model("bert"), args=args, train_dataset=RandomTokens())
    with pytest.raises(CheckpointError, match=message) as error:
        trainer.train(resume_from_checkpoint=str(checkpoint))
    assert f"Cannot resume from {checkpoint}" in str(error.value)
    if damage != "missing":
        assert str(tmp_path / "checkpoint-2") in str(error.value)  # where to go instead


def test_resume_true_without_checkpoints(tmp_path):
    args = training_args(tmp_path, layer_decay=0.5, max_steps=2)
    trainer = LLRDTrainer(model=tiny_model("bert"), args=args, train_dataset=RandomTokens())
    with pytest.raises(CheckpointError, match="holds no complete checkpoint-N folder"):
        trainer.train(resume_from_checkpoint=True)


# ---- a non-finite loss ----


class _Regression(torch.utils.data.IterableDataset):
    """Random tokens with float targets, in a fixed order; the target of one record is infinite (a corrupt
    record)."""

    def __init__(self, bad_index):
        self.tokens = RandomTokens(size=32)
        self.bad_index = bad_index

    def __iter__(self):
        for index in range(len(self.tokens)):
            item = self.tokens[index]
            target = float("inf") if index == self.bad_index else float(item["labels"])
            yield {"input_ids": item["input_ids"], "labels": torch.tensor([target])}


def test_nonfinite_loss_stops_before_the_step_and_keeps_the_last_checkpoint(tmp_path):
    from transformers import TrainerCallback

    model = tiny_model("bert", num_labels=1, problem_type="regression")
    args = training_args(
        tmp_path, layer_decay=0.5, max_steps=8, save_strategy="steps", save_steps=2, per_device_train_batch_size=4
    )
    weights = {}

    class KeepWeights(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            weights[state.global_step] = {n: p.detach().clone() for n, p in model.named_parameters()}

    trainer = LLRDTrainer(model=model, args=args, train_dataset=_Regression(bad_index=21), callbacks=[KeepWeights()])
    # Record 21 is in the sixth batch of 4: step 6 must not happen; checkpoint-4 is the last good one.
    with pytest.raises(NonFiniteLossError, match=r"not finite \(NaN or inf\) at optimizer step 6 ") as error:
        trainer.train()
    assert f"The last checkpoint, {tmp_path / 'checkpoint-4'}, is intact" in str(error.value)
    assert complete_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-2"), str(tmp_path / "checkpoint-4")]
    assert max(weights) == 5
    for name, param in model.named_parameters():  # the bad step changed nothing
        assert torch.equal(param, weights[5][name]), name
        assert torch.isfinite(param).all(), name


def test_nonfinite_loss_on_an_accelerator_is_read_only_where_the_trainer_syncs_anyway(tmp_path, monkeypatch):
    # What an accelerator gets: the flag stays on the device until a logging, evaluation or save step.
    monkeypatch.setattr(NonFiniteLossCallback, "checks_before_every_step", lambda self: False)
    model = tiny_model("bert", num_labels=1, problem_type="regression")
    args = training_args(
        tmp_path,
        layer_decay=0.5,
        max_steps=8,
        save_strategy="steps",
        save_steps=2,
        logging_steps=100,
        per_device_train_batch_size=4,
    )
    trainer = LLRDTrainer(model=model, args=args, train_dataset=_Regression(bad_index=21))
    with pytest.raises(NonFiniteLossError, match=r"not finite \(NaN or inf\) at one of optimizer steps 5-6 ") as error:
        trainer.train()
    assert "before saving any weight those steps changed" in str(error.value)
    assert f"The last checkpoint, {tmp_path / 'checkpoint-4'}, is intact" in str(error.value)
    assert complete_checkpoints(str(tmp_path)) == [str(tmp_path / "checkpoint-2"), str(tmp_path / "checkpoint-4")]
    assert not (tmp_path / "checkpoint-6").exists()


def test_nonfinite_loss_can_be_let_through(tmp_path):
    model = tiny_model("bert", num_labels=1, problem_type="regression")
    args = training_args(
        tmp_path, layer_decay=0.5, max_steps=6, per_device_train_batch_size=4, stop_on_nonfinite_loss=False
    )
    trainer = LLRDTrainer(model=model, args=args, train_dataset=_Regression(bad_index=21))
    trainer.train()
    assert trainer.state.global_step == 6
    assert not torch.isfinite(model.classifier.weight).all()  # what stopping protects against


# ---- FSDP on CPU (torch's FSDP with gloo; Accelerate enables FSDP on GPUs only) ----


@pytest.mark.parametrize("mode", ["fsdp2", "fsdp1"])
def test_groups_survive_fsdp_sharding(tmp_path, mode):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [
        torchrun,
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        os.path.join(SCRIPTS, "fsdp_cpu.py"),
        mode,
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    with open(tmp_path / f"{mode}.json") as handle:
        record = json.load(handle)
    assert record["world_size"] == 2
    assert record["groups_match"] and record["num_groups"] == 10
    for sharded, reference in zip(record["norms"], record["reference_norms"]):
        assert sharded == pytest.approx(reference, rel=1e-5, abs=1e-8)
    assert record["max_weight_difference"] < 1e-5
    assert record["embeddings_unchanged"]  # gradual unfreezing kept them frozen through the shards
    if mode == "fsdp1":
        assert "FSDP1 FlatParameter" in record["flat_error"] and "use_orig_params" in record["flat_error"]


# ---- DeepSpeed on CPU ----


LAUNCHED_RULES = json.dumps(
    [
        {"pattern": r"^classifier\.", "name": "classifier", "lr_scale": 10},
        {"pattern": r"LayerNorm", "name": "norms", "weight_decay": 0.05},
    ]
)


@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize(
    "rules", [pytest.param(False, marks=pytest.mark.slow), True], ids=["depths", "rules"]
)  # the rules case checks the depths' groups too
def test_groups_reach_deepspeed_zero(tmp_path, stage, rules):
    pytest.importorskip("deepspeed")
    config = tmp_path / "ds.json"
    config.write_text(
        json.dumps(
            {
                "zero_optimization": {"stage": stage},
                "train_micro_batch_size_per_gpu": "auto",
                "gradient_accumulation_steps": "auto",
            }
        )
    )
    accelerate_launch(
        os.path.join(SCRIPTS, "launched_groups.py"),
        tmp_path,
        *(["--param_group_rules", LAUNCHED_RULES] if rules else []),
        num_processes=1,
        launcher_args=("--use_deepspeed", "--deepspeed_config_file", str(config)),
    )
    with open(tmp_path / "result.json") as handle:
        record = json.load(handle)
    assert record["distributed_type"] == "DistributedType.DEEPSPEED"
    assert record["optimizer"].startswith("DeepSpeedZeroOptimizer")
    assert record["groups"] == record["expected"]
    first = record["logs"][0]
    assert [first[k] for k in ("lr/layer_00", "lr/layer_01", "lr/layer_02", "lr/layer_03", "lr/head")] == [
        1e-3 / 16,
        1e-3 / 8,
        1e-3 / 4,
        1e-3 / 2,
        1e-3,
    ]
    if rules:
        assert len(record["groups"]) == 15  # 10 of the depths + the LayerNorms of 4 depths + the classifier's 2 - 1
        assert [group for group in record["groups"] if group[3] == "classifier"] == [
            [4, 1e-2, 0.01, "classifier"],
            [4, 1e-2, 0.0, "classifier"],
        ]
        assert [group[1:] for group in record["groups"] if group[3] == "norms"] == [
            [1e-3 / 16, 0.05, "norms"],
            [1e-3 / 8, 0.05, "norms"],
            [1e-3 / 4, 0.05, "norms"],
            [1e-3 / 2, 0.05, "norms"],
        ]
        assert first["lr/classifier/head"] == 1e-2 and first["lr/norms/layer_03"] == 1e-3 / 2


def test_two_gloo_ranks_build_identical_groups_with_rules(tmp_path):
    # use_cpu: on a machine without an accelerator the two ranks join over gloo.
    accelerate_launch(
        os.path.join(SCRIPTS, "launched_groups.py"),
        tmp_path,
        "--use_cpu",
        "true",
        "--param_group_rules",
        LAUNCHED_RULES,
    )
    ranks = [json.loads((tmp_path / f"groups-{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks[0] == ranks[1]
    record = json.loads((tmp_path / "result.json").read_text())
    assert record["distributed_type"] == "DistributedType.MULTI_CPU"
    assert record["groups"] == record["expected"] and len(record["groups"]) == 15
    assert {rule for *_, rule in record["groups"]} == {None, "classifier", "norms"}


# The refusal itself is checked without an engine in tests/test_adaptation.py.
@pytest.mark.slow
def test_rate_adaptation_is_refused_under_deepspeed(tmp_path):
    pytest.importorskip("deepspeed")
    config = tmp_path / "ds.json"
    config.write_text(
        json.dumps(
            {
                "zero_optimization": {"stage": 2},
                "train_micro_batch_size_per_gpu": "auto",
                "gradient_accumulation_steps": "auto",
            }
        )
    )
    result = accelerate_launch(
        os.path.join(SCRIPTS, "launched_groups.py"),
        tmp_path,
        "--layer_lr_adaptation",
        "autolr",
        num_processes=1,
        check=False,
        launcher_args=("--use_deepspeed", "--deepspeed_config_file", str(config)),
    )
    assert result.returncode != 0
    assert (
        "layer_lr_adaptation cannot run under DeepSpeed, which keeps the gradients inside its engine" in result.stderr
    )


def test_deepspeed_optimizer_block_is_refused(tmp_path):
    config = {"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW", "params": {"lr": "auto"}}}
    with pytest.raises(ValueError, match="'optimizer' block: DeepSpeed would then build its own optimizer"):
        LLRDTrainingArguments(output_dir=str(tmp_path), layer_decay=0.8, deepspeed=config, report_to=[])
    path = tmp_path / "ds.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'optimizer' block"):
        LLRDTrainingArguments(output_dir=str(tmp_path), layer_decay=0.8, deepspeed=str(path), report_to=[])


@pytest.mark.slow
def test_deepspeed_optimizer_block_is_refused_by_a_launched_run(tmp_path):
    pytest.importorskip("deepspeed")
    path = tmp_path / "ds.json"
    path.write_text(
        json.dumps({"zero_optimization": {"stage": 2}, "optimizer": {"type": "AdamW", "params": {"lr": "auto"}}})
    )
    result = accelerate_launch(
        os.path.join(SCRIPTS, "launched_groups.py"),
        tmp_path,
        num_processes=1,
        check=False,
        launcher_args=("--use_deepspeed", "--deepspeed_config_file", str(path)),
    )
    assert result.returncode != 0
    assert "'optimizer' block: DeepSpeed would then build its own optimizer" in result.stderr


# ---- scale ----


def test_70b_class_decoder_on_the_meta_device():
    config = LlamaConfig(
        hidden_size=8192,
        intermediate_size=28672,
        num_hidden_layers=80,
        num_attention_heads=64,
        num_key_value_heads=8,
        vocab_size=128256,
        max_position_embeddings=8192,
        num_labels=2,
        pad_token_id=0,
    )
    with torch.device("meta"):
        model = LlamaForSequenceClassification(config)
    start = time.perf_counter()
    groups = param_groups(model, lr=1e-5, layer_decay=0.9, weight_decay=0.1)
    elapsed = time.perf_counter() - start
    assert elapsed < 10  # benchmarks/grouping_scale.py measures it precisely
    assert all(p.is_meta for g in groups for p in g["params"])
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in model.parameters()) > 69e9
    # embeddings (decayed), 80 blocks x (weights, norms), head (norm, score)
    assert [(g["layer"], g["weight_decay"]) for g in groups] == (
        [(0, 0.1)] + [(d, wd) for d in range(1, 81) for wd in (0.1, 0.0)] + [(81, 0.1), (81, 0.0)]
    )
    assert layer_map(model).num_layers == 80


def test_lora_on_a_quantized_base(tmp_path):
    pytest.importorskip("bitsandbytes")
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForSequenceClassification, BitsAndBytesConfig

    tiny_model("llama", hidden_size=64, intermediate_size=128).save_pretrained(tmp_path)
    try:
        base = AutoModelForSequenceClassification.from_pretrained(
            tmp_path, quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32)
        )
    except Exception as error:  # noqa: BLE001 - this bitsandbytes build cannot quantize on this machine
        pytest.skip(f"4-bit quantization unavailable here: {type(error).__name__}: {error}")
    base = peft.prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    model = peft.get_peft_model(base, peft.LoraConfig(task_type="SEQ_CLS", r=4, target_modules=["q_proj", "v_proj"]))
    groups = param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    names = {n for g in groups for n in g["param_names"]}
    assert names == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(".lora_" in n or "score.modules_to_save" in n for n in names)
    assert {g["layer"] for g in groups} == {1, 2, 3, 4}


def test_gpu_check_script_runs_its_checks_on_cpu(tmp_path):
    """scripts/gpu_check.sh runs this on a GPU; the same code on a tiny model here keeps it working."""
    script = os.path.join(os.path.dirname(SCRIPTS), "..", "scripts", "gpu_check.py")
    result = subprocess.run(
        [
            sys.executable,
            script,
            "precision",
            "bf16",
            "--device",
            "cpu",
            "--steps",
            "3",
            "--tiny",
            "--output_dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout.strip().splitlines()[-1])
    assert record["ok"] and record["fused"] and record["groups_match"] and record["every_depth_updated"]

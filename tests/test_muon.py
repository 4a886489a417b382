"""Muon with layer-wise rates: the split, the exact step against torch's Muon and AdamW, the trainer's three ways
of asking for it, checkpoints and resume, and what is refused."""

import copy
import json

import pytest
import torch
from tiny_models import tiny_model
from training import RandomTokens, training_args

from finetune_llrd import LLRDTrainer, layer_map, param_groups
from finetune_llrd.groups import ParamGroupRuleError
from finetune_llrd.optimizers import LayerwiseMuon, layerwise_muon, muon_groups


MUON = {"momentum": 0.9, "nesterov": True, "ns_steps": 5, "adjust_lr_fn": "match_rms_adamw"}


def _groups(model, **kwargs):
    layers = layer_map(model)
    settings = {"lr": 1e-2, "layer_decay": 0.5, "weight_decay": 0.1, **kwargs}
    return muon_groups(param_groups(model, layers=layers, **settings), model, layers), layers


def test_blocks_matrices_go_to_muon_and_the_rest_to_adamw_at_their_depths_rate():
    model = tiny_model("llama")
    groups, layers = _groups(model)
    side = {name: group["use_muon"] for group in groups for name in group["param_names"]}
    rate = {name: group["lr"] for group in groups for name in group["param_names"]}
    assert set(side) == {name for name, _ in model.named_parameters()}
    assert sorted(name for name, muon in side.items() if muon) == sorted(
        f"model.layers.{block}.{module}.weight"
        for block in range(3)
        for module in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    )
    # Depth d of L+1 = 4 gets 1e-2 * 0.5 ** (4 - d) on both sides.
    for name, depth in layers.depths.items():
        assert rate[name] == pytest.approx(1e-2 * 0.5 ** (4 - depth), rel=1e-12)
    assert side["model.embed_tokens.weight"] is False and side["score.weight"] is False
    assert side["model.layers.0.input_layernorm.weight"] is False


def test_a_rule_sends_a_pattern_to_either_side():
    model = tiny_model("llama")
    rules = [
        {"pattern": "score", "muon": True, "lr_scale": 2.0},
        {"pattern": "layers\\.2\\.mlp", "muon": False},
    ]
    groups, _ = _groups(model, rules=rules)
    side = {name: group["use_muon"] for group in groups for name in group["param_names"]}
    rate = {name: group["lr"] for group in groups for name in group["param_names"]}
    assert side["score.weight"] is True and rate["score.weight"] == pytest.approx(2e-2)
    assert side["model.layers.2.mlp.up_proj.weight"] is False
    assert rate["model.layers.2.mlp.up_proj.weight"] == pytest.approx(5e-3)
    assert side["model.layers.1.mlp.up_proj.weight"] is True
    with pytest.raises(ValueError, match="takes matrices only"):
        _groups(model, rules=[{"pattern": "norm", "muon": True}])
    with pytest.raises(ParamGroupRuleError, match="muon must be true or false"):
        _groups(model, rules=[{"pattern": "norm", "muon": "yes"}])


def _one_step(model, optimizer, seed=0):
    torch.manual_seed(seed)
    inputs = RandomTokens(size=4)[:]
    model.zero_grad()
    model(**inputs).loss.backward()
    optimizer.step()


def test_one_step_equals_torch_muon_and_adamw_split_by_hand():
    model = tiny_model("llama")
    reference = copy.deepcopy(model)
    groups, _ = _groups(model)
    optimizer = LayerwiseMuon(groups, **MUON, betas=(0.9, 0.99), eps=1e-7)
    by_name = dict(reference.named_parameters())
    muon_side = [
        {"params": [by_name[n] for n in g["param_names"]], "lr": g["lr"], "weight_decay": g["weight_decay"]}
        for g in groups
        if g["use_muon"]
    ]
    adamw_side = [
        {"params": [by_name[n] for n in g["param_names"]], "lr": g["lr"], "weight_decay": g["weight_decay"]}
        for g in groups
        if not g["use_muon"]
    ]
    torch_muon = torch.optim.Muon(muon_side, **MUON)
    torch_adamw = torch.optim.AdamW(adamw_side, betas=(0.9, 0.99), eps=1e-7)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    for step in range(3):
        _one_step(model, optimizer, seed=step)
        torch.manual_seed(step)
        reference.zero_grad()
        reference(**RandomTokens(size=4)[:]).loss.backward()
        torch_muon.step()
        torch_adamw.step()
        for name, param in model.named_parameters():
            assert torch.equal(param, by_name[name]), (step, name)
    moved = {name: not torch.equal(param, before[name]) for name, param in model.named_parameters()}
    assert all(moved.values())


def test_one_step_moves_matrices_by_the_newton_schulz_direction_at_their_depths_rate():
    from torch.optim._muon import _zeropower_via_newtonschulz

    model = tiny_model("llama")
    groups, _ = _groups(model, weight_decay=0.0)
    optimizer = LayerwiseMuon(groups, momentum=0.0, nesterov=False, adjust_lr_fn="match_rms_adamw")
    name = "model.layers.0.self_attn.q_proj.weight"
    param = dict(model.named_parameters())[name]
    before = param.detach().clone()
    torch.manual_seed(0)
    model.zero_grad()
    model(**RandomTokens(size=4)[:]).loss.backward()
    direction = _zeropower_via_newtonschulz(param.grad, (3.4445, -4.7750, 2.0315), 5, 1e-7)
    optimizer.step()
    # Block 1 of L = 3: 1e-2 * 0.5 ** 3, scaled by 0.2 * sqrt(max(32, 32)).
    rate = next(group["lr"] for group in groups if name in group["param_names"])
    assert rate == pytest.approx(1e-2 * 0.5**3, rel=1e-12)
    assert torch.equal(param, before.add(direction, alpha=-rate * 0.2 * 32**0.5))


def test_conv_kernels_are_flattened():
    conv = torch.nn.Conv2d(3, 4, 3)
    optimizer = LayerwiseMuon([{"params": [conv.weight], "use_muon": True, "lr": 0.1}])
    conv(torch.randn(1, 3, 5, 5)).sum().backward()
    optimizer.step()
    assert optimizer.state[conv.weight]["momentum_buffer"].shape == (4, 3, 3, 3)


def test_save_and_resume_are_exact():
    model = tiny_model("llama")
    optimizer = layerwise_muon(model, lr=1e-2, layer_decay=0.5, weight_decay=0.1, muon_kwargs=MUON)
    _one_step(model, optimizer, seed=0)
    saved_model, saved_state = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    _one_step(model, optimizer, seed=1)
    resumed = tiny_model("llama")
    resumed.load_state_dict(saved_model)
    resumed_optimizer = layerwise_muon(resumed, lr=1e-2, layer_decay=0.5, weight_decay=0.1, muon_kwargs=MUON)
    resumed_optimizer.load_state_dict(saved_state)
    _one_step(resumed, resumed_optimizer, seed=1)
    for (name, param), resumed_param in zip(model.named_parameters(), resumed.parameters()):
        assert torch.equal(param, resumed_param), name


def test_a_one_dimensional_muon_group_is_refused():
    with pytest.raises(ValueError, match="Muon takes matrices only"):
        LayerwiseMuon([{"params": [torch.nn.Parameter(torch.ones(3))], "use_muon": True}])


def _trainer(tmp_path, **overrides):
    return LLRDTrainer(
        model=tiny_model("llama"),
        args=training_args(tmp_path, **overrides),
        train_dataset=RandomTokens(),
    )


def test_use_muon_builds_the_split_optimizer_and_trains(tmp_path):
    trainer = _trainer(
        tmp_path, use_muon=True, layer_decay=0.5, muon_kwargs=json.dumps({"momentum": 0.9}), logging_steps=2
    )
    trainer.train()
    optimizer = trainer.optimizer.optimizer  # accelerate's wrapper
    assert isinstance(optimizer, LayerwiseMuon)
    assert {group["momentum"] for group in optimizer.param_groups} == {0.9}
    assert {group["use_muon"] for group in optimizer.param_groups} == {True, False}
    logs = [entry for entry in trainer.state.log_history if "lr/head" in entry]
    assert logs and logs[0]["lr/layer_01"] == pytest.approx(logs[0]["lr/head"] * 0.5**3)


def test_torch_muon_given_as_optimizer_class_is_split(tmp_path):
    trainer = LLRDTrainer(
        model=tiny_model("llama"),
        args=training_args(tmp_path, layer_decay=0.8),
        train_dataset=RandomTokens(),
        optimizer_cls_and_kwargs=(torch.optim.Muon, {"momentum": 0.9, "eps": 1e-6, "adjust_lr_fn": "original"}),
    )
    trainer.train()
    optimizer = trainer.optimizer.optimizer
    assert isinstance(optimizer, LayerwiseMuon)
    assert {(g["momentum"], g["ns_eps"], g["adjust_lr_fn"]) for g in optimizer.param_groups} == {
        (0.9, 1e-6, "original")
    }


def test_torch_muon_alone_is_split_too(tmp_path):
    trainer = LLRDTrainer(
        model=tiny_model("llama"),
        args=training_args(tmp_path),
        train_dataset=RandomTokens(),
        optimizer_cls_and_kwargs=(torch.optim.Muon, {}),
    )
    trainer.train()
    assert isinstance(trainer.optimizer.optimizer, LayerwiseMuon)


def test_use_muon_beside_another_optim_is_refused(tmp_path):
    trainer = _trainer(tmp_path, use_muon=True, optim="sgd")
    with pytest.raises(ValueError, match="--optim sgd .* would be dropped in silence"):
        trainer.create_optimizer()


def test_muon_kwargs_without_use_muon_is_refused(tmp_path):
    with pytest.raises(ValueError, match="use_muon is not"):
        training_args(tmp_path, muon_kwargs='{"momentum": 0.9}')
    with pytest.raises(ValueError, match="unknown keys"):
        training_args(tmp_path, use_muon=True, muon_kwargs='{"beta": 0.9}')


def test_a_muon_rule_without_muon_is_refused(tmp_path):
    trainer = _trainer(tmp_path, param_group_rules=[{"pattern": "score", "muon": True}])
    with pytest.raises(ValueError, match="sets muon, but the optimizer is not Muon"):
        trainer.create_optimizer()


def test_trainer_checkpoint_resume_equals_the_uninterrupted_run(tmp_path):
    settings = dict(use_muon=True, layer_decay=0.5, max_steps=4, save_strategy="steps", save_steps=2)
    whole = _trainer(tmp_path / "whole", **settings)
    whole.train()
    resumed = _trainer(tmp_path / "resumed", **settings)
    resumed.train(resume_from_checkpoint=str(tmp_path / "whole" / "checkpoint-2"))
    for (name, param), resumed_param in zip(whole.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(param, resumed_param), name


def test_muon_under_sharding_is_refused_in_one_line():
    from types import SimpleNamespace

    from finetune_llrd.optimizer_choice import refuse_muon_under_sharding

    for engine, flags in (("DeepSpeed ZeRO", (True, False)), ("FSDP", (False, True))):
        trainer = SimpleNamespace(is_deepspeed_enabled=flags[0], is_fsdp_enabled=flags[1])
        with pytest.raises(
            ValueError, match=f"Muon cannot run under {engine}: its Newton-Schulz step needs each whole"
        ):
            refuse_muon_under_sharding(trainer)
    refuse_muon_under_sharding(SimpleNamespace(is_deepspeed_enabled=False, is_fsdp_enabled=False))


# Two ranks through accelerate launch and one process (about 20 s on the idle machine).
def test_two_gloo_ranks_end_identical_and_match_one_process(tmp_path):
    from test_beyond_decay import _ddp_and_single_process

    options = ["--layer_decay", "0.5", "--use_muon", "true", "--max_steps", "3"]
    worlds, ddp0, ddp1, single, rank0, rank1, alone = _ddp_and_single_process(tmp_path, options)
    assert worlds == (2, 2, 1)
    for a, b in zip(ddp0, ddp1):
        assert a == b
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
        # The reduced gradients differ from one process's in the last bits; Newton-Schulz runs in bfloat16.
        assert torch.allclose(rank0[name], alone[name], atol=1e-4, rtol=0), name


# DeepSpeed's start-up takes a minute per run on this CPU: slow; the refusal itself is covered above in the default run.
@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_on_the_cpu_refuses_muon_and_keeps_adamws_groups(tmp_path, stage):
    pytest.importorskip("deepspeed")
    import os
    import subprocess
    import sys

    from launch import free_port

    config = tmp_path / "ds.json"
    config.write_text(
        json.dumps(
            {
                "zero_optimization": {"stage": stage},
                "train_batch_size": "auto",
                "train_micro_batch_size_per_gpu": "auto",
                "gradient_accumulation_steps": "auto",
            }
        )
    )
    script = os.path.join(os.path.dirname(__file__), "scripts", "train_tiny.py")
    env = dict(
        os.environ,
        DS_ACCELERATOR="cpu",
        OMP_NUM_THREADS="1",
        RANK="0",
        LOCAL_RANK="0",
        WORLD_SIZE="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(free_port()),
        PYTHONPATH=os.getcwd(),
    )
    common = [
        "--max_steps",
        "1",
        "--layer_decay",
        "0.5",
        "--deepspeed",
        str(config),
        "--per_device_train_batch_size",
        "8",
    ]
    muon = subprocess.run(
        [sys.executable, script, tmp_path / "muon", *common, "--use_muon", "true"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert muon.returncode != 0
    assert "Muon cannot run under DeepSpeed ZeRO: its Newton-Schulz step needs each whole matrix" in muon.stderr
    adamw = subprocess.run(
        [sys.executable, script, tmp_path / "adamw", *common], env=env, capture_output=True, text=True
    )
    assert adamw.returncode == 0, adamw.stderr[-3000:]
    logged = json.loads((tmp_path / "adamw" / "rank0.json").read_text())["log_history"][0]
    assert [logged[f"lr/layer_0{depth}"] for depth in range(4)] + [logged["lr/head"]] == pytest.approx(
        [1e-3 * 0.5**k for k in (4, 3, 2, 1, 0)]
    )


def test_loraplus_rates_hold_on_both_sides():
    peft = pytest.importorskip("peft")
    from finetune_llrd import loraplus_rules

    model = peft.get_peft_model(
        tiny_model("llama"), peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS")
    )
    layers = layer_map(model)
    groups = muon_groups(
        param_groups(model, lr=1e-2, layer_decay=0.5, layers=layers, rules=loraplus_rules(model, 16)), model, layers
    )
    side = {name: group["use_muon"] for group in groups for name in group["param_names"]}
    rate = {name: group["lr"] for group in groups for name in group["param_names"]}
    a, b = (f"base_model.model.model.layers.0.self_attn.q_proj.lora_{x}.default.weight" for x in "AB")
    assert side[a] is True and side[b] is True
    assert rate[a] == pytest.approx(1e-2 * 0.5**3) and rate[b] == pytest.approx(16 * 1e-2 * 0.5**3)
    assert not any(side[name] for name in side if "score" in name)


def test_a_flattened_parameter_in_a_muon_group_is_refused_at_the_step():
    matrix = torch.nn.Parameter(torch.ones(2, 2))
    optimizer = LayerwiseMuon([{"params": [matrix], "use_muon": True}])
    optimizer.param_groups[0]["params"] = [torch.nn.Parameter(torch.ones(4))]  # as ZeRO swaps in a flat partition
    optimizer.param_groups[0]["params"][0].grad = torch.ones(4)
    with pytest.raises(RuntimeError, match="flattened or sharded it after the groups were built"):
        optimizer.step()


def test_a_muon_rate_or_decay_beside_the_arguments_is_refused(tmp_path):
    trainer = LLRDTrainer(
        model=tiny_model("llama"),
        args=training_args(tmp_path, layer_decay=0.8),
        optimizer_cls_and_kwargs=(torch.optim.Muon, {"weight_decay": 0.1}),
    )
    with pytest.raises(ValueError, match=r"torch.optim.Muon weight_decay=0.1, but the layer-wise groups carry"):
        trainer.create_optimizer()


def test_the_flags_parse(tmp_path):
    from transformers import HfArgumentParser

    from finetune_llrd import LLRDTrainingArguments

    (args,) = HfArgumentParser(LLRDTrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", str(tmp_path), "--use_muon", "--muon_kwargs", '{"momentum": 0.9, "ns_steps": 6}']
    )
    assert args.use_muon is True and args.muon_kwargs == {"momentum": 0.9, "ns_steps": 6}
    assert args.uses_layerwise_groups

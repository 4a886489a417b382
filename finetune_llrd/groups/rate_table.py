"""What a list of parameter groups holds, depth by depth: the table of base rates (and its plain-text form), and
the current rate of every depth as log entries, for any training loop."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..depths import LayerMap


def lr_table(groups: Iterable[dict[str, Any]], layers: LayerMap | None = None) -> list[dict[str, Any]]:
    """One row per depth of a list of groups (``param_groups`` output or ``optimizer.param_groups``).

    Args:
        groups: parameter groups carrying ``layer`` (the depth).
        layers: the map, for readable block names.

    Returns:
        Rows with ``depth``, ``block``, ``num_params``, ``num_params_no_decay``, ``lr`` and ``weight_decay``
        (the decay of the depth's decayed parameters), ordered by depth. ``lr`` is the base rate: a group's
        ``initial_lr`` once a scheduler has run (its ``lr`` moves with the schedule), else its ``lr``. Groups
        of a tower with a decay of its own (carrying ``tower``) and of a parameter rule (carrying ``rule``) get
        rows of their own, after the depth's other row, with ``tower`` and ``rule``.
    """
    rows: dict[tuple[int, str, str], dict[str, Any]] = {}
    for group in groups:
        if "layer" not in group:
            continue
        depth = int(group["layer"])
        tower, rule = group.get("tower"), group.get("rule")
        block = layers.block_name(depth, tower) if layers is not None else _default_block_name(depth, group)
        row = rows.setdefault(
            (depth, tower or "", rule or ""),
            {
                "depth": depth,
                "block": block if rule is None else f"{block} [{rule}]",
                "num_params": 0,
                "num_params_no_decay": 0,
                "lr": float(group.get("initial_lr", group["lr"])),  # float: torchao's optimizers keep tensors
                "weight_decay": 0.0,
                **({"tower": tower} if tower is not None else {}),
                **({"rule": rule} if rule is not None else {}),
            },
        )
        count = sum(full_size(param) for param in group["params"])
        row["num_params"] += count
        if group["weight_decay"] == 0:
            row["num_params_no_decay"] += count
        else:
            row["weight_decay"] = group["weight_decay"]
    order = {key: index for index, key in enumerate(rows)}
    return [rows[key] for key in sorted(rows, key=lambda key: (key[0], key[1], key[2] != "", order[key]))]


def full_size(param) -> int:
    """The number of elements of ``param``, also under DeepSpeed ZeRO-3 (which leaves an empty placeholder and keeps
    the real size in ``ds_numel``)."""
    return getattr(param, "ds_numel", None) or param.numel()


def _default_block_name(depth: int, group: dict[str, Any]) -> str:
    if depth == 0:
        return "embeddings"
    names = group.get("param_names") or []
    return names[0].rsplit(".", 2)[0] if names else f"layer {depth}"


def format_lr_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows of :func:`lr_table` as a plain-text table."""
    header = f"{'depth':>5}  {'block':<44} {'params':>12} {'no-decay':>10} {'lr':>11} {'weight_decay':>12}"
    lines = [header, "-" * len(header)]
    for row in rows:
        block = row["block"] if len(row["block"]) <= 44 else "..." + row["block"][-41:]
        lines.append(
            f"{row['depth']:>5}  {block:<44} {row['num_params']:>12,} {row['num_params_no_decay']:>10,} "
            f"{row['lr']:>11.3e} {row['weight_decay']:>12g}"
        )
    return "\n".join(lines)


def depth_learning_rate_logs(groups: Any, head_depth: int | None = None) -> dict[str, float]:
    """The current rate of every depth, keyed ``lr/layer_00`` ... ``lr/layer_L`` and ``lr/head``: what to log at
    each step of any training loop (a plain Accelerate loop: ``accelerator.log(depth_learning_rate_logs(optimizer),
    step=step)``). Read after ``optimizer.step()`` and before ``scheduler.step()``, these are the rates the step
    used; after ``scheduler.step()``, those of the next step.

    A depth's decayed and no-decay groups share one entry (their rates are equal). Groups of a tower with a decay
    of its own (``tower``) are logged under ``lr/<tower>/layer_XX``, and groups of a parameter rule (``rule``)
    under ``lr/<rule>/layer_XX`` (``lr/<tower>/<rule>/...`` for both), so that every rate shows.

    Args:
        groups: an optimizer, or parameter groups carrying ``layer``; groups without it are skipped.
        head_depth: L+1; by default the deepest depth present in any group.

    Returns:
        An empty dict when no group carries ``layer``.
    """
    groups = getattr(groups, "param_groups", groups)
    rates: dict[tuple[str, ...], dict[int, float]] = {}
    for group in groups:
        if "layer" in group:
            key = tuple(part for part in (group.get("tower"), group.get("rule")) if part is not None)
            rates.setdefault(key, {}).setdefault(int(group["layer"]), float(group["lr"]))
    if not rates:
        return {}
    head = max(max(by_depth) for by_depth in rates.values()) if head_depth is None else head_depth
    logs: dict[str, float] = {}
    for key, by_depth in rates.items():
        depths = sorted(by_depth)
        logs.update(depth_logs("/".join(("lr", *key)), depths, [by_depth[d] for d in depths], head))
    return logs


def depth_logs(
    prefix: str, depths: Sequence[int], values: Sequence[float], head_depth: int | None = None
) -> dict[str, float]:
    """``{prefix}/layer_XX`` for every depth and ``{prefix}/head`` for ``head_depth`` (by default the deepest),
    zero-padded to the width of the deepest block."""
    head = max(depths) if head_depth is None else head_depth
    width = max(2, len(str(head - 1)))
    return {
        f"{prefix}/head" if depth == head else f"{prefix}/layer_{depth:0{width}d}": value
        for depth, value in zip(depths, values)
    }

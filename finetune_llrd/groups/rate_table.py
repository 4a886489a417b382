"""The per-depth learning-rate table: one row per depth of a list of parameter groups, and its plain-text form."""

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
        of a tower with a decay of its own (carrying ``tower``) get rows of their own, with ``tower``.
    """
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    for group in groups:
        if "layer" not in group:
            continue
        depth = int(group["layer"])
        tower = group.get("tower")
        if layers is not None:
            block = layers.block_name(depth, tower)
        else:
            block = _default_block_name(depth, group)
        row = rows.setdefault(
            (depth, tower or ""),
            {
                "depth": depth,
                "block": block,
                "num_params": 0,
                "num_params_no_decay": 0,
                "lr": group.get("initial_lr", group["lr"]),
                "weight_decay": 0.0,
                **({"tower": tower} if tower is not None else {}),
            },
        )
        count = sum(_full_size(param) for param in group["params"])
        row["num_params"] += count
        if group["weight_decay"] == 0:
            row["num_params_no_decay"] += count
        else:
            row["weight_decay"] = group["weight_decay"]
    return [rows[key] for key in sorted(rows)]


def _full_size(param) -> int:
    # DeepSpeed ZeRO-3 leaves an empty placeholder and keeps the real size in ds_numel.
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

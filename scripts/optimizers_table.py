"""Writes docs/assets/optimizers-table.txt: what every ``--optim`` value of the installed transformers (and
``--use_muon``) does with the layer-wise groups, found by building each optimizer over the decayed groups of a tiny
BERT (``layer_decay=0.5``) here.

    python scripts/optimizers_table.py            # rewrite the table (tests/test_optimizer_choices.py checks it)

A value is *kept* when the trainer builds that optimizer over the layer-wise groups and every group keeps its
depth's rate, *composed* when the trainer builds another optimizer around it that keeps the groups (Muon),
*refused* when the trainer refuses it with a message saying why, and *not installed here* when its package is
missing (the message is transformers').
"""

from __future__ import annotations

import os
import sys
import tempfile
import traceback
import warnings


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join(REPO_ROOT, "docs", "assets", "optimizers-table.txt")
# Settings some values need before they reach the groups.
EXTRA_SETTINGS = {"galore": {"optim_target_modules": ["attention", "intermediate"]}}
# The messages of a missing package (transformers' handlers word them in several ways).
MISSING = ("install", "failed to import")


def _verdict(optim: str, settings: dict, output_dir: str) -> tuple[str, str, str]:
    """(verdict, optimizer class, why) of one ``--optim`` value."""
    import torch
    from tiny_models import tiny_model
    from training import training_args

    from finetune_llrd import LLRDTrainer, param_groups

    extra = next((extra for prefix, extra in EXTRA_SETTINGS.items() if optim.startswith(prefix)), {})
    try:
        args = training_args(output_dir, optim=optim, layer_decay=0.5, **settings, **extra)
        model = tiny_model("bert")
        trainer = LLRDTrainer(model=model, args=args)
        optimizer = trainer.create_optimizer()
    except (ImportError, ValueError, RuntimeError) as error:
        message = " ".join(str(error).split())
        first = message.split(". ")[0].rstrip(".").replace("|", "\\|") + "."
        ours = any("finetune_llrd" in frame.filename for frame in traceback.extract_tb(error.__traceback__)[-1:])
        if ours:
            return "**refused**", "", first
        if any(word in message.lower() for word in MISSING):
            return "not installed here", "", first
        return "fails in transformers", "", f"{first} (before the groups are built)"
    inner = getattr(optimizer, "optimizer", optimizer)
    name = f"`{type(inner).__module__.split('.')[0]}.{type(inner).__name__}`"
    expected = {
        id(param): group["lr"]
        for group in param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)
        for param in group["params"]
    }
    rates = {id(param): float(group["lr"]) for group in inner.param_groups for param in group["params"]}
    tensor_rates = any(torch.is_tensor(group["lr"]) for group in inner.param_groups)
    if rates.keys() != expected.keys() or any(abs(rates[key] - rate) > 1e-7 * rate for key, rate in expected.items()):
        return "**lost**", name, "the groups' rates differ from the depths'."
    if settings.get("use_muon"):
        return "composed", name, "Muon on the blocks' matrices, AdamW on the rest, each at its depth's rate."
    why = "every group at its depth's rate"
    if tensor_rates:
        why += " (held as float32 tensors; logged as the floats the steps used)"
    return "kept", name, why + "."


def optimizers_table() -> str:
    """The table, as Markdown."""
    sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))
    warnings.filterwarnings("ignore")
    from transformers.training_args import OptimizerNames

    rows = ["| `--optim` | layer-wise groups | optimizer built here | why |", "|---|---|---|---|"]
    choices = [(f"`{optim.value}`", optim.value, {}) for optim in OptimizerNames]
    choices.append(("`adamw_torch --use_muon true`", "adamw_torch", {"use_muon": True}))
    with tempfile.TemporaryDirectory() as output_dir:
        for label, optim, settings in choices:
            verdict, name, why = _verdict(optim, settings, output_dir)
            rows.append(f"| {label} | {verdict} | {name} | {why} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    table = optimizers_table()
    with open(TABLE, "w", encoding="utf-8") as handle:
        handle.write(table)
    print(table)

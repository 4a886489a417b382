"""The GPU half of the reliability checks: one LLRDTrainer run per precision / optimizer setting on a
BERT-base-sized model, each checked for the layer-wise groups, the logged per-depth rates, a finite loss
and updates at every depth.

Usage: python scripts/gpu_check.py precision {bf16,fp16,fp32} [--device cuda] [--steps 30] [--tiny]
Prints one JSON line with the result; exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
from transformers import BertConfig, BertForSequenceClassification, TrainerCallback


sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from training import RandomTokens

from finetune_llrd import LLRDTrainer, LLRDTrainingArguments, layer_map, param_groups


class _Timer(TrainerCallback):
    def __init__(self):
        self.step_times = []

    def on_step_begin(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.step_times.append(time.perf_counter() - self.start)


def precision_check(precision: str, device: str, steps: int, tiny: bool, output_dir: str) -> dict:
    """Trains ``steps`` optimizer steps in ``precision`` with fused AdamW and checks the layer-wise setup."""
    size = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=37) if tiny else {}
    config = BertConfig(vocab_size=30522 if not tiny else 99, num_labels=2, **size)
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    batch_size, length = (8, 16) if tiny else (32, 128)
    dataset = RandomTokens(size=batch_size * steps, length=length, vocab=config.vocab_size, num_labels=2)
    args = LLRDTrainingArguments(
        output_dir=output_dir,
        learning_rate=1e-4,
        layer_decay=0.75,
        weight_decay=0.01,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        optim="adamw_torch_fused",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        lr_scheduler_type="constant",
        max_grad_norm=1.0,
        seed=0,
    )
    layers = layer_map(model)
    expected = [
        (g["layer"], g["lr"]) for g in param_groups(model, lr=1e-4, layer_decay=0.75, weight_decay=0.01, layers=layers)
    ]
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    timer = _Timer()
    trainer = LLRDTrainer(model=model, args=args, train_dataset=dataset, callbacks=[timer])
    trainer.train()
    optimizer = trainer.optimizer.optimizer
    logs = [e for e in trainer.state.log_history if "loss" in e]
    changed_depths = {
        layers.depths[n] for n, p in model.named_parameters() if not torch.equal(p.detach().cpu(), before[n].cpu())
    }
    rates_logged = all(
        math.isclose(logs[-1][f"lr/layer_{d:02d}" if d < layers.head_depth else "lr/head"], rate, rel_tol=1e-6)
        for d, rate in expected
    )
    scaler = getattr(trainer.accelerator, "scaler", None)
    step_times = sorted(timer.step_times[2:]) or timer.step_times
    result = {
        "check": f"precision:{precision}",
        "device": torch.cuda.get_device_name(0) if device == "cuda" and torch.cuda.is_available() else device,
        "optimizer": type(optimizer).__name__,
        "fused": bool(optimizer.defaults.get("fused")),
        "groups_match": [(g["layer"], g["initial_lr"]) for g in optimizer.param_groups] == expected,
        "rates_logged": rates_logged,
        "losses_finite": all(math.isfinite(e["loss"]) for e in logs),
        "first_loss": logs[0]["loss"],
        "last_loss": logs[-1]["loss"],
        "every_depth_updated": changed_depths == set(range(layers.num_layers + 2)),
        "grad_scaler": scaler is not None,
        "median_step_s": step_times[len(step_times) // 2],
        "samples_per_s": batch_size / step_times[len(step_times) // 2],
    }
    result["ok"] = all(
        result[k] for k in ("groups_match", "rates_logged", "losses_finite", "every_depth_updated")
    ) and (result["grad_scaler"] == (precision == "fp16"))
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    precision = commands.add_parser("precision")
    precision.add_argument("precision", choices=("bf16", "fp16", "fp32"))
    precision.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    precision.add_argument("--steps", type=int, default=30)
    precision.add_argument("--tiny", action="store_true", help="a 3-layer model, for a quick run anywhere")
    precision.add_argument("--output_dir", default="out/gpu_check")
    options = parser.parse_args()
    result = precision_check(options.precision, options.device, options.steps, options.tiny, options.output_dir)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""Cost of a preemption on the main job's model: the seconds from SIGTERM to the process exit, and the
training lost.

The real all-MiniLM-L6-v2 fine-tunes on SST-2 sentences (max_seq_length 64, batch 32, layer decay 0.9,
AdamW, no periodic checkpoint) in a child process with ``save_on_preemption``. After a few optimizer steps,
halfway through one, the child gets SIGTERM. Measured per repeat: the seconds from the signal to the child's
exit, split into finishing the step in flight, writing the checkpoint, the rest of ``train`` (the stock end
of training, and the wait for all ranks) and the interpreter's exit; the exit code; the
checkpoint's size. Then the last preempted run resumes from its checkpoint to the end, and an uninterrupted
run of the same length gives the reference: the steps redone (optimizer steps run twice over both parts)
must be 0, and the resumed weights must equal the uninterrupted ones.

Run ``python benchmarks/preemption_cost.py`` (CPU, writes benchmarks/results/preemption_cost.json), or
``--quick`` for a miniature.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_utils
import timing


NAME = "preemption_cost"
SIZES = {
    "repeats": (3, 1, "Preempted runs to time"),
    "max_steps": (16, 6, "Optimizer steps of a whole run"),
    "signal_after": (4, 2, "Steps done before the signal"),
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line arguments (``--threads``: of the child runs, 1 by default: steady on shared cores)."""
    parser = timing.build_parser(__doc__, NAME, SIZES, device=False)
    parser.set_defaults(threads=1)
    parser.add_argument("--batch-size", type=int, default=32, help="Training batch size.")
    parser.add_argument("--max-seq-length", type=int, default=64, help="Truncation length of the sentences.")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    return parser


# ---- the child: one training run that records when each step ended and when the checkpoint was written ----


def train_child(args: argparse.Namespace) -> None:
    """Fine-tunes MiniLM for ``args.max_steps`` steps in ``args.child``; appends ``events.jsonl`` there."""
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        TrainerCallback,
        set_seed,
    )

    from finetune_llrd import LLRDTrainer, LLRDTrainingArguments
    from finetune_llrd.preemption import TrainingPreempted

    torch.set_num_threads(args.threads)
    bench_utils.quiet_transformers()
    output_dir = args.child
    events = open(output_dir / "events.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - written until the process ends

    def record(**event: Any) -> None:
        events.write(json.dumps(event | {"time": time.time()}) + "\n")
        events.flush()

    class Events(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            record(step=state.global_step)

        def on_save(self, args, state, control, **kwargs):
            record(saved=state.global_step)

    tokenizer = AutoTokenizer.from_pretrained(bench_utils.minilm_path())
    texts, labels = bench_utils.sst2_rows("train")
    texts, labels = texts[: args.max_steps * args.batch_size], labels[: args.max_steps * args.batch_size]
    set_seed(0)  # the new classification head: the same in every run
    model = AutoModelForSequenceClassification.from_pretrained(bench_utils.minilm_path(), num_labels=2)
    training_args = LLRDTrainingArguments(
        output_dir=str(output_dir),
        layer_decay=0.9,
        learning_rate=1e-4,
        weight_decay=0.01,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.max_steps,
        warmup_steps=2,
        save_strategy="no",
        logging_steps=1,
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        save_on_preemption=True,
    )
    trainer = LLRDTrainer(
        model=model,
        args=training_args,
        train_dataset=bench_utils.encode(tokenizer, texts, labels, args.max_seq_length),
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[Events()],
    )
    record(started=True)
    try:
        trainer.train(resume_from_checkpoint=True if args.resume else None)
    except TrainingPreempted:
        record(exiting=trainer.state.global_step)
        raise
    torch.save({n: p.detach() for n, p in trainer.model.named_parameters()}, output_dir / "final_weights.pt")
    record(finished=trainer.state.global_step)


# ---- the parent: signals, timings, resume ----


def child_command(args: argparse.Namespace, output_dir: Path, resume: bool = False) -> list[str]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(output_dir),
        "--max-steps",
        str(args.max_steps),
        "--batch-size",
        str(args.batch_size),
        "--max-seq-length",
        str(args.max_seq_length),
        "--threads",
        str(args.threads),
    ]
    return command + (["--resume"] if resume else [])


def read_events(output_dir: Path) -> list[dict[str, Any]]:
    path = output_dir / "events.jsonl"
    if not path.exists():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.endswith("\n")]


def steps_done(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event for event in events if "step" in event]


def preempt_once(args: argparse.Namespace, output_dir: Path, environment: dict[str, str]) -> dict[str, Any]:
    """Starts a run, sends SIGTERM halfway through step ``signal_after + 1`` and times the way to the exit."""
    output_dir.mkdir(parents=True)
    log = open(output_dir.with_suffix(".log"), "w")  # noqa: SIM115 - the child writes into it for its whole life
    process = subprocess.Popen(child_command(args, output_dir), stdout=log, stderr=subprocess.STDOUT, env=environment)
    while len(steps_done(read_events(output_dir))) < args.signal_after:
        if process.poll() is not None:
            raise RuntimeError(f"the run ended before step {args.signal_after}: see {log.name}")
        time.sleep(0.01)
    steps = steps_done(read_events(output_dir))
    step_seconds = steps[-1]["time"] - steps[-2]["time"] if len(steps) > 1 else 1.0
    time.sleep(step_seconds / 2)
    signalled = time.time()
    process.send_signal(signal.SIGTERM)
    exit_code = process.wait(timeout=600)
    exited = time.time()

    events = read_events(output_dir)
    stop_step = max(event["step"] for event in steps_done(events))
    stop_step_end = next(event["time"] for event in events if event.get("step") == stop_step)
    saved = next(event for event in events if "saved" in event)
    exiting = next(event for event in events if "exiting" in event)
    checkpoint = output_dir / f"checkpoint-{saved['saved']}"
    return {
        "exit_code": exit_code,
        "step_in_flight_at_signal": len([e for e in steps if e["time"] <= signalled]) + 1,
        "stop_step": stop_step,
        "checkpoint_step": saved["saved"],
        "checkpoint_megabytes": round(sum(f.stat().st_size for f in checkpoint.iterdir()) / 2**20, 1),
        "median_step_seconds": round(statistics.median([b["time"] - a["time"] for a, b in zip(steps, steps[1:])]), 3),
        "seconds_signal_to_exit": round(exited - signalled, 2),
        "seconds_finishing_the_step": round(stop_step_end - signalled, 2),
        "seconds_writing_the_checkpoint": round(saved["time"] - stop_step_end, 2),
        "seconds_saved_to_train_return": round(exiting["time"] - saved["time"], 2),
        "seconds_interpreter_exit": round(exited - exiting["time"], 2),
    }


def resume_and_compare(
    args: argparse.Namespace, preempted_dir: Path, straight_dir: Path, environment: dict[str, str]
) -> dict[str, Any]:
    """Resumes the preempted run to the end, runs an uninterrupted one, and compares."""
    import torch

    before = steps_done(read_events(preempted_dir))
    with open(preempted_dir.with_suffix(".resume.log"), "w") as log:
        subprocess.run(
            child_command(args, preempted_dir, resume=True),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            check=True,
        )
    after = steps_done(read_events(preempted_dir))[len(before) :]
    straight_dir.mkdir(parents=True)
    with open(straight_dir.with_suffix(".log"), "w") as log:
        subprocess.run(
            child_command(args, straight_dir), stdout=log, stderr=subprocess.STDOUT, env=environment, check=True
        )
    steps_run = [event["step"] for event in before + after]
    resumed = torch.load(preempted_dir / "final_weights.pt")
    straight = torch.load(straight_dir / "final_weights.pt")
    return {
        "steps_before_preemption": len(before),
        "first_step_after_resume": after[0]["step"] if after else None,
        "steps_after_resume": len(after),
        "steps_redone": len(steps_run) - len(set(steps_run)),
        "steps_missing": args.max_steps - len(set(steps_run)),
        "max_abs_weight_difference_vs_uninterrupted": max(
            (resumed[n] - straight[n]).abs().max().item() for n in straight
        ),
    }


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = timing.fill_defaults(build_parser().parse_args(argv), SIZES)
    if args.child is not None:
        train_child(args)
        return
    started = time.time()
    machine = bench_utils.machine_info()
    repo_root = str(bench_utils.REPO_ROOT)
    environment = dict(
        os.environ,
        OMP_NUM_THREADS=str(args.threads),
        PYTHONPATH=os.pathsep.join(filter(None, [repo_root, os.environ.get("PYTHONPATH")])),
    )
    work = Path(tempfile.mkdtemp(prefix="preemption-cost-"))
    try:
        repeats = []
        for repeat in range(args.repeats):
            repeats.append(preempt_once(args, work / f"preempted-{repeat}", environment))
            print(json.dumps(repeats[-1]), flush=True)
        resume = resume_and_compare(args, work / f"preempted-{args.repeats - 1}", work / "straight", environment)
        print(json.dumps(resume), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "model": "all-MiniLM-L6-v2 (real weights), SST-2 sentences, max_seq_length "
        f"{args.max_seq_length}, batch {args.batch_size}, layer_decay 0.9, AdamW, {args.threads} thread(s)",
        "repeats": repeats,
        "seconds_signal_to_exit": bench_utils.median_and_spread([r["seconds_signal_to_exit"] for r in repeats]),
        "resume": resume,
    }
    timing.Session(NAME, argv, args, started, machine).finish(results)


if __name__ == "__main__":
    main()

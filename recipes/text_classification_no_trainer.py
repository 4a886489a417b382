#!/usr/bin/env python
# Copyright 2025 The finetune_llrd authors. Licensed under the Apache License, Version 2.0.
"""Fine-tunes a sequence classifier with layer-wise learning rates in a plain Accelerate loop, without the Trainer:
the twin of transformers' ``run_glue_no_trainer.py``.

    accelerate launch recipes/text_classification_no_trainer.py --model_name_or_path roberta-base \
        --task_name sst2 --train_file train.tsv --validation_file dev.tsv \
        --layer_decay 0.8 --learning_rate 3e-5 --weight_decay 0.01 --output_dir out/sst2-no-trainer

What layer-wise rates take in a loop of your own, and nothing more:

* the optimizer gets ``finetune_llrd.param_groups(model, ...)``: two groups per depth (weight decay and none),
  each with its own ``lr``; any torch optimizer and any transformers schedule keep the ratios between depths;
* ``finetune_llrd.depth_learning_rate_logs(optimizer)`` gives one current rate per depth (``lr/layer_00`` ...
  ``lr/head``) to log at each step: the depth's two groups share one key, and the values are the scheduled
  rates, where ``lr_table`` reports the base rates;
* under ``accelerate launch`` the prepared scheduler steps once per process at each optimizer step, so the
  schedule is built for ``max_train_steps * num_processes`` steps, as in ``run_glue_no_trainer.py``.

Data: local CSV / TSV / JSON lines / parquet files read as ``recipes/text_classification.py`` reads them
(``--task_name`` gives them GLUE's columns, labels and metric), or ``--task_name`` alone for GLUE from the Hub.
Mixed precision and the number of processes come from ``accelerate launch`` (``--mixed_precision bf16``,
``--multi_gpu --num_processes 2``; on a machine without GPUs the latter starts two CPU ranks, which join over
gloo because the recipe passes ``Accelerator(cpu=True)`` there; ``--cpu --num_processes 2`` starts only one).
Writes ``all_results.json`` (``eval_accuracy``, or the task's metric), the model and its tokenizer to
``--output_dir``, and prints the per-depth table of base rates.
"""

import argparse
import json
import logging
import math
import os
import re
from dataclasses import fields
from functools import partial

import datasets
import numpy as np
import torch
import transformers
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.tracking import GeneralTracker
from accelerate.utils import DataLoaderConfiguration, set_seed
from recipe_utils import (
    ModelArguments,
    load_config,
    load_data_file,
    load_hub_splits,
    take_samples,
)
from text_classification import (
    GLUE_HUB_ID,
    GLUE_TASKS,
    check_text_columns,
    resolve_labels,
    text_metrics,
    text_tokenizer,
)
from torch.utils.data import DataLoader
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EvalPrediction,
    SchedulerType,
    default_data_collator,
    get_scheduler,
)

from finetune_llrd import (
    LayerwiseArgumentsMixin,
    LayerwiseRates,
    depth_learning_rate_logs,
    format_lr_table,
    get_slanted_triangular_schedule,
    layer_map,
    lr_table,
    param_groups,
)
from finetune_llrd.checkpoints import check_resume_matches
from finetune_llrd.depths import parse_layer_mapping, parse_layer_towers
from finetune_llrd.launching import accelerator_available


logger = get_logger(__name__)

# The layer-wise flags, with the names, defaults and help of LLRDTrainingArguments' fields: the same flags give
# the same groups as recipes/text_classification.py.
LAYERWISE_FLAGS = {
    "layer_decay": float,
    "head_learning_rate": float,
    "embedding_learning_rate": float,
    "layer_decay_min_scale": float,
    "layer_grouping": str,
    "layer_mapping": str,
    "layer_towers": str,
    "tower_layer_decay": str,
}
SLANTED_TRIANGULAR = "slanted_triangular"
LOG_FILE = "log.jsonl"
CHECKPOINT_NAME = re.compile(r"^(step|epoch)_(\d+)$")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Fine-tune a sequence classifier with layer-wise learning rates in a plain Accelerate loop."
    )
    data = parser.add_argument_group("data (as recipes/text_classification.py)")
    data.add_argument("--task_name", type=str.lower, default=None, choices=list(GLUE_TASKS), help="A GLUE task.")
    data.add_argument("--train_file", default=None, help="Training data: .csv, .tsv, .json / .jsonl or .parquet.")
    data.add_argument("--validation_file", default=None, help="Evaluation data, as --train_file.")
    data.add_argument("--column_names", nargs="+", default=None, help="Column names of headerless CSV / TSV files.")
    data.add_argument("--text_column", default=None, help="The column of the text (first sentence of a pair).")
    data.add_argument("--text_pair_column", default=None, help="The column of the second sentence, if any.")
    data.add_argument("--label_column", default="label", help="The column of the labels.")
    data.add_argument("--max_train_samples", type=int, default=None, help="Train on a seeded subset of this size.")
    data.add_argument("--max_eval_samples", type=int, default=None, help="Evaluate on a seeded subset of this size.")
    data.add_argument("--max_seq_length", type=int, default=128, help="Tokens per example after truncation.")
    data.add_argument("--pad_to_max_length", action="store_true", help="Pad to --max_seq_length, not per batch.")

    model = parser.add_argument_group("model")
    model.add_argument("--model_name_or_path", required=True, help="A Hub model id or a local model folder.")
    model.add_argument("--tokenizer_name", default=None, help="Tokenizer name or path, if not the model's.")
    model.add_argument("--cache_dir", default=None, help="Where to cache models and datasets from the Hub.")
    model.add_argument("--trust_remote_code", action="store_true", help="Allow models whose code lives on the Hub.")
    model.add_argument(
        "--ignore_mismatched_sizes", action="store_true", help="Replace a pretrained head for another label count."
    )

    training = parser.add_argument_group("training (as run_glue_no_trainer.py)")
    training.add_argument("--per_device_train_batch_size", type=int, default=8)
    training.add_argument("--per_device_eval_batch_size", type=int, default=8)
    training.add_argument("--learning_rate", type=float, default=5e-5, help="The head's rate, the base of the decay.")
    training.add_argument("--weight_decay", type=float, default=0.0)
    training.add_argument("--num_train_epochs", type=int, default=3)
    training.add_argument("--max_train_steps", type=int, default=None, help="Overrides --num_train_epochs.")
    training.add_argument("--gradient_accumulation_steps", type=int, default=1)
    training.add_argument(
        "--lr_scheduler_type",
        default="linear",
        choices=[scheduler.value for scheduler in SchedulerType] + [SLANTED_TRIANGULAR],
    )
    training.add_argument("--num_warmup_steps", type=int, default=0)
    training.add_argument("--output_dir", default=None, help="Where to write the model, results and checkpoints.")
    training.add_argument("--seed", type=int, default=42)
    training.add_argument(
        "--checkpointing_steps", default=None, help="Save the state every N optimizer steps, or 'epoch'."
    )
    training.add_argument(
        "--resume_from_checkpoint",
        default=None,
        help="A step_N / epoch_N folder written by --checkpointing_steps, or 'latest' for the newest in --output_dir.",
    )
    training.add_argument("--with_tracking", action="store_true", help="Log the loss and every depth's rate.")
    training.add_argument(
        "--report_to",
        default="all",
        help="Accelerate's trackers ('all', 'tensorboard', 'wandb', ...), or 'jsonl' for output_dir/log.jsonl.",
    )

    layerwise = parser.add_argument_group("layer-wise rates (as LLRDTrainingArguments)")
    mixin_fields = {field.name: field for field in fields(LayerwiseArgumentsMixin)}
    for name, kind in LAYERWISE_FLAGS.items():
        field = mixin_fields[name]
        layerwise.add_argument(
            f"--{name}",
            type=kind,
            default=field.default,
            choices=field.metadata.get("choices"),
            help=field.metadata["help"].replace("%", "%%"),
        )

    args = parser.parse_args(argv)
    if args.train_file is None and args.task_name is None:
        parser.error("Give the data: --train_file and --validation_file, or --task_name (GLUE from the Hub).")
    steps = args.checkpointing_steps
    if steps not in (None, "epoch") and (not steps.isdigit() or int(steps) < 1):
        parser.error(f"--checkpointing_steps takes a positive integer or 'epoch', got {args.checkpointing_steps}.")
    if args.output_dir is None and (args.checkpointing_steps or args.report_to == "jsonl"):
        parser.error("--checkpointing_steps and --report_to jsonl write into --output_dir: give one.")
    return args


class JsonLinesTracker(GeneralTracker):
    """An Accelerate tracker that appends every ``accelerator.log`` call to a JSON-lines file, one object a step:
    exact values without a tracking service (``--report_to jsonl``)."""

    name = "jsonl"
    requires_logging_directory = False

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    @property
    def tracker(self):
        return self.path

    def store_init_configuration(self, values: dict):
        self.log({"config": values})

    def log(self, values: dict, step: int | None = None, **kwargs):
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"step": step, **values}) + "\n")


def build_param_groups(model, args):
    """The optimizer's groups and the model's depths, from the layer-wise flags: what
    ``LLRDTrainer.build_param_groups`` builds from the same flags.

    ``param_groups(model, lr=..., layer_decay=..., weight_decay=...)`` is the short form; ``rates=`` carries
    every rate setting at once, including a per-tower decay.
    """
    rates = LayerwiseRates(
        args.learning_rate,
        args.layer_decay,
        args.head_learning_rate,
        args.embedding_learning_rate,
        args.layer_decay_min_scale,
        tower_layer_decay=args.tower_layer_decay,
    )
    layers = layer_map(
        model,
        grouping=args.layer_grouping,
        mapping=None if args.layer_mapping is None else parse_layer_mapping(args.layer_mapping),
        towers=parse_layer_towers(args.layer_towers),
    )
    return param_groups(model, rates=rates, weight_decay=args.weight_decay, layers=layers), layers


def load_splits(args):
    """The "train" and "eval" splits, read as ``recipes/text_classification.py`` reads them, with their sources."""
    if args.train_file is not None:
        files = {"train": args.train_file, "eval": args.validation_file}
        files = {split: path for split, path in files.items() if path is not None}
        read = partial(load_data_file, column_names=args.column_names, cache_dir=args.cache_dir)
        return {split: read(path) for split, path in files.items()}, files
    eval_split = "validation_matched" if args.task_name == "mnli" else "validation"
    requested = {"train": ("train", "--task_name"), "eval": (eval_split, "--task_name")}
    return load_hub_splits(GLUE_HUB_ID, args.task_name, requested, cache_dir=args.cache_dir)


def find_checkpoint(args) -> str | None:
    """The folder ``--resume_from_checkpoint`` names; ``latest``: the newest ``step_N`` / ``epoch_N`` folder in
    ``--output_dir``."""
    if args.resume_from_checkpoint != "latest":
        return args.resume_from_checkpoint
    folders = [name for name in os.listdir(args.output_dir) if CHECKPOINT_NAME.match(name)] if args.output_dir else []
    if not folders:
        return None
    return os.path.join(
        args.output_dir, max(folders, key=lambda name: os.path.getmtime(os.path.join(args.output_dir, name)))
    )


def evaluate(model, dataloader, accelerator, compute_metrics, is_regression) -> dict[str, float]:
    model.eval()
    all_logits, all_labels = [], []
    for batch in dataloader:
        with torch.no_grad():
            logits = model(**batch).logits
        logits, labels = accelerator.gather_for_metrics((logits, batch["labels"]))
        all_logits.append(logits.float().cpu().numpy())
        all_labels.append(labels.cpu().numpy())
    logits, labels = np.concatenate(all_logits), np.concatenate(all_labels)
    metrics = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    model.train()
    return {f"eval_{name}": float(value) for name, value in metrics.items()}


def main(argv=None):
    args = parse_args(argv)
    trackers = None
    if args.with_tracking:
        trackers = (
            [JsonLinesTracker(os.path.join(args.output_dir, LOG_FILE))]
            if args.report_to == "jsonl"
            else args.report_to
        )
    # The seedable sampler draws each epoch's order from (seed, epoch) alone, so a resumed run sees the same
    # batches as an uninterrupted one.
    # cpu=True on a machine without an accelerator: without it, processes that `accelerate launch --multi_gpu
    # --num_processes 2` starts there do not join, and each trains alone on all the data.
    accelerator = Accelerator(
        cpu=not accelerator_available(),
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        log_with=trackers,
        project_dir=args.output_dir,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s", datefmt="%m/%d/%Y %H:%M:%S", level=logging.INFO
    )
    logging.getLogger(__name__).setLevel(logging.INFO)
    logger.info(accelerator.state, main_process_only=False)
    if accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_warning()
        transformers.utils.logging.set_verbosity_warning()
    else:
        datasets.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if accelerator.num_processes != launched:
        raise RuntimeError(
            f"The launcher started {launched} processes, but they did not join one run ({accelerator.num_processes}): "
            f"{accelerator.state.distributed_type} on {accelerator.device}."
        )
    set_seed(args.seed)
    if accelerator.is_main_process and args.output_dir is not None:
        os.makedirs(args.output_dir, exist_ok=True)
    accelerator.wait_for_everyone()

    # Data, labels and model, as recipes/text_classification.py has them.
    splits, sources = load_splits(args)
    if "eval" not in splits:
        raise ValueError("Give --validation_file: the run ends with its accuracy.")
    text_columns = check_text_columns(args, splits, sources)
    labels, labels_origin = resolve_labels(args, splits, sources)
    model_args = ModelArguments(
        model_name_or_path=args.model_name_or_path,
        cache_dir=args.cache_dir,
        trust_remote_code=args.trust_remote_code,
        ignore_mismatched_sizes=args.ignore_mismatched_sizes,
    )
    config = load_config(
        model_args,
        None if labels is None else labels.names,
        labels_origin,
        finetuning_task=args.task_name or "text-classification",
        head_suffix="ForSequenceClassification",
    )
    config.problem_type = "regression" if labels is None else "single_label_classification"
    tokenizer = AutoTokenizer.from_pretrained(
        args.tokenizer_name or args.model_name_or_path, **model_args.hub_options()
    )
    model = AutoModelForSequenceClassification.from_pretrained(
        args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=args.ignore_mismatched_sizes,
        **model_args.hub_options(),
    )
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id

    tokenize = text_tokenizer(args, tokenizer, text_columns, labels)
    with accelerator.main_process_first():
        for split, max_samples in (("train", args.max_train_samples), ("eval", args.max_eval_samples)):
            dataset = take_samples(splits[split], max_samples, args.seed)
            splits[split] = dataset.map(tokenize, batched=True, remove_columns=dataset.column_names)
    if args.pad_to_max_length:
        collator = default_data_collator
    else:
        multiple = 8 if accelerator.mixed_precision in ("fp16", "bf16", "fp8") else None
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)
    # A generator of its own keeps the loader from drawing on the global RNG, which dropout uses: restored with a
    # checkpoint, it then gives a resumed run the masks of an uninterrupted one.
    train_dataloader = DataLoader(
        splits["train"],
        shuffle=True,
        collate_fn=collator,
        batch_size=args.per_device_train_batch_size,
        generator=torch.Generator().manual_seed(args.seed),
    )
    eval_dataloader = DataLoader(splits["eval"], collate_fn=collator, batch_size=args.per_device_eval_batch_size)

    # The layer-wise optimizer: one group per depth and weight-decay class, each with its own lr.
    groups, layers = build_param_groups(model, args)
    optimizer = torch.optim.AdamW(groups, lr=args.learning_rate)

    # Each process gets every num_processes-th batch (accelerate evens them out).
    batches_per_process = math.ceil(len(train_dataloader) / accelerator.num_processes)
    num_update_steps_per_epoch = math.ceil(batches_per_process / args.gradient_accumulation_steps)
    if args.max_train_steps is None:
        args.max_train_steps = args.num_train_epochs * num_update_steps_per_epoch
    # The prepared scheduler steps once per process at each optimizer step (run_glue_no_trainer.py does the same).
    scheduler_steps = args.max_train_steps * accelerator.num_processes
    if args.lr_scheduler_type == SLANTED_TRIANGULAR:
        lr_scheduler = get_slanted_triangular_schedule(optimizer, scheduler_steps)
    else:
        lr_scheduler = get_scheduler(
            args.lr_scheduler_type,
            optimizer=optimizer,
            num_warmup_steps=args.num_warmup_steps * accelerator.num_processes,
            num_training_steps=scheduler_steps,
        )
    model, optimizer, train_dataloader, eval_dataloader, lr_scheduler = accelerator.prepare(
        model, optimizer, train_dataloader, eval_dataloader, lr_scheduler
    )
    args.num_train_epochs = math.ceil(args.max_train_steps / num_update_steps_per_epoch)

    if args.with_tracking:
        experiment_config = {
            key: value for key, value in vars(args).items() if isinstance(value, int | float | str | bool)
        }
        accelerator.init_trackers("text_classification_no_trainer", experiment_config)

    total_batch_size = args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info(
        f"***** Running training: {len(splits['train'])} examples, {args.num_train_epochs} epochs, total batch "
        f"{total_batch_size}, {args.max_train_steps} optimizer steps; {layers.num_layers} blocks "
        f"(depths by {layers.method}) *****"
    )
    completed_steps, starting_epoch, resume_step = 0, 0, None
    checkpoint = find_checkpoint(args) if args.resume_from_checkpoint else None
    if checkpoint is not None:
        check_resume_matches(checkpoint, optimizer.param_groups, optimizer_file="optimizer.bin")
        accelerator.print(f"Resumed from checkpoint: {checkpoint}")
        accelerator.load_state(checkpoint)
        kind, number = CHECKPOINT_NAME.match(os.path.basename(os.path.normpath(checkpoint))).groups()
        if kind == "epoch":
            starting_epoch = int(number) + 1
            completed_steps = starting_epoch * num_update_steps_per_epoch
        else:
            completed_steps = int(number)
            starting_epoch = completed_steps // num_update_steps_per_epoch
            resume_step = (
                completed_steps - starting_epoch * num_update_steps_per_epoch
            ) * args.gradient_accumulation_steps

    compute_metrics = text_metrics(args.task_name, is_regression=labels is None)
    metrics = {}
    for epoch in range(starting_epoch, args.num_train_epochs):
        model.train()
        train_dataloader.set_epoch(epoch)
        if epoch == starting_epoch and resume_step:
            active_dataloader = accelerator.skip_first_batches(train_dataloader, resume_step)
        else:
            active_dataloader = train_dataloader
        for batch in active_dataloader:
            with accelerator.accumulate(model):
                loss = model(**batch).loss
                accelerator.backward(loss)
                # The rate of every depth for this step: read before the scheduler moves them on.
                rates = depth_learning_rate_logs(optimizer)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            if not accelerator.sync_gradients:
                continue
            completed_steps += 1
            if args.with_tracking:
                train_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
                accelerator.log({"train_loss": train_loss, **rates}, step=completed_steps)
            if (
                args.checkpointing_steps not in (None, "epoch")
                and completed_steps % int(args.checkpointing_steps) == 0
            ):
                accelerator.save_state(os.path.join(args.output_dir, f"step_{completed_steps}"))
            if completed_steps >= args.max_train_steps:
                break

        metrics = evaluate(model, eval_dataloader, accelerator, compute_metrics, labels is None)
        logger.info(f"epoch {epoch}: {metrics}")
        if args.with_tracking:
            accelerator.log({**metrics, "epoch": epoch}, step=completed_steps)
        if args.checkpointing_steps == "epoch":
            accelerator.save_state(os.path.join(args.output_dir, f"epoch_{epoch}"))
        if completed_steps >= args.max_train_steps:
            break

    if not metrics:  # resumed from the last epoch's checkpoint: nothing left to train
        metrics = evaluate(model, eval_dataloader, accelerator, compute_metrics, labels is None)
    # The base rate of every depth (what the schedule scaled), once.
    if accelerator.is_main_process:
        print(f"***** layer-wise learning rates (L={layers.num_layers} blocks, depths by {layers.method}) *****")
        print(format_lr_table(lr_table(optimizer.param_groups, layers)))
    if args.output_dir is not None:
        accelerator.wait_for_everyone()
        unwrapped_model = accelerator.unwrap_model(model)
        unwrapped_model.save_pretrained(
            args.output_dir, is_main_process=accelerator.is_main_process, save_function=accelerator.save
        )
        if accelerator.is_main_process:
            tokenizer.save_pretrained(args.output_dir)
            results = {**metrics, "train_samples": len(splits["train"]), "eval_samples": len(splits["eval"])}
            with open(os.path.join(args.output_dir, "all_results.json"), "w", encoding="utf-8") as handle:
                json.dump(results, handle, indent=2)
    # Last: it also ends the processes' group.
    accelerator.end_training()
    return metrics


if __name__ == "__main__":
    main()

"""recipes/text_classification_no_trainer.py, the plain Accelerate loop: its groups are the Trainer recipe's for the
same flags, two real gloo ranks log every depth's current rate through the schedule, and a run resumed from its
checkpoint continues exactly."""

import json
import os
import re

import pytest
import text_classification
import text_classification_no_trainer
import torch
from accelerate.state import AcceleratorState
from launch import accelerate_launch
from recipe_helpers import RECIPES_DIR, read_json, save_tiny_text_model, shared_data, sst2_sentences
from recipe_utils import RecipeTrainingArguments, parse_arguments
from transformers import AutoModelForSequenceClassification

from finetune_llrd import LLRDTrainer, format_lr_table


SST2_TRAIN, SST2_DEV = shared_data("sst2", "train.tsv"), shared_data("sst2", "test.tsv")
RECIPE = os.path.join(RECIPES_DIR, "text_classification_no_trainer.py")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_text_model(str(tmp_path_factory.mktemp("tiny-bert")), sst2_sentences(3000))


def _data_flags(tiny_bert, output_dir):
    return [
        "--model_name_or_path", tiny_bert, "--task_name", "sst2", "--train_file", SST2_TRAIN,
        "--validation_file", SST2_DEV, "--output_dir", str(output_dir), "--learning_rate", "1e-3",
    ]  # fmt: skip


def _groups(groups):
    return [
        (group["layer"], group.get("tower"), tuple(group["param_names"]), group["lr"], group["weight_decay"])
        for group in groups
    ]


def _trainer_recipe_groups(tiny_bert, argv):
    """The optimizer groups recipes/text_classification.py builds from ``argv``, and its per-depth table."""
    _, _, training_args = parse_arguments(
        (text_classification.ModelArguments, text_classification.DataTrainingArguments, RecipeTrainingArguments), argv
    )
    trainer = LLRDTrainer(model=AutoModelForSequenceClassification.from_pretrained(tiny_bert), args=training_args)
    optimizer = trainer.create_optimizer()
    return optimizer.param_groups, format_lr_table(trainer.layerwise_lr_table())


LAYERWISE_FLAGS = [
    "--layer_decay 0.5 --weight_decay 0.01",
    "--layer_decay 0.8 --head_learning_rate 2e-3 --embedding_learning_rate 1e-5 --layer_decay_min_scale 0.3",
    '--layer_decay 0.9 --weight_decay 0.05 --layer_grouping stage --layer_mapping {"^bert.pooler":2}',
]


@pytest.mark.parametrize("flags", LAYERWISE_FLAGS)
def test_the_same_flags_give_the_groups_of_the_trainer_recipe(tiny_bert, tmp_path, flags):
    argv = _data_flags(tiny_bert, tmp_path / "out") + flags.split()
    trainer_groups, _ = _trainer_recipe_groups(tiny_bert, argv)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert)
    groups, _ = text_classification_no_trainer.build_param_groups(
        model, text_classification_no_trainer.parse_args(argv)
    )
    # Same parameters in the same groups, with the same depth, lr and weight decay: two groups a depth
    # with weight decay (decay and no-decay), one without.
    assert _groups(groups) == _groups(trainer_groups)
    assert len(groups) == (2 * 5 if "--weight_decay" in flags else 5)


def _log(output_dir):
    with open(os.path.join(output_dir, "log.jsonl"), encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle]
    return {record["step"]: record for record in records if "train_loss" in record}


def _printed_table(output):
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("***** layer-wise learning rates"))
    return lines[start], "\n".join(lines[start + 1 : start + 8])


def test_two_ranks_log_every_depths_current_rate_and_resume_exactly(tiny_bert, tmp_path):
    flags = "--layer_decay 0.5 --weight_decay 0.01"
    common = [
        *flags.split(), "--num_warmup_steps", "2", "--max_train_samples", "64", "--max_eval_samples", "32", "--per_device_train_batch_size", "8",
        "--num_train_epochs", "2", "--with_tracking", "--report_to", "jsonl", "--checkpointing_steps", "3",
        "--cache_dir", str(tmp_path / "cache"),
    ]  # fmt: skip
    first = accelerate_launch(RECIPE, *_data_flags(tiny_bert, tmp_path / "first"), *common)
    output = first.stdout + first.stderr
    assert output.count("Num processes: 2") == 2 and output.count("MULTI_CPU  Backend: gloo") == 2, output[:3000]

    # 64 examples, 8 per rank on 2 ranks: 4 optimizer steps an epoch, 8 in all, warm-up over the first 2.
    log = _log(tmp_path / "first")
    assert sorted(log) == list(range(1, 9))
    for step, record in log.items():
        k = step - 1  # the scheduler's step count when this optimizer step ran
        head = 1e-3 * (k / 2 if k < 2 else (8 - k) / 6)
        expected = {"lr/layer_00": head / 16, "lr/layer_01": head / 8, "lr/layer_02": head / 4}
        expected.update({"lr/layer_03": head / 2, "lr/head": head})
        assert {key: value for key, value in record.items() if key.startswith("lr/")} == pytest.approx(expected)
    results = read_json(str(tmp_path / "first"), "all_results.json")
    assert results["train_samples"] == 64 and results["eval_samples"] == 32 and 0 <= results["eval_accuracy"] <= 1

    # The table printed once (rank 0), with the Trainer recipe's base rates, parameter counts and weight decay.
    title, table = _printed_table(output)
    assert output.count("***** layer-wise learning rates") == 1
    assert title == "***** layer-wise learning rates (L=3 blocks, depths by block_stack) *****"
    _, trainer_table = _trainer_recipe_groups(tiny_bert, _data_flags(tiny_bert, tmp_path / "x") + flags.split())
    assert table == trainer_table

    # Resumed mid-epoch from step 3 on 2 ranks: steps 4-8 log the rates, and the losses, of the uninterrupted run.
    assert sorted(os.listdir(tmp_path / "first" / "step_3")) == sorted(os.listdir(tmp_path / "first" / "step_6"))
    resume = ["--resume_from_checkpoint", str(tmp_path / "first" / "step_3")]
    second = accelerate_launch(RECIPE, *_data_flags(tiny_bert, tmp_path / "second"), *common, *resume)
    assert "Resumed from checkpoint" in second.stdout + second.stderr
    resumed = _log(tmp_path / "second")
    assert sorted(resumed) == list(range(4, 9))
    assert {step: log[step] for step in resumed} == resumed
    assert read_json(str(tmp_path / "second"), "all_results.json") == results


def _run_in_process(argv):
    AcceleratorState._reset_state(reset_partial_state=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return text_classification_no_trainer.main(argv)
    finally:
        torch.set_num_threads(threads)
        AcceleratorState._reset_state(reset_partial_state=True)


def test_a_checkpoint_of_other_groups_is_refused_and_latest_finds_the_newest(tiny_bert, tmp_path):
    output_dir = tmp_path / "out"
    small = ["--max_train_samples", "16", "--max_eval_samples", "16", "--per_device_train_batch_size", "8"]
    argv = _data_flags(tiny_bert, output_dir) + small + ["--num_train_epochs", "1", "--checkpointing_steps", "epoch"]
    metrics = _run_in_process([*argv, "--layer_decay", "0.5"])
    assert set(metrics) == {"eval_accuracy"} and os.path.isdir(output_dir / "epoch_0")

    with pytest.raises(ValueError, match=re.escape("its optimizer was built with other layer-wise groups")):
        _run_in_process([*argv, "--layer_decay", "0.8", "--resume_from_checkpoint", "latest"])
    # The same flags resume from the end of the only epoch: nothing left to train, the same score.
    assert _run_in_process([*argv, "--layer_decay", "0.5", "--resume_from_checkpoint", "latest"]) == metrics


def test_flags_are_checked_before_anything_loads(capsys):
    with pytest.raises(SystemExit):
        text_classification_no_trainer.parse_args(
            ["--model_name_or_path", "m", "--train_file", "t.csv"] + ["--checkpointing_steps", "0"]
        )
    assert "--checkpointing_steps takes a positive integer or 'epoch'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        text_classification_no_trainer.parse_args(["--model_name_or_path", "m"])
    assert "Give the data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        text_classification_no_trainer.parse_args(
            ["--model_name_or_path", "m", "--task_name", "rte", "--layer_grouping", "x"]
        )

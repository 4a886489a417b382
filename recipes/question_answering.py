#!/usr/bin/env python
# Copyright 2025 The finetune_llrd authors. Licensed under the Apache License, Version 2.0.
"""Fine-tunes an extractive question-answering model (SQuAD) with layer-wise learning rates, scored with the
SQuAD script's exact match and F1.

    accelerate launch recipes/question_answering.py --model_name_or_path google/electra-base-discriminator \
        --dataset_name rajpurkar/squad --learning_rate 8e-5 --layer_decay 0.8 --head_learning_rate 1e-4 \
        --max_seq_length 384 --doc_stride 128 --bf16 --output_dir out/squad

Data comes from one of:

* ``--dataset_name``: a Hub dataset in SQuAD's format (``rajpurkar/squad``, ``rajpurkar/squad_v2``, ...);
* ``--train_file`` / ``--validation_file``: JSON lines (``.jsonl``, ``.jsonl.gz``), JSON, CSV or parquet files with
  SQuAD's columns: ``id``, ``context``, ``question`` and ``answers`` (``{"text": [...], "answer_start": [...]}``,
  character offsets into the context).

As transformers' ``examples/pytorch/question-answering/run_qa.py`` does, a context longer than
``--max_seq_length`` is split into overlapping windows (``--doc_stride`` tokens shared by two windows); a
training window that does not hold the answer points at the first token. At evaluation every window's
``--n_best_size`` best start and end tokens are paired into spans of at most ``--max_answer_length`` tokens,
and each question gets the text of its best span over all its windows. Predictions are scored with the
official SQuAD v1.1 script's normalisation (lower case, no punctuation, no articles, single spaces): exact
match and token F1, in percent, each the best over a question's reference answers. With
``--version_2_with_negative`` (SQuAD v2: questions without an answer in the context) a question is answered
with "" when the no-answer score beats the best span's by more than ``--null_score_diff_threshold``, and the
scores are also given separately for answerable (``HasAns_``) and unanswerable (``NoAns_``) questions.

Without ``--do_train`` the recipe trains (and, without ``--do_eval`` / ``--do_predict`` either, evaluates). It
writes ``all_results.json`` (``eval_exact_match``, ``eval_f1``), ``eval_predictions.json`` (question id -> answer) and
a model card with the layer-wise settings and the per-depth learning rates to ``--output_dir``, and prints the
final metrics and the per-depth learning rates. ``--do_predict`` answers the questions of ``--test_file`` (or the
Hub dataset's ``--test_split_name``) into ``predict_predictions.json``, and scores them (``predict_f1``, ...)
when that data has answers.
"""

import collections
import json
import logging
import math
import os
import re
import string
import time
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from datasets import Dataset
from recipe_utils import (
    DataCheck,
    PredictionDataArgumentsMixin,
    Refusal,
    TokenizationArgumentsMixin,
    build_trainer,
    check_data_files,
    check_texts,
    check_unique,
    column_values,
    is_missing,
    keep_splits_to_run,
    load_config,
    load_model,
    load_splits,
    model_card_kwargs,
    pad_to_multiple_of,
    prepare_run,
    require_rows_and_columns,
    short,
    take_samples,
    tokenize_splits,
    train_evaluate_and_report,
)
from recipe_utils import ModelArguments as BaseModelArguments
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, DataCollatorWithPadding, default_data_collator
from transformers.trainer_utils import speed_metrics

from finetune_llrd import LLRDTrainer


logger = logging.getLogger(__name__)

# A question-answering head has two outputs per token: the score of the answer starting and ending there.
QA_OUTPUTS = ("start", "end")


@dataclass
class ModelArguments(BaseModelArguments):
    """Which model, config and tokenizer to fine-tune from."""

    model_name_or_path: str = field(
        metadata={"help": "A Hub model id (google/electra-base-discriminator) or the path of a local model folder."}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "Tokenizer name or path, if not the model's; it must be a fast tokenizer."}
    )


@dataclass
class DataTrainingArguments(PredictionDataArgumentsMixin, TokenizationArgumentsMixin):
    """Which questions to train and evaluate on, how to read them, and how to turn token scores into answers."""

    dataset_name: str | None = field(
        default=None, metadata={"help": "A Hub dataset in SQuAD's format (rajpurkar/squad, rajpurkar/squad_v2)."}
    )
    train_file: str | None = field(
        default=None,
        metadata={"help": "Training data: .jsonl / .json (also .gz), .csv or .parquet with SQuAD's columns."},
    )
    test_file: str | None = field(
        default=None,
        metadata={"help": "Questions to answer (--do_predict), as --train_file; scored when they have answers."},
    )
    question_column_name: str = field(default="question", metadata={"help": "The column holding the questions."})
    context_column_name: str = field(
        default="context", metadata={"help": "The column holding the contexts the answers are taken from."}
    )
    answer_column_name: str = field(
        default="answers",
        metadata={
            "help": "The column holding the answers: {'text': [...], 'answer_start': [...]} with character offsets "
            "into the context (empty lists for a question without an answer, with --version_2_with_negative)."
        },
    )
    max_seq_length: int = field(
        default=384,
        metadata={"help": "Tokens per window (question and part of the context); longer contexts are split."},
    )
    doc_stride: int = field(
        default=128, metadata={"help": "Tokens shared by two consecutive windows of a long context."}
    )
    n_best_size: int = field(
        default=20, metadata={"help": "Start and end tokens considered per window when choosing the answer."}
    )
    max_answer_length: int = field(default=30, metadata={"help": "The longest answer predicted, in tokens."})
    version_2_with_negative: bool = field(
        default=False,
        metadata={"help": "Some questions have no answer in their context (SQuAD v2): predict '' for them."},
    )
    null_score_diff_threshold: float = field(
        default=0.0,
        metadata={
            "help": "With --version_2_with_negative: answer '' when the no-answer score exceeds the best span's "
            "score by more than this."
        },
    )

    def __post_init__(self):
        files = {"train_file": self.train_file, "validation_file": self.validation_file, "test_file": self.test_file}
        if (self.dataset_name is not None) == any(path is not None for path in files.values()):
            raise ValueError(
                "Give the data one way: --dataset_name (Hub) or --train_file / --validation_file / --test_file."
            )
        check_data_files(files)
        if not 0 < self.doc_stride < self.max_seq_length:
            raise ValueError(
                f"--doc_stride {self.doc_stride} must be positive and smaller than --max_seq_length "
                f"{self.max_seq_length}: it is the overlap of two windows of a long context."
            )
        for name in ("n_best_size", "max_answer_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be a positive integer, got {getattr(self, name)}.")
        super().__post_init__()


def check_answers(data_args, splits: dict[str, Dataset], sources: dict[str, str]) -> None:
    """Checks that every split's answers are SQuAD's ``{"text": [...], "answer_start": [...]}``, that every row has
    a question and a context, that every answer is the text its ``answer_start`` points at in its context, that
    the questions to score have distinct ids, and that questions without an answer come only with
    --version_2_with_negative; a test split may have no answers at all. A split without an ``id`` column gets the
    row numbers as ids (the predictions are keyed by them).

    Raises:
        ValueError: naming the split's source and the column.
        DataError: naming the file, the row and the column of every row that does not fit.
    """
    column = data_args.answer_column_name
    for split, dataset in splits.items():
        if "id" not in dataset.column_names:
            splits[split] = dataset.add_column("id", [str(index) for index in range(len(dataset))])
        feature = splits[split].features.get(column)
        if feature is not None and (not isinstance(feature, dict) or not {"text", "answer_start"} <= set(feature)):
            raise Refusal(
                f"Column {column!r} of {sources[split]} holds {feature}, not SQuAD's answers "
                "{'text': [...], 'answer_start': [...]}. Set --answer_column_name to the column of answers; the "
                f"columns are {dataset.column_names}."
            )
    context_column = data_args.context_column_name
    with DataCheck(splits, sources) as check:
        check_texts(check, {data_args.question_column_name: "question", context_column: "context"})
        scored = [split for split in splits if split != "train"]
        check_unique(check, "id", scored, "the answers are keyed by id, so one of the two questions would go unscored")
        for split, dataset in splits.items():
            if column in dataset.column_names:
                for row, (answers, context) in enumerate(
                    zip(column_values(dataset, column), column_values(dataset, context_column)), start=1
                ):
                    for problem in answer_problems(answers, context):
                        check.add(split, row, column, problem)
    for split, dataset in splits.items():
        unanswered = (
            sum(len(answers["text"]) == 0 for answers in column_values(dataset, column))
            if column in dataset.column_names
            else 0
        )
        if unanswered and not data_args.version_2_with_negative:
            raise Refusal(
                f"{unanswered} of the {len(dataset)} questions of {sources[split]} have no answer (SQuAD v2): pass "
                "--version_2_with_negative to train and score 'no answer'."
            )


def answer_problems(answers, context) -> list[str]:
    """What is wrong with a row's answers: not SQuAD's two lists of one length, an answer that is not text, or
    whose ``answer_start`` is not where its text stands in ``context`` (an offset off by a few characters would
    train on the wrong span; one past the end would make the question unanswered)."""
    texts, starts = (answers.get("text"), answers.get("answer_start")) if isinstance(answers, dict) else (None, None)
    if not isinstance(texts, list) or not isinstance(starts, list):
        return [f"holds {short(answers)}, not SQuAD's answers {{'text': [...], 'answer_start': [...]}}"]
    if len(texts) != len(starts):
        return [f"holds {len(texts)} answer texts but {len(starts)} answer_start offsets"]
    if not isinstance(context, str):
        return []
    problems = []
    for number, (text, start) in enumerate(zip(texts, starts), start=1):
        answer = f"answer {number} {short(text, 40)}"
        if is_missing(text) or not isinstance(text, str):
            problems.append(f"answer {number} is {short(text)}, not text")
        elif not isinstance(start, int) or start < 0:
            problems.append(f"{answer} starts at {short(start)}, not at a character of the context")
        elif start + len(text) > len(context):
            problems.append(
                f"{answer} starts at character {start}, past the end of its {len(context)}-character context"
            )
        elif context[start : start + len(text)] != text:
            found = context.find(text)
            where = f"it stands at character {found}" if found >= 0 else "the context does not hold it"
            reads = short(context[start : start + len(text)], 40)
            problems.append(f"{answer} is not at answer_start {start}, where the context reads {reads} ({where})")
    return problems


def load_fast_tokenizer(model_args):
    """The model's fast tokenizer, whose offset mapping ties tokens to characters of the context.

    Raises:
        ValueError: for a slow tokenizer.
    """
    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name or model_args.model_name_or_path, **model_args.hub_options()
    )
    if not tokenizer.is_fast:
        raise ValueError(
            f"{type(tokenizer).__name__} is not a fast tokenizer: answers are mapped to tokens through a fast "
            "tokenizer's offset mapping. Choose a model with a fast tokenizer, or one with --tokenizer_name."
        )
    return tokenizer


def shorten_questions(questions: list[str], *, tokenizer, max_seq_length: int, doc_stride: int) -> list[str]:
    """The questions, each cut after its last token that leaves a window room for more than ``doc_stride``
    context tokens (a fast tokenizer refuses to split a context into windows otherwise); logs how many were cut.

    Raises:
        ValueError: when ``max_seq_length`` leaves no room for a question at all.
    """
    room = max_seq_length - doc_stride - tokenizer.num_special_tokens_to_add(pair=True) - 1
    if room < 1:
        raise ValueError(
            f"--max_seq_length {max_seq_length} leaves no room for a question beside {doc_stride + 1} context tokens "
            "(--doc_stride + 1) and the special tokens: raise --max_seq_length or lower --doc_stride."
        )
    tokens = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    shortened = [
        question[: offsets[room - 1][1]] if len(offsets) > room else question
        for question, offsets in zip(questions, tokens["offset_mapping"])
    ]
    cut = sum(len(offsets) > room for offsets in tokens["offset_mapping"])
    if cut:
        logger.warning(
            f"{cut} of {len(questions)} questions are longer than the {room} tokens that --max_seq_length "
            f"{max_seq_length} leaves beside {doc_stride + 1} context tokens: they are cut to their first {room} tokens."
        )
    return shortened


def tokenize_windows(examples, *, tokenizer, data_args, max_seq_length: int):
    """Question and context tokenized into windows of ``max_seq_length`` tokens, consecutive windows of a long
    context sharing ``--doc_stride`` tokens. The question comes first unless the tokenizer pads on the left; a
    question too long to leave room for the context is cut (:func:`shorten_questions`)."""
    question_first = tokenizer.padding_side == "right"
    questions = [question.lstrip() for question in examples[data_args.question_column_name]]
    questions = shorten_questions(
        questions, tokenizer=tokenizer, max_seq_length=max_seq_length, doc_stride=data_args.doc_stride
    )
    contexts = examples[data_args.context_column_name]
    return tokenizer(
        questions if question_first else contexts,
        contexts if question_first else questions,
        truncation="only_second" if question_first else "only_first",
        max_length=max_seq_length,
        stride=data_args.doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length" if data_args.pad_to_max_length else False,
    )


def answer_token_span(
    offsets: list[tuple[int, int]], sequence_ids: list[int | None], context_id: int, answer: tuple[int, int]
) -> tuple[int, int] | None:
    """The first and last token of a window that cover the answer's characters ``[start, end)``, or None when
    the window does not hold the whole answer.

    Args:
        offsets: every token's (start, end) characters.
        sequence_ids: every token's sequence (0 or 1; None for special tokens).
        context_id: which sequence is the context.
        answer: the answer's first character and the character after its last.
    """
    start_char, end_char = answer
    first = sequence_ids.index(context_id)
    last = len(sequence_ids) - 1 - sequence_ids[::-1].index(context_id)
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return None
    while first < len(offsets) and offsets[first][0] <= start_char:
        first += 1
    while offsets[last][1] >= end_char:
        last -= 1
    return first - 1, last + 1


def prepare_train_features(examples, *, tokenizer, data_args, max_seq_length: int):
    """The windows of a batch of questions, each with the token positions of its answer (``start_positions``,
    ``end_positions``); a window without the answer, or a question without one, points at the first token."""
    windows = tokenize_windows(examples, tokenizer=tokenizer, data_args=data_args, max_seq_length=max_seq_length)
    example_of_window = windows.pop("overflow_to_sample_mapping")
    all_offsets = windows.pop("offset_mapping")
    context_id = 1 if tokenizer.padding_side == "right" else 0
    windows["start_positions"], windows["end_positions"] = [], []
    for index, offsets in enumerate(all_offsets):
        input_ids = windows["input_ids"][index]
        no_answer_index = next(
            (
                input_ids.index(token)
                for token in (tokenizer.cls_token_id, tokenizer.bos_token_id)
                if token in input_ids
            ),
            0,
        )
        answers = examples[data_args.answer_column_name][example_of_window[index]]
        span = None
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            answer = (start_char, start_char + len(answers["text"][0]))
            span = answer_token_span(offsets, windows.sequence_ids(index), context_id, answer)
        start, end = span if span is not None else (no_answer_index, no_answer_index)
        windows["start_positions"].append(start)
        windows["end_positions"].append(end)
    return windows


def prepare_eval_features(examples, *, tokenizer, data_args, max_seq_length: int):
    """The windows of a batch of questions, each with its question's ``example_id`` and the offset mapping of its
    context tokens (None for the question's and the special tokens), from which answers are read back."""
    windows = tokenize_windows(examples, tokenizer=tokenizer, data_args=data_args, max_seq_length=max_seq_length)
    example_of_window = windows.pop("overflow_to_sample_mapping")
    context_id = 1 if tokenizer.padding_side == "right" else 0
    windows["example_id"] = []
    for index in range(len(windows["input_ids"])):
        sequence_ids = windows.sequence_ids(index)
        windows["example_id"].append(str(examples["id"][example_of_window[index]]))
        windows["offset_mapping"][index] = [
            offset if sequence_ids[position] == context_id else None
            for position, offset in enumerate(windows["offset_mapping"][index])
        ]
    return windows


def tokenize_eval_examples(
    splits: dict[str, Dataset], sources: dict[str, str], prepare, *, data_args, training_args
) -> dict[str, Dataset]:
    """Replaces every evaluation and test split by the windows of its random subset of ``--max_eval_samples`` /
    ``--max_predict_samples`` questions.

    Returns:
        Split -> the questions (a question's answers are read back from its windows and scored against them).
    """
    examples = {}
    with training_args.main_process_first(desc="tokenization of the evaluation questions"):
        for split in [split for split in splits if split != "train"]:
            examples[split] = take_samples(splits[split], data_args.max_samples(split), training_args.seed)
            splits[split] = examples[split].map(
                prepare,
                batched=True,
                remove_columns=examples[split].column_names,
                num_proc=data_args.preprocessing_num_workers,
                load_from_cache_file=not data_args.overwrite_cache,
                desc=f"Tokenizing {sources[split]}",
            )
    return examples


def postprocess_qa_predictions(
    examples: Dataset,
    features: Dataset,
    predictions: tuple[np.ndarray, np.ndarray],
    *,
    context_column: str = "context",
    version_2_with_negative: bool = False,
    n_best_size: int = 20,
    max_answer_length: int = 30,
    null_score_diff_threshold: float = 0.0,
) -> tuple[dict[str, str], dict[str, float]]:
    """Each question's answer text from the start and end scores of its windows, as transformers'
    ``utils_qa.postprocess_qa_predictions`` chooses it.

    In every window, each pair of one of the ``n_best_size`` best start tokens and one of the ``n_best_size``
    best end tokens, both in the context, the end not before the start and at most ``max_answer_length``
    tokens apart, is a candidate scored by start score + end score; the question's answer is the context's
    text under the best candidate of all its windows ("empty" when no window has one). With
    ``version_2_with_negative`` the no-answer score is the lowest first-token score (start + end) over the
    windows, and the answer is "" when it exceeds the best candidate's score by more than
    ``null_score_diff_threshold``.

    Args:
        examples: the questions, with ``id`` and the context column.
        features: their windows, with ``example_id`` and ``offset_mapping`` (:func:`prepare_eval_features`).
        predictions: the start and end scores of every window's tokens, (windows, tokens) each; positions past a
            window's end are ignored.

    Returns:
        Question id -> answer text, and (with ``version_2_with_negative``, else empty) question id -> the
        no-answer score minus the best candidate's.
    """
    all_start_logits, all_end_logits = predictions
    if len(features) != len(all_start_logits):
        raise ValueError(f"Got {len(all_start_logits)} predictions for {len(features)} windows.")
    windows_of_example = collections.defaultdict(list)
    for index, example_id in enumerate(features["example_id"]):
        windows_of_example[example_id].append(index)
    all_offsets = features["offset_mapping"]
    answers, null_score_differences = {}, {}
    for example_id, context in zip(examples["id"], examples[context_column]):
        null_prediction, candidates = None, []
        for window in windows_of_example[str(example_id)]:
            start_logits, end_logits = all_start_logits[window], all_end_logits[window]
            offsets = all_offsets[window]
            window_null_score = start_logits[0] + end_logits[0]
            if null_prediction is None or null_prediction["score"] > window_null_score:
                null_prediction = {
                    "offsets": (0, 0), "score": window_null_score,
                    "start_logit": start_logits[0], "end_logit": end_logits[0],
                }  # fmt: skip
            start_indexes = np.argsort(start_logits)[-1 : -n_best_size - 1 : -1].tolist()
            end_indexes = np.argsort(end_logits)[-1 : -n_best_size - 1 : -1].tolist()
            for start in start_indexes:
                for end in end_indexes:
                    if start >= len(offsets) or end >= len(offsets) or offsets[start] is None or offsets[end] is None:
                        continue
                    if end < start or end - start + 1 > max_answer_length:
                        continue
                    candidates.append(
                        {
                            "offsets": (offsets[start][0], offsets[end][1]),
                            "score": start_logits[start] + end_logits[end],
                            "start_logit": start_logits[start],
                            "end_logit": end_logits[end],
                        }
                    )
        if version_2_with_negative and null_prediction is not None:
            candidates.append(null_prediction)
        best = sorted(candidates, key=lambda candidate: candidate["score"], reverse=True)[:n_best_size]
        for candidate in best:
            candidate["text"] = context[candidate["offsets"][0] : candidate["offsets"][1]]
        if not best or (len(best) == 1 and best[0]["text"] == ""):
            best.insert(0, {"text": "empty", "start_logit": 0.0, "end_logit": 0.0, "score": 0.0})
        if not version_2_with_negative:
            answers[str(example_id)] = best[0]["text"]
            continue
        best_span = next(candidate for candidate in best if candidate["text"] != "")
        difference = float(null_prediction["score"] - best_span["start_logit"] - best_span["end_logit"])
        null_score_differences[str(example_id)] = difference
        answers[str(example_id)] = "" if difference > null_score_diff_threshold else best_span["text"]
    return answers, null_score_differences


def normalize_answer(text: str) -> str:
    """The official SQuAD script's normalisation: lower case, punctuation removed, articles (a, an, the) removed,
    whitespace collapsed to single spaces."""
    text = "".join(character for character in text.lower() if character not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answer_f1(prediction: str, reference: str) -> float:
    """The SQuAD script's token F1 of two normalised answers; for an empty answer (SQuAD v2's "no answer"),
    1 if both are empty, else 0."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """Exact match and F1 in percent, each question scored against the best of its reference answers, as the
    official SQuAD v1.1 script (and `evaluate`'s ``squad`` metric, which is that script fetched from the Hub)
    computes them. A question without a reference answer (SQuAD v2) counts as answered right only by "";
    when there are some, ``HasAns_`` and ``NoAns_`` scores and counts are added, as the v2 script reports them.

    Args:
        predictions: question id -> predicted answer.
        references: question id -> its reference answers ([] for a question without one).
    """
    exact, f1 = {}, {}
    for question_id, answers in references.items():
        answers = answers or [""]
        prediction = predictions[question_id]
        exact[question_id] = max(float(normalize_answer(prediction) == normalize_answer(answer)) for answer in answers)
        f1[question_id] = max(answer_f1(prediction, answer) for answer in answers)

    def percent(scores: dict[str, float], ids: list[str]) -> float:
        return 100.0 * sum(scores[question_id] for question_id in ids) / len(ids)

    every = list(references)
    scores = {"exact_match": percent(exact, every), "f1": percent(f1, every)}
    answerable = [question_id for question_id in every if references[question_id]]
    if len(answerable) < len(every):
        unanswerable = [question_id for question_id in every if not references[question_id]]
        for prefix, ids in (("HasAns", answerable), ("NoAns", unanswerable)):
            scores[f"{prefix}_total"] = len(ids)
            if ids:
                scores[f"{prefix}_exact_match"], scores[f"{prefix}_f1"] = percent(exact, ids), percent(f1, ids)
    return scores


class QuestionAnsweringTrainer(LLRDTrainer):
    """An `LLRDTrainer` whose evaluation reads each question's answer back from the scores of its windows
    (:func:`postprocess_qa_predictions`) and scores the answers (:func:`squad_scores`), as transformers'
    ``trainer_qa.QuestionAnsweringTrainer`` does.

    Args:
        eval_examples: the evaluation questions, whose windows are the ``eval_dataset``.
        data_args: the post-processing settings, and the column names.
    """

    def __init__(self, *args, eval_examples: Dataset | None = None, data_args=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_examples = eval_examples
        self.data_args = data_args

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        eval_dataset = self.eval_dataset if eval_dataset is None else eval_dataset
        metrics = self.answer_questions(eval_dataset, self.eval_examples, ignore_keys, metric_key_prefix)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    def answer_questions(
        self, dataset: Dataset, examples: Dataset, ignore_keys=None, metric_key_prefix: str = "predict"
    ) -> dict[str, float]:
        """Answers the questions ``examples`` from the scores of their windows ``dataset``, writes the answers to
        ``<metric_key_prefix>_predictions.json`` and returns the metrics: the SQuAD scores when ``examples`` have
        answers, the loss only when the windows have answer positions.
        """
        start_time = time.time()
        output = self.evaluation_loop(
            self.get_eval_dataloader(dataset),
            description="Evaluation" if metric_key_prefix.startswith("eval") else "Prediction",
            prediction_loss_only=False,
            ignore_keys=ignore_keys,
            metric_key_prefix=metric_key_prefix,
        )
        batch_size = self.args.eval_batch_size * self.args.world_size
        metrics = {
            **output.metrics,
            **speed_metrics(
                metric_key_prefix, start_time, output.num_samples, math.ceil(output.num_samples / batch_size)
            ),
        }
        args = self.data_args
        answers, null_score_differences = postprocess_qa_predictions(
            examples,
            dataset,
            output.predictions[:2],
            context_column=args.context_column_name,
            version_2_with_negative=args.version_2_with_negative,
            n_best_size=args.n_best_size,
            max_answer_length=args.max_answer_length,
            null_score_diff_threshold=args.null_score_diff_threshold,
        )
        if args.answer_column_name in examples.column_names:
            references = {
                str(question_id): answers_of_question["text"]
                for question_id, answers_of_question in zip(examples["id"], examples[args.answer_column_name])
            }
            scores = squad_scores(answers, references)
            metrics.update({f"{metric_key_prefix}_{name}": value for name, value in scores.items()})
        metrics[f"{metric_key_prefix}_questions"] = len(examples)
        if self.is_world_process_zero():
            write_json(os.path.join(self.args.output_dir, f"{metric_key_prefix}_predictions.json"), answers)
            if null_score_differences:
                write_json(
                    os.path.join(self.args.output_dir, f"{metric_key_prefix}_null_odds.json"), null_score_differences
                )
        return metrics


def write_predictions(trainer: QuestionAnsweringTrainer, *, splits: dict[str, Dataset], examples: dict[str, Dataset]):
    """Answers every test split's questions (``--do_predict``): ``predict_predictions.json``, and the scores in
    ``predict_results.json`` when the questions have answers."""
    for split in [split for split in splits if split.startswith("test")]:
        metrics = trainer.answer_questions(splits[split], examples[split], metric_key_prefix="predict")
        metrics["predict_samples"] = len(splits[split])
        trainer.log_metrics("predict", metrics)
        trainer.save_metrics("predict", metrics)


def write_json(path: str, content: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(content, handle, indent=2, ensure_ascii=False)


def main(argv=None):
    model_args, data_args, training_args, checkpoint = prepare_run(ModelArguments, DataTrainingArguments, argv, logger)
    splits, sources = load_splits(data_args, model_args, training_args)
    columns = {
        data_args.question_column_name: "--question_column_name",
        data_args.context_column_name: "--context_column_name",
    }
    require_rows_and_columns(splits, sources, columns, {data_args.answer_column_name: "--answer_column_name"})
    check_answers(data_args, splits, sources)
    keep_splits_to_run(splits, training_args)

    source = sources.get("train", sources.get("eval", sources.get("test")))
    config = load_config(
        model_args, QA_OUTPUTS, source, finetuning_task="question-answering", head_suffix="ForQuestionAnswering"
    )
    tokenizer = load_fast_tokenizer(model_args)
    model = load_model(AutoModelForQuestionAnswering, model_args, config)

    max_seq_length = min(data_args.max_seq_length, tokenizer.model_max_length)
    options = dict(tokenizer=tokenizer, data_args=data_args, max_seq_length=max_seq_length)
    eval_examples = tokenize_eval_examples(
        splits, sources, partial(prepare_eval_features, **options), data_args=data_args, training_args=training_args
    )
    train_split = {split: dataset for split, dataset in splits.items() if split == "train"}
    tokenize_splits(
        train_split,
        sources,
        partial(prepare_train_features, **options),
        data_args=data_args,
        training_args=training_args,
    )
    splits.update(train_split)
    data_collator = (
        default_data_collator
        if data_args.pad_to_max_length
        else DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_to_multiple_of(training_args))
    )

    trainer = build_trainer(
        model, tokenizer, training_args, splits, data_collator=data_collator, compute_metrics=None,
        trainer_class=partial(QuestionAnsweringTrainer, eval_examples=eval_examples.get("eval"), data_args=data_args),
    )  # fmt: skip
    model_card = model_card_kwargs(model_args, data_args, tasks="question-answering")
    predict = partial(write_predictions, splits=splits, examples=eval_examples)
    train_evaluate_and_report(trainer, splits, checkpoint=checkpoint, model_card=model_card, predict=predict)


if __name__ == "__main__":
    main()

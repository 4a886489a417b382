"""What the recipes share: their common arguments, the set-up of a run, data files and Hub splits, labels,
the model, metrics, and training, evaluation and the report at the end.

Each recipe keeps what is specific to its task (how its data is read and checked, its processor, its
transforms or tokenization, its metric and its predictions); ``tests/test_recipes_differences.py`` pins
that split. Nothing here computes layer-wise rates: that is `finetune_llrd`'s (`LLRDTrainingArguments`,
`LLRDTrainer`, `finetune_llrd.model_card`).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import torch
import transformers
import yaml
from datasets import Dataset, load_dataset
from transformers import AutoConfig, HfArgumentParser, PretrainedConfig, PreTrainedModel, Trainer, set_seed
from transformers.utils import is_torch_xla_available

from finetune_llrd import LLRDTrainer, LLRDTrainingArguments
from finetune_llrd.checkpoints import complete_checkpoints, parse_resume_argument, resolve_resume_checkpoint
from finetune_llrd.param_groups import format_lr_table
from finetune_llrd.search import (
    SearchArguments,
    best_command_line,
    default_search_space,
    load_search_space,
    run_search,
    write_search_results,
)

logger = logging.getLogger(__name__)

# Suffix -> `datasets` builder. TSV is read by the csv builder with a tab delimiter and no quote handling.
DATA_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
STAGES = ("do_train", "do_eval", "do_predict")
# Label names shown in full in an error message; longer lists show their first few and their count.
NAMES_SHOWN = 10


@dataclass
class RecipeArgumentsMixin:
    """What the recipes add to any layer-wise `TrainingArguments` class: ``--overwrite_output_dir``, which
    transformers 5 dropped from `TrainingArguments`, the preemption checkpoint, a shorter ``--ddp_timeout``,
    and ``use_cpu`` set on a machine without an accelerator (see :meth:`__post_init__`). Put it first among
    the bases: ``@dataclass class Args(RecipeArgumentsMixin, layerwise_arguments(Seq2SeqTrainingArguments))``.

    As in transformers' example scripts before that, ``--overwrite_output_dir`` guards ``--output_dir``: see
    :func:`find_checkpoint_to_resume`.
    """

    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Write into an --output_dir that already holds files, and train from scratch even if it holds a "
            "checkpoint. Without it the recipe refuses a non-empty --output_dir that holds no checkpoint, and "
            "resumes from the last checkpoint of one that does."
        },
    )

    save_on_preemption: bool = field(
        default=True,
        metadata={
            "help": "On SIGTERM or SIGUSR1 (a cluster's preemption notice), finish the optimizer step, write one complete "
            "checkpoint, write preempted.json and exit with code 75, so that the job can be requeued and resumed "
            "(see recipes/README.md, 'On a cluster'). --save_on_preemption false leaves the signals to their defaults."
        },
    )
    ddp_timeout: int = field(
        default=600,
        metadata={
            "help": "Seconds a collective may wait for the other processes before failing (transformers' default is "
            "1800): a rank lost on another machine stops the job after this long."
        },
    )

    # Pickled by reference to the class, as any dataclass: the reduce of a `layerwise_arguments` class looks
    # the class up among the compositions, which a subclass of one is not (checkpoints torch.save the arguments).
    __reduce__ = object.__reduce__

    def __post_init__(self):
        # Without an accelerator every process runs on the CPU anyway. Saying so is what transformers needs to
        # join launched processes over gloo (`accelerate launch --multi_gpu` on a laptop) and to allow --bf16.
        if not self.use_cpu and not accelerator_available():
            self.use_cpu = True
        super().__post_init__()
        if isinstance(self, SearchArguments):
            SearchArguments.__post_init__(self)


@dataclass
class RecipeTrainingArguments(RecipeArgumentsMixin, LLRDTrainingArguments, SearchArguments):
    """`LLRDTrainingArguments` with the recipes' own settings (:class:`RecipeArgumentsMixin`) and the
    lr x decay search (`SearchArguments`)."""


def accelerator_available() -> bool:
    """Whether torch sees an accelerator (CUDA, MPS, XPU, HPU, NPU, ...) or an XLA device."""
    return torch.accelerator.is_available() or is_torch_xla_available()


@dataclass
class ModelArguments:
    """Which pretrained model to fine-tune, and where to fetch it from: what every recipe takes. A recipe's
    own ``ModelArguments`` adds its processor and model options."""

    model_name_or_path: str = field(
        metadata={"help": "A Hub model id or the path of a local model folder."}
    )
    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache models and datasets from the Hub."})
    model_revision: str = field(
        default="main", metadata={"help": "The model version to use: a branch name, tag name or commit id."}
    )
    token: str | None = field(
        default=None,
        metadata={"help": "Hub token for private models and datasets; by default the one `hf auth login` stored."},
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Allow models whose code lives on the Hub; only for repositories you trust."},
    )
    ignore_mismatched_sizes: bool = field(
        default=False,
        metadata={
            "help": "Replace a pretrained classification head whose number of labels differs from the data's "
            "(needed to fine-tune an ImageNet-1k classifier on another label set)."
        },
    )

    def hub_options(self) -> dict[str, Any]:
        """The keyword arguments of every ``from_pretrained`` call: cache, revision, token, remote code."""
        return {
            "cache_dir": self.cache_dir,
            "revision": self.model_revision,
            "token": self.token,
            "trust_remote_code": self.trust_remote_code,
        }


@dataclass
class DataArgumentsMixin:
    """The data arguments every recipe takes: a Hub dataset and its splits, local files, and random subsets.

    A recipe's ``DataTrainingArguments`` subclasses it, adds its own arguments and checks them in its
    ``__post_init__``, which ends with ``super().__post_init__()``.
    """

    dataset_name: str | None = field(default=None, metadata={"help": "A Hub dataset."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "The Hub dataset's configuration."})
    dataset_revision: str | None = field(default=None, metadata={"help": "The Hub dataset's branch, tag or commit."})
    train_split_name: str = field(default="train", metadata={"help": "The Hub dataset's training split."})
    validation_split_name: str = field(default="validation", metadata={"help": "The Hub dataset's evaluation split."})
    train_file: str | None = field(default=None, metadata={"help": "Local training data."})
    validation_file: str | None = field(default=None, metadata={"help": "Local evaluation data, as --train_file."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on a random subset (seeded by --seed) of this many examples."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Evaluate on a random subset (seeded by --seed) of this many examples."}
    )

    def __post_init__(self):
        # The sizes the recipes take, each checked where a recipe has it (--max_seq_length is the text recipes').
        for name in ("max_seq_length", "max_train_samples", "max_eval_samples", "max_predict_samples"):
            value = getattr(self, name, None)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be a positive integer, got {value}.")

    def data_files(self) -> dict[str, str | None]:
        """Split ("train", "eval", "test") -> its local file, or None."""
        return {"train": self.train_file, "eval": self.validation_file}

    def hub_splits(self) -> dict[str, tuple[str, str]]:
        """Split -> (the Hub dataset's split, the argument that chooses it), as :func:`load_hub_splits` takes them."""
        return {
            "train": (self.train_split_name, "--train_split_name"),
            "eval": (self.validation_split_name, "--validation_split_name"),
        }

    def max_samples(self, split: str) -> int | None:
        """The --max_*_samples of a split ("train", "eval", "eval_mismatched", "test_matched", ...)."""
        return {"train": self.max_train_samples, "eval": self.max_eval_samples}.get(split.split("_")[0])


@dataclass
class PredictionDataArgumentsMixin(DataArgumentsMixin):
    """`DataArgumentsMixin` plus the data to predict (``--do_predict``): a Hub split or a local file."""

    test_split_name: str = field(default="test", metadata={"help": "The Hub dataset's prediction split."})
    test_file: str | None = field(default=None, metadata={"help": "Local data to predict, as --train_file."})
    max_predict_samples: int | None = field(
        default=None, metadata={"help": "Predict a random subset (seeded by --seed) of this many examples."}
    )

    def data_files(self) -> dict[str, str | None]:
        return {**super().data_files(), "test": self.test_file}

    def hub_splits(self) -> dict[str, tuple[str, str]]:
        return {**super().hub_splits(), "test": (self.test_split_name, "--test_split_name")}

    def max_samples(self, split: str) -> int | None:
        return self.max_predict_samples if split.startswith("test") else super().max_samples(split)


@dataclass
class TokenizationArgumentsMixin:
    """How the text recipes tokenize (each adds its own ``max_seq_length``)."""

    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every example to --max_seq_length (default: pad each batch to its longest example)."},
    )
    preprocessing_num_workers: int | None = field(
        default=None, metadata={"help": "Processes for tokenization (default: the main process alone)."}
    )
    overwrite_cache: bool = field(default=False, metadata={"help": "Tokenize again rather than read the cache."})


def parse_arguments(dataclass_types: Sequence[type], argv: Sequence[str] | None = None) -> tuple[Any, ...]:
    """Parses the command line, or a single ``.json`` / ``.yaml`` / ``.yml`` file holding every argument.

    Args:
        dataclass_types: the argument dataclasses, in the order they are returned.
        argv: the arguments; ``sys.argv[1:]`` by default.

    Returns:
        One instance of each dataclass.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = HfArgumentParser(dataclass_types)
    if len(argv) == 1 and argv[0].endswith(".json"):
        return parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    if len(argv) == 1 and argv[0].endswith((".yaml", ".yml")):
        return parser.parse_yaml_file(yaml_file=os.path.abspath(argv[0]))
    return parser.parse_args_into_dataclasses(args=argv)


def arguments_given(argv: Sequence[str]) -> set[str]:
    """The names of the arguments ``argv`` gives (``--do-train`` counts as ``do_train``), or the keys of the
    single ``.json`` / ``.yaml`` file it names: what the user said, as opposed to the defaults."""
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        with open(argv[0], encoding="utf-8") as handle:
            return set(json.load(handle) if argv[0].endswith(".json") else yaml.safe_load(handle))
    return {argument.split("=", 1)[0][2:].replace("-", "_") for argument in argv if argument.startswith("--")}


def setup_logging(training_args: RecipeTrainingArguments, recipe_logger: logging.Logger) -> None:
    """Logs to stdout, at info level on the main process and warning on the others (as transformers' examples)."""
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    if training_args.should_log:
        # log_level defaults to "passive", which keeps transformers' verbosity: raise it to info here.
        transformers.utils.logging.set_verbosity_info()
    log_level = training_args.get_process_log_level()
    for name in (recipe_logger.name, __name__, "finetune_llrd"):
        logging.getLogger(name).setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.enable_default_handler()
    transformers.utils.logging.enable_explicit_format()
    recipe_logger.warning(
        f"Process rank: {training_args.process_index} of {training_args.world_size}, device: {training_args.device}, "
        f"distributed: {training_args.parallel_mode.value}, bf16: {training_args.bf16}, fp16: {training_args.fp16}"
    )
    recipe_logger.info(f"Training/evaluation parameters {training_args}")


def check_processes_joined(training_args: RecipeTrainingArguments) -> None:
    """Refuses processes that a launcher started together but that did not join one distributed run.

    Launched processes join over the accelerator's backend (NCCL on GPUs) or, on a machine without an
    accelerator, over gloo on the CPU (:class:`RecipeTrainingArguments` sets ``use_cpu`` there). Where
    neither applies (an accelerator that accelerate cannot join processes over, such as Apple's MPS), each
    process would train alone on all the data and write into the same ``--output_dir``.

    Raises:
        RuntimeError: if the launcher's WORLD_SIZE is not the trainer's world size.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        raise RuntimeError(
            f"The launcher started {launched} processes, but they did not join one distributed run (world size "
            f"{training_args.world_size}): each would train alone and write into {training_args.output_dir}. The "
            f"processes cannot join over this machine's {training_args.device.type} device; pass --use_cpu so that "
            "they join over gloo on the CPU."
        )


def choose_stages(training_args: RecipeTrainingArguments, given: set[str]) -> None:
    """Sets ``do_train`` / ``do_eval`` from what the user said: a recipe trains unless told not to.

    transformers turns ``do_eval`` on for any ``--eval_strategy``, so "none of --do_train / --do_eval /
    --do_predict is set" cannot tell "evaluate every epoch" (which means training) from "only evaluate".
    What was given on the command line (or in the arguments file) can: the recipe trains unless
    ``--do_train`` was given (``--do_train false``), or only ``--do_eval`` / ``--do_predict`` were; with
    none of the three given, it trains and evaluates.

    Args:
        training_args: the parsed arguments, changed in place.
        given: the names of the arguments the user gave (:func:`arguments_given`).
    """
    stages = given & set(STAGES)
    if "do_train" in stages:
        return
    training_args.do_train = not any(getattr(training_args, stage) for stage in stages)
    if not stages:
        training_args.do_eval = True
    logger.info(
        f"--do_train not given: {'training' if training_args.do_train else 'not training'}"
        f"{' and evaluating' if training_args.do_eval else ''}."
    )


def find_checkpoint_to_resume(training_args: RecipeTrainingArguments) -> str | None:
    """The checkpoint to resume training from, and the guard against writing over an earlier run.

    Returns the checkpoint ``--resume_from_checkpoint`` names (``True`` / ``true`` / ``yes`` / ``1``: the newest
    complete one in ``--output_dir``; ``false`` / ``no`` / ``0``: none), checked; else, unless
    ``--overwrite_output_dir``, the newest ``checkpoint-*`` folder in ``--output_dir`` that was written to the
    end (a run killed while saving leaves an incomplete one, which is skipped with a warning).

    Raises:
        ValueError: if ``--output_dir`` holds files but no checkpoint and ``--overwrite_output_dir`` is not set.
        CheckpointError: if the checkpoint asked for is missing, incomplete or unreadable.
    """
    output_dir = training_args.output_dir
    if training_args.resume_from_checkpoint is not None:
        if parse_resume_argument(training_args.resume_from_checkpoint) is None:
            return None
        return resolve_resume_checkpoint(training_args.resume_from_checkpoint, output_dir)
    if training_args.overwrite_output_dir or not os.path.isdir(output_dir):
        return None
    if not complete_checkpoints(output_dir):
        if os.listdir(output_dir):
            raise ValueError(
                f"Output directory {output_dir} already exists and is not empty, and it holds no complete checkpoint "
                "to resume from. Pass --overwrite_output_dir to write into it, or choose another --output_dir."
            )
        return None
    last_checkpoint = resolve_resume_checkpoint(True, output_dir)
    if training_args.do_train:
        logger.info(
            f"Checkpoint found: resuming training from {last_checkpoint}. To train from scratch instead, choose "
            "another --output_dir or pass --overwrite_output_dir."
        )
        return last_checkpoint
    return None


def prepare_run(
    model_arguments: type,
    data_arguments: type,
    argv: Sequence[str] | None,
    recipe_logger: logging.Logger,
    training_arguments: type | None = None,
) -> tuple[Any, Any, RecipeTrainingArguments, str | None]:
    """Parses the arguments and sets a run up as every recipe does: logging, the check that launched processes
    joined, whether to train / evaluate (:func:`choose_stages`), the checkpoint to resume from, the seed.

    Args:
        model_arguments: the recipe's `ModelArguments` class.
        data_arguments: the recipe's `DataTrainingArguments` class.
        argv: the command line (``sys.argv[1:]`` by default), or one ``.json`` / ``.yaml`` file.
        recipe_logger: the recipe's logger, set to the run's log level.
        training_arguments: the recipe's training arguments class (:class:`RecipeArgumentsMixin` on a layer-wise
            class); `RecipeTrainingArguments` by default.

    Returns:
        The model, data and training arguments, and the checkpoint to resume from (or None).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    model_args, data_args, training_args = parse_arguments(
        (model_arguments, data_arguments, training_arguments or RecipeTrainingArguments), argv
    )
    setup_logging(training_args, recipe_logger)
    check_processes_joined(training_args)
    choose_stages(training_args, arguments_given(argv))
    checkpoint = find_checkpoint_to_resume(training_args)
    set_seed(training_args.seed)
    # What --search_trials prints as the command that trains its best configuration.
    recipe_file = os.path.relpath(sys.modules[recipe_logger.name].__file__)
    training_args.recipe_command = [recipe_file, *argv]
    return model_args, data_args, training_args, checkpoint


def data_file_builder(path: str) -> str:
    """The `datasets` builder that reads ``path`` ("csv", "json" or "parquet"), from its suffix.

    Raises:
        ValueError: for another suffix.
    """
    name = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    extension = os.path.splitext(name)[1]
    if extension not in DATA_FILE_BUILDERS:
        raise ValueError(
            f"{path}: unsupported file type {extension!r}. Use one of {', '.join(DATA_FILE_BUILDERS)} "
            "(optionally compressed with .gz, .bz2, .xz or .zst)."
        )
    return DATA_FILE_BUILDERS[extension]


def is_tsv(path: str) -> bool:
    name = path.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return name.endswith(".tsv")


def check_data_files(files: dict[str, str | None], column_names: Sequence[str] | None = None) -> None:
    """Checks, before anything is loaded, that every given data file exists and has a supported type.

    Args:
        files: argument name (``"train_file"``) -> path or None.
        column_names: the column names given for headerless CSV / TSV files, if any.

    Raises:
        ValueError: naming the argument and the file.
    """
    for argument, path in files.items():
        if path is None:
            continue
        if not os.path.isfile(path):
            raise ValueError(f"--{argument} {path}: no such file.")
        builder = data_file_builder(path)
        if column_names and builder != "csv":
            raise ValueError(
                f"--column_names names the columns of headerless CSV / TSV files; --{argument} {path} is not one."
            )


def load_data_file(path: str, column_names: Sequence[str] | None = None, cache_dir: str | None = None) -> Dataset:
    """Reads one local CSV, TSV, JSON (lines) or parquet file into a `Dataset`.

    TSV files are read as GLUE ships them: tab-separated, with no quote handling (a ``"`` is text). In CSV
    and TSV files, "NA", "null" and "nan" are text too, not missing values.

    Args:
        path: the file.
        column_names: the column names of a CSV / TSV file without a header row.
        cache_dir: where `datasets` caches what it reads.

    Raises:
        ValueError: naming the file if it cannot be read or holds no rows.
    """
    builder = data_file_builder(path)
    options: dict[str, Any] = {}
    if builder == "csv":
        options["keep_default_na"] = False
        if is_tsv(path):
            options.update(delimiter="\t", quoting=csv.QUOTE_NONE)
        if column_names:
            options["column_names"] = list(column_names)
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path} is empty.")
    try:
        dataset = load_dataset(builder, data_files={"data": path}, split="data", cache_dir=cache_dir, **options)
    except datasets.exceptions.DatasetGenerationError as error:
        raise ValueError(f"Could not read {path} as {builder.upper()}: {error.__cause__ or error}") from error
    except ValueError as error:
        # A file with a header and no rows gives a split `datasets` cannot select ("corresponds to no data").
        if "corresponds to no data" in str(error):
            raise ValueError(f"{path} holds no rows.") from error
        raise
    require_rows(dataset, path)
    return dataset


def require_rows(dataset: Dataset, source: str) -> None:
    """Raises a ValueError naming ``source`` if ``dataset`` is empty."""
    if len(dataset) == 0:
        raise ValueError(f"{source} holds no rows.")


def require_columns(dataset: Dataset, columns: Iterable[str | None], source: str, arguments: dict[str, str]) -> None:
    """Raises a ValueError naming the column, its argument and ``source`` if a column is missing.

    Args:
        dataset: the split.
        columns: the columns it must have (None entries are skipped).
        source: the file, or the Hub split, for the message.
        arguments: column -> the argument that chooses it (``{"sentence": "--text_column"}``), for the message.
    """
    for column in columns:
        if column is not None and column not in dataset.column_names:
            argument = arguments.get(column)
            hint = f" Set {argument} to one of them." if argument else ""
            raise ValueError(f"{source} has no column {column!r}; its columns are {dataset.column_names}.{hint}")


def load_hub_splits(
    name: str,
    config_name: str | None,
    requested: dict[str, tuple[str, str]],
    *,
    model_args: ModelArguments,
    revision: str | None,
    optional: Iterable[str] = (),
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """Loads a Hub dataset and picks the splits a run needs.

    Args:
        name: the Hub dataset.
        config_name: its configuration.
        requested: split ("train", "eval", ...) -> (the Hub split, the argument that chooses it).
        model_args: for the cache folder and the Hub token.
        revision: the dataset's branch, tag or commit.
        optional: splits skipped, rather than refused, when the dataset lacks them.

    Returns:
        The splits, and a description of where each comes from.

    Raises:
        ValueError: naming the dataset's splits and the argument to set, if a split is missing.
    """
    raw = load_dataset(name, config_name, cache_dir=model_args.cache_dir, token=model_args.token, revision=revision)
    splits, sources = {}, {}
    for split, (hub_split, argument) in requested.items():
        if hub_split in raw:
            splits[split], sources[split] = raw[hub_split], f"split {hub_split!r} of {name}"
        elif split not in optional:
            raise ValueError(
                f"{name} has no split {hub_split!r}; its splits are {list(raw)}. Choose one with {argument}."
            )
    return splits, sources



def load_splits(
    data_args: DataArgumentsMixin, model_args: ModelArguments, training_args: RecipeTrainingArguments
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits the run's stages need: "train" (``--do_train``), "eval" (``--do_eval``) and, for a recipe that
    predicts, "test" (``--do_predict``), from the local files or ``--dataset_name`` (:func:`load_data_splits`),
    with where each comes from. The recipes whose data needs nothing more take this one."""
    stages = {"train": training_args.do_train, "eval": training_args.do_eval, "test": training_args.do_predict}
    return load_data_splits(data_args, model_args, {split: stages[split] for split in data_args.data_files()})


def load_data_splits(
    data_args: DataArgumentsMixin, model_args: ModelArguments, required: dict[str, bool]
) -> tuple[dict[str, Dataset], dict[str, str]]:
    """The splits ``required`` names ("train", "eval", "test" -> whether the run needs it), from the local files
    (:func:`select_data_files`) or from ``--dataset_name`` (:func:`load_hub_splits`), with where each comes from.
    """
    if data_args.dataset_name is None:
        files = select_data_files(data_args, required, required)
        return {split: load_data_file(path, cache_dir=model_args.cache_dir) for split, path in files.items()}, files
    requested = {split: hub for split, hub in data_args.hub_splits().items() if required[split]}
    return load_hub_splits(
        data_args.dataset_name,
        data_args.dataset_config_name,
        requested,
        model_args=model_args,
        revision=data_args.dataset_revision,
    )


def select_data_files(
    data_args: DataArgumentsMixin, required: dict[str, bool], wanted: dict[str, bool]
) -> dict[str, str]:
    """The local files to read: split -> path, for every wanted split that has a file.

    Args:
        data_args: the data arguments, with their files.
        required: split ("train", "eval", "test") -> whether the run needs it (--do_train, --do_eval, --do_predict).
        wanted: split -> whether to read its file when there is one.

    Raises:
        ValueError: naming the argument to give, for a required split without a file.
    """
    stages = {"train": "--do_train", "eval": "--do_eval", "test": "--do_predict"}
    arguments = {"train": "--train_file", "eval": "--validation_file", "test": "--test_file"}
    files = {}
    for split, path in data_args.data_files().items():
        if required[split] and path is None:
            raise ValueError(f"{stages[split]} needs {arguments[split]}.")
        if wanted[split] and path is not None:
            files[split] = path
    return files


def require_rows_and_columns(
    splits: dict[str, Dataset],
    sources: dict[str, str],
    columns: dict[str | None, str],
    label_columns: dict[str, str] | None = None,
) -> None:
    """Checks that every split holds rows and ``columns``, and every split but the test splits ``label_columns``.

    Args:
        splits: split -> dataset.
        sources: split -> where it comes from, for the messages.
        columns: column -> the argument that chooses it (``{"sentence": "--text_column"}``); None keys are skipped.
        label_columns: as ``columns``, for the columns that the test splits (to predict) may lack.

    Raises:
        ValueError: naming the split's source, and the column with its argument.
    """
    for split, dataset in splits.items():
        require_rows(dataset, sources[split])
        require_columns(dataset, columns, sources[split], columns)
        if label_columns and not split.startswith("test"):
            require_columns(dataset, label_columns, sources[split], label_columns)


def keep_splits_to_run(splits: dict[str, Dataset], training_args: RecipeTrainingArguments) -> None:
    """Drops the splits that were read only to check the data or find the labels: "train" without
    ``--do_train``, the evaluation splits without ``--do_eval``, the test splits without ``--do_predict``."""
    stage_of = {"train": training_args.do_train, "eval": training_args.do_eval, "test": training_args.do_predict}
    for split in [split for split in splits if not stage_of[split.split("_")[0]]]:
        del splits[split]


def names_preview(names: Sequence[Any]) -> str:
    """The names as a list, or, past ``NAMES_SHOWN``, the first few followed by ``...``: a checkpoint made for
    ImageNet has 1,000 labels."""
    if len(names) <= NAMES_SHOWN:
        return str(list(names))
    return str(list(names[: NAMES_SHOWN // 2]))[:-1] + ", ...]"


@dataclass(frozen=True)
class LabelSet:
    """The classes of a label column: their names (by class id) and the class id of every raw label value."""

    names: list[str]
    ids: dict[Any, int]

    @classmethod
    def from_names(cls, names: Sequence[str]) -> LabelSet:
        """Classes whose labels are given either as their name or as their index in ``names``."""
        ids = {index: index for index in range(len(names))}
        ids.update({name: index for index, name in enumerate(names)})
        return cls(names=list(names), ids=ids)

    @classmethod
    def from_column(cls, dataset: Dataset, column: str) -> LabelSet:
        """The classes of a `ClassLabel` column, or else the sorted distinct values of the column."""
        feature = dataset.features[column]
        if isinstance(feature, datasets.ClassLabel):
            return cls.from_names(feature.names)
        values = sorted(dataset.unique(column))
        return cls(names=[str(value) for value in values], ids={value: index for index, value in enumerate(values)})


def check_labels(
    splits: dict[str, Dataset],
    sources: dict[str, str],
    column: str,
    labels: LabelSet,
    origin: str,
    label_flag: str = "--label_column",
) -> None:
    """Raises a ValueError naming the split's source and ``column`` if a labelled split (any but the test
    splits) holds a label ``labels`` does not know.

    Args:
        splits: split -> dataset.
        sources: split -> the file, or the Hub split, for the message.
        column: the label column.
        labels: the classes.
        origin: where the classes come from ("the GLUE task rte", "train.tsv"), for the message.
        label_flag: the recipe's option that names the label column, for the message.
    """
    for split, dataset in splits.items():
        if split.startswith("test"):
            continue
        unknown = sorted(set(dataset.unique(column)) - set(labels.ids), key=str)
        if unknown:
            raise ValueError(
                f"Column {column!r} of {sources[split]} holds labels {unknown[:10]} that are not among the "
                f"{len(labels.names)} labels {names_preview(labels.names)} of {origin}. Fix the data, or choose the "
                f"label column with {label_flag}."
            )


def set_labels(
    config: PretrainedConfig,
    names: Sequence[str] | None,
    *,
    head_suffix: str,
    model_name_or_path: str,
    labels_source: str,
    ignore_mismatched_sizes: bool,
) -> None:
    """Gives ``config`` the data's labels, refusing first a pretrained head made for another number of labels.

    Loading a checkpoint whose classification head has another size fails (or, with
    ``ignore_mismatched_sizes``, replaces the head): this says why before anything is loaded.

    Args:
        config: the pretrained config, as loaded.
        names: the label names by class id; None for a regression (one output).
        head_suffix: the class-name suffix of the task's models ("ForSequenceClassification").
        model_name_or_path: the model, for the message.
        labels_source: where the labels come from, for the message.
        ignore_mismatched_sizes: whether a head of another size may be replaced.

    Raises:
        ValueError: if the checkpoint is a classifier for another number of labels and
            ``ignore_mismatched_sizes`` is not set.
    """
    num_labels = 1 if names is None else len(names)
    pretrained_head = any(name.endswith(head_suffix) for name in config.architectures or [])
    if pretrained_head and config.num_labels != num_labels and not ignore_mismatched_sizes:
        raise ValueError(
            f"{model_name_or_path} is a {config.architectures[0]} whose head predicts {config.num_labels} labels "
            f"{names_preview(list(config.id2label.values()))}, but {labels_source} has {num_labels}"
            f"{'' if names is None else ' ' + names_preview(names)}. Pass --ignore_mismatched_sizes to train a new "
            "head, or check --label_column."
        )
    if names is None:
        config.num_labels = 1
    else:
        config.id2label = dict(enumerate(names))
        config.label2id = {name: index for index, name in enumerate(names)}


def load_config(
    model_args: ModelArguments,
    label_names: Sequence[str] | None,
    labels_source: str,
    *,
    finetuning_task: str,
    head_suffix: str,
) -> PretrainedConfig:
    """The pretrained config with the data's labels (see :func:`set_labels`) and the task's name.

    Args:
        model_args: the model, its config and where to fetch them.
        label_names: the label names by class id; None for a regression.
        labels_source: where the labels come from, for messages.
        finetuning_task: recorded in the config ("image-classification", a GLUE task, ...).
        head_suffix: the class-name suffix of the task's models ("ForSequenceClassification").
    """
    config = AutoConfig.from_pretrained(
        model_args.config_name or model_args.model_name_or_path, **model_args.hub_options()
    )
    set_labels(
        config,
        label_names,
        head_suffix=head_suffix,
        model_name_or_path=model_args.model_name_or_path,
        labels_source=labels_source,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
    )
    config.finetuning_task = finetuning_task
    return config


def load_model(auto_class: type, model_args: ModelArguments, config: PretrainedConfig) -> PreTrainedModel:
    """``auto_class.from_pretrained`` of the model with ``config``, its loss read as a batch mean
    (:func:`treat_loss_as_batch_mean`)."""
    model = auto_class.from_pretrained(
        model_args.model_name_or_path,
        config=config,
        ignore_mismatched_sizes=model_args.ignore_mismatched_sizes,
        **model_args.hub_options(),
    )
    treat_loss_as_batch_mean(model)
    return model


def take_samples(dataset: Dataset, max_samples: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``max_samples`` rows (all rows if None or larger): files are often sorted by label."""
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_samples))


def load_metric(
    name: str, config_name: str | None = None, local: Callable[..., dict[str, Any]] | None = None
) -> Callable[..., dict[str, float]]:
    """``compute(predictions=..., references=...)`` of an `evaluate` metric, or of the same metric computed locally.

    `evaluate` fetches its metric scripts from the Hub. Where that fails (no network, ``HF_HUB_OFFLINE``),
    the metric is computed with scikit-learn and scipy exactly as the `evaluate` script defines it, or by
    ``local``, a recipe's own implementation with the script's arguments and results.

    Args:
        name: "glue" (with a GLUE task as ``config_name``), "accuracy" or "mse"; any metric with ``local``.
        config_name: the GLUE task.
        local: the metric computed here, for a metric :func:`local_metric` does not implement.

    Returns:
        A function of ``predictions`` and ``references`` returning ``{metric name: value}``.
    """
    import evaluate

    try:
        metric = evaluate.load(name, config_name, keep_in_memory=True)
    except Exception as error:  # noqa: BLE001 - a failed Hub fetch surfaces as many exception types
        logger.warning(
            f"evaluate could not load the {name!r} metric ({type(error).__name__}: {error}); computing it with "
            f"{'this recipe' if local else 'scikit-learn and scipy'}, as the evaluate metric defines it."
        )
        return local or local_metric(name, config_name)
    logger.info(f"Computing the {name!r} metric with evaluate.")
    return metric.compute


def local_metric(name: str, config_name: str | None = None) -> Callable[..., dict[str, float]]:
    """The metric of :func:`load_metric` computed here, with the definitions of evaluate's scripts: accuracy
    ``mean(predictions == references)``, F1 of the positive class (scikit-learn ``f1_score``), Matthews
    correlation (``matthews_corrcoef``), Pearson and Spearman correlation (scipy), mean squared error.

    Raises:
        ValueError: for a metric without a local implementation.
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score, matthews_corrcoef

    def accuracy(predictions, references):
        return {"accuracy": float((np.asarray(predictions) == np.asarray(references)).mean())}

    def accuracy_and_f1(predictions, references):
        return {**accuracy(predictions, references), "f1": float(f1_score(y_true=references, y_pred=predictions))}

    def matthews(predictions, references):
        return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}

    def pearson_and_spearman(predictions, references):
        return {
            "pearson": float(pearsonr(predictions, references)[0]),
            "spearmanr": float(spearmanr(predictions, references)[0]),
        }

    def mse(predictions, references):
        return {"mse": float(((np.asarray(predictions) - np.asarray(references)) ** 2).mean())}

    if name == "accuracy":
        return accuracy
    if name == "mse":
        return mse
    if name == "glue":
        glue = {"cola": matthews, "stsb": pearson_and_spearman, "mrpc": accuracy_and_f1, "qqp": accuracy_and_f1}
        if config_name in glue:
            return glue[config_name]
        if config_name in ("sst2", "mnli", "mnli_mismatched", "mnli_matched", "qnli", "rte", "wnli", "hans"):
            return accuracy
    raise ValueError(f"No local implementation of the metric {name!r} (config {config_name!r}).")


# ---- images (image classification, segmentation) ----


def as_image_column(dataset: Dataset, column: str, source: str, flag: str = "--image_column") -> Dataset:
    """``dataset`` with ``column`` decoded as images (a column of image paths is cast to images); ``flag`` is
    the recipe's option that names the column, for the message.

    Raises:
        ValueError: naming the column and ``source`` if it holds no images.
    """
    from PIL import Image

    feature = dataset.features[column]
    if not isinstance(feature, datasets.Image):
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise ValueError(
                f"Column {column!r} of {source} holds {feature}, not images or image paths. Set {flag} to "
                f"the column of images; the columns are {dataset.column_names}."
            )
        dataset = dataset.cast_column(column, datasets.Image())
    try:
        first = dataset[0][column]
    except (OSError, ValueError) as error:
        raise ValueError(f"Column {column!r} of {source} does not hold readable images: {error}") from error
    if not isinstance(first, Image.Image):
        raise ValueError(
            f"Column {column!r} of {source} does not hold images: its first entry is {type(first).__name__}."
        )
    return dataset


def model_input_size(image_processor) -> tuple[int, int]:
    """(height, width) of the images the model takes: the processor's crop size if it crops, else its size."""
    sizes = [getattr(image_processor, "size", None)]
    if getattr(image_processor, "do_center_crop", False):
        sizes.insert(0, getattr(image_processor, "crop_size", None))
    for size in sizes:
        if size is None:
            continue
        get = size.get if isinstance(size, dict) else lambda key, size=size: getattr(size, key, None)
        if get("height") and get("width"):
            return int(get("height")), int(get("width"))
        if get("shortest_edge"):
            return int(get("shortest_edge")), int(get("shortest_edge"))
    raise ValueError(
        f"Cannot tell the input size of the model from its image processor {type(image_processor).__name__} "
        f"(size={getattr(image_processor, 'size', None)})."
    )


def resize_image_processor(image_processor, image_size: int) -> None:
    """Makes ``image_processor`` (and so the transforms built on it) produce ``image_size`` x ``image_size``
    images. A processor that resizes and then center-crops keeps its ratio of resize to crop (DINOv2's
    256 -> 224 becomes 128 -> 112 for 112).

    Raises:
        ValueError: for timm's image processors, whose own transforms fix the input size.
    """
    if getattr(image_processor, "train_transforms", None) is not None:
        raise ValueError("--image_size does not apply to timm models: timm's own transforms set the input size.")
    height, width = model_input_size(image_processor)
    size = image_processor.size
    if getattr(image_processor, "do_center_crop", False):
        image_processor.crop_size = {"height": image_size, "width": image_size}
        if size.get("shortest_edge"):
            shortest_edge = round(size.get("shortest_edge") * image_size / min(height, width))
            image_processor.size = {"shortest_edge": shortest_edge}
        else:
            image_processor.size = {
                "height": round(size.get("height") * image_size / height),
                "width": round(size.get("width") * image_size / width),
            }
    elif size.get("height") and size.get("width"):
        image_processor.size = {"height": image_size, "width": image_size}
    else:
        image_processor.size = {"shortest_edge": image_size}


def tokenize_splits(
    splits: dict[str, Dataset],
    sources: dict[str, str],
    tokenize: Callable[[dict[str, list]], dict[str, list]],
    *,
    data_args: DataArgumentsMixin,
    training_args: RecipeTrainingArguments,
) -> None:
    """Replaces every split by its random subset of ``--max_*_samples`` rows, tokenized by ``tokenize`` (batched,
    the raw columns dropped), on the main process first so that the others read its cache.

    Args:
        splits: split -> dataset, changed in place.
        sources: split -> where it comes from, for the progress bar.
        tokenize: maps a batch of raw rows to the model's inputs (and ``labels``).
        data_args: ``--max_*_samples``, ``--preprocessing_num_workers``, ``--overwrite_cache``.
        training_args: the seed, and the processes.
    """
    with training_args.main_process_first(desc="tokenization"):
        for split, dataset in splits.items():
            dataset = take_samples(dataset, data_args.max_samples(split), training_args.seed)
            splits[split] = dataset.map(
                tokenize,
                batched=True,
                remove_columns=dataset.column_names,
                num_proc=data_args.preprocessing_num_workers,
                load_from_cache_file=not data_args.overwrite_cache,
                desc=f"Tokenizing {sources[split]}",
            )


def accuracy_metrics():
    """``compute_metrics``: the accuracy of the most likely class."""
    metric = load_metric("accuracy")

    def compute_metrics(prediction: transformers.EvalPrediction):
        predictions = np.argmax(logits_of(prediction.predictions), axis=-1)
        return metric(predictions=predictions, references=prediction.label_ids)

    return compute_metrics


def pad_to_multiple_of(training_args: RecipeTrainingArguments) -> int | None:
    """8 under mixed precision (tensor cores work on multiples of 8), else None."""
    return 8 if training_args.fp16 or training_args.bf16 else None


def logits_of(predictions: np.ndarray | tuple) -> np.ndarray:
    """The logits of a model's predictions, which are a tuple when the model returns more than its logits."""
    return predictions[0] if isinstance(predictions, tuple) else predictions


def model_card_kwargs(
    model_args: ModelArguments, data_args: DataArgumentsMixin, tasks: str, tags: list[str] | None = None
) -> dict[str, Any]:
    """The keyword arguments of ``Trainer.create_model_card`` / ``push_to_hub``: the base model, the task, and
    the Hub dataset (with its configuration) the model was fine-tuned on."""
    card = {"finetuned_from": model_args.model_name_or_path, "tasks": tasks}
    if tags is not None:
        card["tags"] = tags
    if data_args.dataset_name is not None:
        card.update(dataset_tags=data_args.dataset_name, dataset=data_args.dataset_name)
        if data_args.dataset_config_name is not None:
            card["dataset_args"] = data_args.dataset_config_name
    return card


def build_trainer(
    model: PreTrainedModel,
    processing_class: Any,
    training_args: RecipeTrainingArguments,
    splits: dict[str, Dataset],
    *,
    data_collator: Callable | None,
    compute_metrics: Callable | None,
    trainer_class: Callable[..., LLRDTrainer] = LLRDTrainer,
) -> LLRDTrainer:
    """The `LLRDTrainer` of a recipe: it trains on ``splits["train"]`` and evaluates on ``splits["eval"]``,
    and saves ``processing_class`` (the tokenizer or image processor) with the model. ``trainer_class`` is a
    subclass of `LLRDTrainer` (or a ``partial`` of one) for a task whose evaluation needs more than
    ``compute_metrics``, as question answering's post-processing does."""
    return trainer_class(
        model=model,
        args=training_args,
        train_dataset=splits.get("train"),
        eval_dataset=splits.get("eval"),
        processing_class=processing_class,
        data_collator=data_collator,
        compute_metrics=compute_metrics,
    )


def train_evaluate_and_report(
    trainer: LLRDTrainer,
    splits: dict[str, Dataset],
    *,
    checkpoint: str | None,
    model_card: dict[str, Any],
    predict: Callable[[LLRDTrainer], None] | None = None,
    add_eval_metrics: Callable[[dict[str, float]], None] | None = None,
) -> None:
    """Runs what the arguments ask for and reports it, as every recipe does.

    Trains (``--do_train``, resuming from ``checkpoint``) and saves the model, its state and the training
    metrics; evaluates on every evaluation split ("eval", and "eval_mismatched" for MNLI); calls ``predict``
    (``--do_predict``); writes the model card, or pushes it with the model (``--push_to_hub``); prints the
    per-depth learning rates; and warns when the run trained nothing.

    Args:
        trainer: the recipe's trainer (:func:`build_trainer`).
        splits: split -> the dataset, as the model takes it.
        checkpoint: the checkpoint to resume training from, or None.
        model_card: the keyword arguments of ``create_model_card`` (:func:`model_card_kwargs`).
        predict: the recipe's predictions: writes them to ``--output_dir``.
        add_eval_metrics: adds the recipe's own scores derived from an evaluation's metrics (the perplexity
            ``exp(eval_loss)`` of a language model) to them, in place.
    """
    args = trainer.args
    if args.do_train and args.search_trials > 0 and checkpoint is None:
        search_layerwise_rates(trainer)
    if args.do_train:
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        metrics = {**train_result.metrics, "train_samples": len(splits["train"])}
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
    for split in [split for split in splits if split.startswith("eval")]:
        metrics = trainer.evaluate(eval_dataset=splits[split], metric_key_prefix=split)
        metrics[f"{split}_samples"] = len(splits[split])
        if add_eval_metrics is not None:
            add_eval_metrics(metrics)
        trainer.log_metrics(split, metrics)
        trainer.save_metrics(split, metrics)
    if args.do_predict and predict is not None:
        predict(trainer)
    if args.push_to_hub:
        trainer.push_to_hub(**model_card)
    else:
        trainer.create_model_card(**model_card)
    print_layerwise_lr_table(trainer)
    if not args.do_train and trainer.is_world_process_zero():
        logger.warning(
            f"This run trained nothing (--do_train false, or only --do_eval / --do_predict given): every score above "
            f"is that of {trainer.model.name_or_path} as loaded. Drop those flags, or pass --do_train, to fine-tune."
        )


def search_layerwise_rates(trainer: LLRDTrainer) -> dict[str, float]:
    """Searches learning rate x layer decay (``--search_trials``) and sets the best on ``trainer.args``, so
    that the normal run that follows trains the best configuration to the end.

    Each trial starts from a copy of the model as loaded (same weights, same new head) and trains for
    ``--search_max_steps`` steps with a copy of the arguments (no checkpoints) on the same data. Writes
    ``search_results.json`` and ``search_heatmap.png`` into ``--output_dir`` and logs the command line that
    trains the best configuration without searching. All ranks run it and end with the same values.

    Returns:
        The best trial's training arguments.
    """
    import copy

    args = trainer.args
    metric = args.search_metric or (f"eval_{args.metric_for_best_model}".replace("eval_eval_", "eval_") if args.metric_for_best_model else "eval_loss")
    if trainer.eval_dataset is None:
        raise ValueError("--search_trials needs an evaluation split to score each trial: give --validation_file or a dataset with one.")
    pristine = copy.deepcopy(trainer.model).cpu()
    search_args = copy.deepcopy(args)
    search_args.output_dir = os.path.join(args.output_dir, "search")
    search_args.save_strategy = "no"
    search_args.push_to_hub = False
    searcher = LLRDTrainer(
        model_init=lambda: copy.deepcopy(pristine),
        args=search_args,
        train_dataset=trainer.train_dataset,
        eval_dataset=trainer.eval_dataset,
        processing_class=trainer.processing_class,
        data_collator=trainer.data_collator,
        compute_metrics=trainer.compute_metrics,
    )
    num_parameters = sum(parameter.numel() for parameter in pristine.parameters())
    space = load_search_space(args.search_space) if args.search_space else default_search_space(num_parameters, args.search_head_lr_multiple)
    outcome = run_search(searcher, args, space, metric)
    for key, value in outcome.best_params.items():
        setattr(args, key, value)
    command = best_command_line(getattr(args, "recipe_command", sys.argv), outcome.best_params)
    if trainer.is_world_process_zero():
        write_search_results(outcome, space, args.output_dir, command)
        logger.warning(
            f"Search: best {metric} {outcome.best_value:.4f} with {outcome.best_params} after {len(outcome.trials)} trials; "
            f"training it to the end now. Without searching: {command}"
        )
    del searcher, pristine
    return outcome.best_params


def treat_loss_as_batch_mean(model) -> None:
    """Tells the Trainer that the model's loss is a mean over its batch.

    A transformers 5 Trainer assumes a model whose ``forward`` takes ``**kwargs`` normalizes its loss by
    ``num_items_in_batch``; it then multiplies the loss by the number of processes and does not divide it by
    the gradient-accumulation steps. The classification heads of BERT-style models return a plain mean, so
    under DDP or accumulation their loss and gradients would be scaled. ``accepts_loss_kwargs`` is the
    Trainer's own switch for this. (With ``--label_smoothing_factor`` the Trainer's `LabelSmoother` computes
    the loss instead, and with this switch it too is a mean over the batch.)
    """
    model.accepts_loss_kwargs = False


def print_layerwise_lr_table(trainer: Trainer) -> None:
    """Prints, on the main process, the rate every depth trained at (the base rates the schedule scaled)."""
    if not trainer.is_world_process_zero():
        return
    rows = trainer.layerwise_lr_table()
    if not rows:
        print("***** layer-wise learning rates: off (layer_decay=1.0, no per-depth rate: the stock optimizer) *****")
        return
    layers = trainer.layers
    print(f"***** layer-wise learning rates (L={layers.num_layers} blocks, {layers.rule} rule) *****")
    print(format_lr_table(rows))

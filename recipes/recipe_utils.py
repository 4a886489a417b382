"""What the recipes share: the trainer and its arguments, argument files, logging, the output directory, local
data files, labels, metrics and the printed summary.

Nothing here computes layer-wise rates: that is `finetune_llrd`'s (`LLRDTrainingArguments`, `LLRDTrainer`,
`finetune_llrd.model_card`).
"""

from __future__ import annotations

import csv
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import datasets
import numpy as np
import transformers
from datasets import Dataset, load_dataset
from transformers import HfArgumentParser, PretrainedConfig, Trainer

from finetune_llrd import LLRDTrainingArguments
from finetune_llrd.checkpoints import complete_checkpoints, resolve_resume_checkpoint
from finetune_llrd.param_groups import format_lr_table

logger = logging.getLogger(__name__)

# Suffix -> `datasets` builder. TSV is read by the csv builder with a tab delimiter and no quote handling.
DATA_FILE_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")


@dataclass
class RecipeTrainingArguments(LLRDTrainingArguments):
    """`LLRDTrainingArguments` plus ``--overwrite_output_dir``, which transformers 5 dropped from `TrainingArguments`.

    As in transformers' example scripts before that, the flag guards ``--output_dir``: see
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

    On a machine without GPUs, ``accelerate launch --multi_gpu`` or ``torchrun`` start the processes, but
    they join over gloo only with ``--use_cpu``; otherwise each would train alone on all the data and
    write into the same ``--output_dir``.

    Raises:
        RuntimeError: if the launcher's WORLD_SIZE is not the trainer's world size.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        raise RuntimeError(
            f"The launcher started {launched} processes, but they did not join one distributed run (world size "
            f"{training_args.world_size}): each would train alone and write into {training_args.output_dir}. On a "
            "machine without GPUs, pass --use_cpu so that the processes join over gloo."
        )


def default_to_train_and_eval(training_args: RecipeTrainingArguments) -> None:
    """With none of --do_train / --do_eval / --do_predict given, a recipe trains and evaluates."""
    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        logger.info("None of --do_train, --do_eval, --do_predict was given: training and evaluating.")
        training_args.do_train = True
        training_args.do_eval = True


def find_checkpoint_to_resume(training_args: RecipeTrainingArguments) -> str | None:
    """The checkpoint to resume training from, and the guard against writing over an earlier run.

    Returns ``--resume_from_checkpoint`` if given; else, unless ``--overwrite_output_dir``, the newest
    ``checkpoint-*`` folder in ``--output_dir`` that was written to the end (a run killed while saving
    leaves an incomplete one, which is skipped with a warning).

    Raises:
        ValueError: if ``--output_dir`` holds files but no checkpoint and ``--overwrite_output_dir`` is not set.
    """
    if training_args.resume_from_checkpoint is not None:
        return training_args.resume_from_checkpoint
    output_dir = training_args.output_dir
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


def check_labels(dataset: Dataset, column: str, labels: LabelSet, source: str, origin: str) -> None:
    """Raises a ValueError naming ``source`` and ``column`` if the column holds a label ``labels`` does not know.

    Args:
        dataset: a labelled split.
        column: its label column.
        labels: the classes.
        source: the file, or the Hub split, for the message.
        origin: where the classes come from ("the GLUE task rte", "train.tsv"), for the message.
    """
    unknown = sorted(set(dataset.unique(column)) - set(labels.ids), key=str)
    if unknown:
        raise ValueError(
            f"Column {column!r} of {source} holds labels {unknown[:10]} that are not among the {len(labels.names)} "
            f"labels {labels.names} of {origin}. Fix the data, or choose the label column with --label_column."
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
            f"{list(config.id2label.values())}, but {labels_source} has {num_labels}"
            f"{'' if names is None else ' ' + str(list(names))}. Pass --ignore_mismatched_sizes to train a new "
            "head, or check --label_column."
        )
    if names is None:
        config.num_labels = 1
    else:
        config.id2label = dict(enumerate(names))
        config.label2id = {name: index for index, name in enumerate(names)}


def take_samples(dataset: Dataset, max_samples: int | None, seed: int) -> Dataset:
    """A seeded random subset of ``max_samples`` rows (all rows if None or larger): files are often sorted by label."""
    if max_samples is None or max_samples >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_samples))


def load_metric(name: str, config_name: str | None = None) -> Callable[..., dict[str, float]]:
    """``compute(predictions=..., references=...)`` of an `evaluate` metric, or of the same metric computed locally.

    `evaluate` fetches its metric scripts from the Hub. Where that fails (no network, ``HF_HUB_OFFLINE``),
    the metric is computed with scikit-learn and scipy exactly as the `evaluate` script defines it.

    Args:
        name: "glue" (with a GLUE task as ``config_name``), "accuracy" or "mse".
        config_name: the GLUE task.

    Returns:
        A function of ``predictions`` and ``references`` returning ``{metric name: value}``.
    """
    import evaluate

    try:
        metric = evaluate.load(name, config_name, keep_in_memory=True)
    except Exception as error:  # noqa: BLE001 - a failed Hub fetch surfaces as many exception types
        logger.warning(
            f"evaluate could not load the {name!r} metric ({type(error).__name__}: {error}); computing it with "
            "scikit-learn and scipy, as the evaluate metric defines it."
        )
        return local_metric(name, config_name)
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


def treat_loss_as_batch_mean(model) -> None:
    """Tells the Trainer that the model's loss is a mean over its batch.

    A transformers 5 Trainer assumes a model whose ``forward`` takes ``**kwargs`` normalizes its loss by
    ``num_items_in_batch``; it then multiplies the loss by the number of processes and does not divide it by
    the gradient-accumulation steps. The classification heads of BERT-style models return a plain mean, so
    under DDP or accumulation their loss and gradients would be scaled. ``accepts_loss_kwargs`` is the
    Trainer's own switch for this.
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

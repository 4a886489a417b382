"""The arguments every recipe shares: the recipes' training arguments, the pretrained model to start from, and
the mixins of the data arguments (a Hub dataset or local files, the data to predict, folders of examples,
tokenization) that each recipe's ``DataTrainingArguments`` builds on."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from finetune_llrd import LLRDTrainingArguments
from finetune_llrd.launching import accelerator_available
from finetune_llrd.search import SearchArguments

from .files import MEDIA_CHECKS, MEDIA_DECODE_LIMIT, check_data_files


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
            "(see docs/recipes/launching.md). --save_on_preemption false leaves the signals to their defaults."
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


# Every recipe run's training_args.bin pickles its arguments by the class's module path: keep it the package's,
# as when the package was the single module recipe_utils.py, so that those files load in every version.
RecipeTrainingArguments.__module__ = __package__


@dataclass
class HubModelArguments:
    """Which pretrained model to start from, and where to fetch it from: the fields every recipe's model
    arguments begin with. :class:`ModelArguments` adds what the recipes built on `LLRDTrainingArguments` take;
    ``sft.py``, whose ``--trust_remote_code`` is TRL's `SFTConfig`'s, builds on this class directly."""

    model_name_or_path: str = field(metadata={"help": "A Hub model id or the path of a local model folder."})
    cache_dir: str | None = field(default=None, metadata={"help": "Where to cache models and datasets from the Hub."})
    model_revision: str = field(
        default="main", metadata={"help": "The model version to use: a branch name, tag name or commit id."}
    )
    token: str | None = field(
        default=None,
        metadata={"help": "Hub token for private models and datasets; by default the one `hf auth login` stored."},
    )

    def fetch_options(self) -> dict[str, Any]:
        """The keyword arguments of every ``from_pretrained`` call that say where to fetch from: cache folder,
        revision and token."""
        return {"cache_dir": self.cache_dir, "revision": self.model_revision, "token": self.token}


@dataclass
class ModelArguments(HubModelArguments):
    """Which pretrained model to fine-tune, and where to fetch it from: what every recipe takes. A recipe's
    own ``ModelArguments`` adds its processor and model options."""

    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow models whose code lives on the Hub; only for repositories you trust."}
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
        return {**self.fetch_options(), "trust_remote_code": self.trust_remote_code}


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
class FolderDataArgumentsMixin(DataArgumentsMixin):
    """`DataArgumentsMixin` plus folders of examples (``--train_dir`` / ``--validation_dir``), for the recipes
    that read their data one of three ways: a Hub dataset, folders, or local files.

    Its ``__post_init__`` refuses more or fewer than one of the three, a folder that does not exist, and an
    unreadable file. ``--media_check`` says how the images or clips are checked before the model loads
    (:func:`~recipe_utils.splits.check_media`). A recipe names its examples and its folder and file layouts for that message in the class
    attributes ``examples_name``, ``folder_layout`` and ``file_layout``; how a folder is read is the recipe's.
    """

    train_dir: str | None = field(
        default=None, metadata={"help": "A folder of training examples with one sub-folder per class."}
    )
    validation_dir: str | None = field(
        default=None, metadata={"help": "A folder of evaluation examples, as --train_dir."}
    )
    media_check: str = field(
        default="auto",
        metadata={
            "help": "How the files the run uses are checked before the model loads: 'decode' decodes every one, "
            "'header' reads each one's header (format, size, samples) and decodes the first of each split (a file "
            "that fails to decode later stops the run naming its row), 'auto' decodes up to "
            f"{MEDIA_DECODE_LIMIT:,} files a split and reads headers beyond.",
            "choices": list(MEDIA_CHECKS),
        },
    )

    examples_name: ClassVar[str] = "examples"
    folder_layout: ClassVar[str] = "folders with one sub-folder per class"
    file_layout: ClassVar[str] = "data files"

    def __post_init__(self):
        has_dirs = self.train_dir is not None or self.validation_dir is not None
        has_files = self.train_file is not None or self.validation_file is not None
        if sum((self.dataset_name is not None, has_dirs, has_files)) != 1:
            raise ValueError(
                f"Give the {self.examples_name} one way: --dataset_name (Hub), --train_dir / --validation_dir "
                f"({self.folder_layout}) or --train_file / --validation_file ({self.file_layout})."
            )
        for argument in ("train_dir", "validation_dir"):
            path = getattr(self, argument)
            if path is not None and not os.path.isdir(path):
                raise ValueError(f"--{argument} {path}: no such folder.")
        check_data_files({"train_file": self.train_file, "validation_file": self.validation_file})
        if self.media_check not in MEDIA_CHECKS:
            raise ValueError(f"--media_check {self.media_check}: choose one of {', '.join(MEDIA_CHECKS)}.")
        super().__post_init__()

    def data_folders(self) -> dict[str, str]:
        """Split ("train", "eval") -> its folder, for the folders given."""
        folders = {"train": self.train_dir, "eval": self.validation_dir}
        return {split: folder for split, folder in folders.items() if folder is not None}


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

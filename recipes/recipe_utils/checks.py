"""The checks every recipe runs before it loads a model: its data row by row, and its output folder.

A check adds a :class:`Finding` (the file, the row, the column and what is wrong) to a :class:`DataCheck` for each
bad row; :meth:`DataCheck.done` then refuses the run with one message that names them (:class:`DataError`), or,
for the findings the task's own convention drops (summarisation pairs without a text, as transformers'
``run_summarization.py`` drops them) and only when the recipe's ``--drop_invalid_rows`` is given, drops those rows
with a warning that counts them. Nothing changes the data or its label set in silence.

Rows are counted from 1, as a user counts the examples of a file: row 1 is the first line after a CSV / TSV
header (or the first line of a headerless file), the first object of a JSON lines file (blank lines are not
examples), the first row of a parquet file or of a Hub split; a CoNLL file's rows are its sentences.

:func:`check_output_dir` refuses, before anything is read, an ``--output_dir`` that is a file or cannot be written
into; :func:`check_checkpoint_origin`, the checkpoint a run would resume from when another recipe wrote it or it
holds another model type. ``prepare_run`` calls both.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import pickle
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from datasets import Dataset


logger = logging.getLogger(__name__)

# Findings listed in full in a refusal or a warning; the rest are counted.
FINDINGS_SHOWN = 10


class Refusal(ValueError):
    """A recipe's refusal to run: its message says what to fix. Run as a script, the recipe ends with that
    message alone, and exit code 1 (:func:`exit_on_refusal`)."""


@dataclass(frozen=True)
class Finding:
    """What is wrong with one row (or one file) of a run's data.

    Args:
        source: the file, folder or Hub split.
        row: the row, counted from 1 (see the module's docstring); None for the whole source.
        column: the column; None for the whole row.
        problem: what is wrong, as a clause ("the label is empty").
        path: the media file the row names, for an image or a clip.
        unit: what a row is called in ``source`` ("row"; "sentence" in a CoNLL file).
    """

    source: str
    row: int | None
    column: str | None
    problem: str
    path: str | None = None
    unit: str = "row"

    def __str__(self) -> str:
        place = [self.source]
        if self.row is not None:
            place.append(f"{self.unit} {self.row}")
        if self.column is not None:
            place.append(f"column {self.column!r}")
        if self.path is not None and self.path != self.source:
            place.append(f"file {self.path}")
        return f"{', '.join(place)}: {self.problem}"


class DataError(Refusal):
    """The refusal of a run's data: the findings, the first :data:`FINDINGS_SHOWN` listed one a line, and what to
    do about them."""

    def __init__(self, findings: Sequence[Finding] | str, advice: str = ""):
        if isinstance(findings, str):  # the message alone, as a DataLoader worker's error is raised again
            self.findings = []
            super().__init__(findings)
            return
        self.findings = list(findings)
        lines = [f"{finding}." for finding in self.findings[:FINDINGS_SHOWN]]
        if len(self.findings) > FINDINGS_SHOWN:
            lines.append(f"... and {len(self.findings) - FINDINGS_SHOWN} more ({len(self.findings)} in all).")
        super().__init__("\n".join(lines + ([advice] if advice else [])))


class DataCheck:
    """Collects the findings of a run's splits, then refuses them or drops their rows (:meth:`done`).

    Args:
        splits: split ("train", "eval", "test", ...) -> dataset; :meth:`done` replaces a split whose rows it drops.
        sources: split -> the file, folder or Hub split it comes from, for the messages.
        drop_flag: the recipe's flag that drops the findings added as ``droppable`` (``--drop_invalid_rows``);
            None where the task's convention drops no rows.
        drop: whether that flag is given.
        units: split -> what its rows are called ("sentence" for a CoNLL file), where not "row".
    """

    def __init__(
        self,
        splits: dict[str, Dataset],
        sources: dict[str, str],
        *,
        drop_flag: str | None = None,
        drop: bool = False,
        units: dict[str, str] | None = None,
    ):
        self.splits, self.sources = splits, sources
        self.drop_flag, self.drop = drop_flag, drop
        self.units = units or {}
        self.findings: list[tuple[str, Finding, bool]] = []

    def add(
        self,
        split: str,
        row: int | None,
        column: str | None,
        problem: str,
        *,
        droppable: bool = False,
        path: str | None = None,
    ) -> None:
        """Records that ``row`` (counted from 1) of ``split`` has ``problem`` in ``column``; a ``droppable``
        finding's row is dropped rather than refused under the recipe's ``drop_flag``."""
        finding = Finding(self.sources[split], row, column, problem, path, self.units.get(split, "row"))
        self.findings.append((split, finding, droppable and self.drop_flag is not None))

    def done(self) -> None:
        """Refuses the findings (all of them, unless the drop flag is given: then those that cannot be dropped),
        listed by file and row, or drops the rows of the droppable ones with a warning per split that counts them.

        Raises:
            DataError: naming every refused finding, and the flag that drops them where they could be dropped;
                or when dropping leaves a split without rows.
        """
        refused = [finding for _, finding, droppable in self.findings if not (droppable and self.drop)]
        if refused:
            refused = list(dict.fromkeys(refused))  # a file given for two splits is read twice
            order = {source: index for index, source in enumerate(dict.fromkeys(f.source for f in refused))}
            refused.sort(key=lambda finding: (order[finding.source], finding.row or 0))
            droppable = self.drop_flag and not self.drop and any(flag for _, _, flag in self.findings)
            advice = (
                f"Fix these rows, or pass {self.drop_flag} to leave out the rows that cannot be trained on."
                if droppable
                else ""
            )
            raise DataError(refused, advice)
        for split in dict.fromkeys(split for split, _, _ in self.findings):
            findings = sorted(
                (finding for name, finding, _ in self.findings if name == split), key=lambda f: f.row or 0
            )
            rows = {finding.row for finding in findings}
            dataset = self.splits[split]
            kept = [position for position in range(len(dataset)) if position + 1 not in rows]
            if not kept:
                raise DataError(
                    findings,
                    f"Every row of {self.sources[split]} is one of these: fix them, there is nothing to train on.",
                )
            shown = "; ".join(str(finding).removeprefix(f"{self.sources[split]}, ") for finding in findings[:5])
            more = f"; and {len(findings) - 5} more" if len(findings) > 5 else ""
            logger.warning(
                f"{self.drop_flag}: dropped {len(rows)} of the {len(dataset)} rows of {self.sources[split]} ({shown}"
                f"{more}). Without {self.drop_flag} the run stops on them instead."
            )
            self.splits[split] = dataset.select(kept)

    def __enter__(self) -> DataCheck:
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        if error_type is None:
            self.done()


def is_missing(value: Any) -> bool:
    """Whether a cell holds no value: None, NaN, or a string of white space alone ("" is what an empty CSV cell
    reads as)."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return isinstance(value, str) and not value.strip()


def column_values(dataset: Dataset, column: str) -> list:
    """Every value of ``column``, read at once (iterating a `datasets` column reads it row by row, a hundred times
    slower)."""
    return dataset.select_columns([column])[:][column]


def labelled_splits(splits: dict[str, Dataset]) -> list[str]:
    """The splits whose labels train or score the model: all but the test splits (to predict)."""
    return [split for split in splits if not split.startswith("test")]


def check_labels_present(check: DataCheck, column: str, flag: str, splits: Iterable[str] | None = None) -> None:
    """Adds a finding for every row of the labelled splits whose ``column`` holds no label (empty, None, NaN),
    or a label of another type than the split's other labels (``0`` among ``"pos"`` / ``"neg"``), or a list or
    a dict: each would otherwise become a class of its own (``''``), or fail where the classes are sorted.

    Args:
        check: the collector; its splits are read.
        column: the label column.
        flag: the recipe's option that names the column, for the message.
        splits: the splits to read; the labelled ones (:func:`labelled_splits`) by default.
    """
    for split in labelled_splits(check.splits) if splits is None else splits:
        dataset = check.splits[split]
        if column not in dataset.column_names:
            continue
        kinds = {}
        for row, value in enumerate(column_values(dataset, column), start=1):
            if is_missing(value):
                check.add(
                    split,
                    row,
                    column,
                    f"the label is missing ({value!r}); every training and evaluation row needs one",
                )
            elif isinstance(value, (list, dict)):
                check.add(
                    split, row, column, f"holds {type(value).__name__} {short(value)}, not a label (check {flag})"
                )
            else:
                kind = "text" if isinstance(value, str) else "number"
                kinds.setdefault(kind, []).append(row)
        if len(kinds) > 1:
            fewer = min(kinds, key=lambda kind: len(kinds[kind]))
            more = "text" if fewer == "number" else "numbers"
            for row in kinds[fewer][:FINDINGS_SHOWN]:
                value = dataset[row - 1][column]
                check.add(split, row, column, f"holds the {fewer} {value!r}, while its other labels are {more}")


def check_texts(
    check: DataCheck,
    columns: dict[str | None, str],
    *,
    splits: Iterable[str] | None = None,
    droppable: bool = False,
) -> None:
    """Adds a finding for every row whose text in ``columns`` is missing (None, empty or white space) or is not
    a string (a number or a list, which a tokenizer cannot take).

    Args:
        check: the collector; its splits are read.
        columns: column -> what its texts are, for the message ("text", "summary"); None keys are skipped.
        splits: the splits to read (those that have the column); all of them by default.
        droppable: whether the rows may be dropped (the task's convention drops them).
    """
    for split in check.splits if splits is None else splits:
        dataset = check.splits[split]
        for column, what in columns.items():
            if column is None or column not in dataset.column_names:
                continue
            for row, value in enumerate(column_values(dataset, column), start=1):
                if is_missing(value):
                    check.add(split, row, column, f"the {what} is missing ({short(value)})", droppable=droppable)
                elif not isinstance(value, str):
                    problem = f"the {what} is {type(value).__name__} {short(value)}, not text"
                    check.add(split, row, column, problem, droppable=droppable)


def check_unique(check: DataCheck, column: str, splits: Iterable[str], why: str) -> None:
    """Adds a finding for every row of ``splits`` whose ``column`` repeats an earlier row's value; ``why``
    says what the values key ("the predictions are keyed by id")."""
    for split in splits:
        first_row = {}
        dataset = check.splits[split]
        if column not in dataset.column_names:
            continue
        for row, value in enumerate(column_values(dataset, column), start=1):
            key = str(value)
            if key in first_row:
                check.add(split, row, column, f"{short(value)} is also the {column} of row {first_row[key]}: {why}")
            else:
                first_row[key] = row


def short(value: Any, length: int = 60) -> str:
    """``repr(value)``, cut to ``length`` characters."""
    text = repr(value)
    return text if len(text) <= length else text[: length - 3] + "..."


def check_output_dir(output_dir: str) -> None:
    """Refuses, before anything is loaded, an ``--output_dir`` the run could not finish in: a file, a folder
    (or the folder it would be made in) that cannot be written into, a path under a file.

    Raises:
        Refusal: naming the path and what to do.
    """
    if os.path.isfile(output_dir):
        raise Refusal(f"--output_dir {output_dir} is a file, not a folder: choose a folder for the run's outputs.")
    existing = os.path.abspath(output_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise Refusal(f"--output_dir {output_dir} cannot be made: {existing} is a file, not a folder.")
    if not writable(existing):
        where = "it" if existing == os.path.abspath(output_dir) else f"{existing}, where it would be made"
        raise Refusal(
            f"--output_dir {output_dir}: cannot write into {where} (permissions, or a read-only file system). "
            "Choose another --output_dir."
        )


def writable(folder: str) -> bool:
    """Whether a file can be made in ``folder``: tried (``os.access`` says yes to root on a read-only mount)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def check_checkpoint_origin(checkpoint: str, model_name_or_path: str | None, recipe_file: str) -> None:
    """Refuses to resume from a checkpoint another recipe wrote (its ``training_args.bin`` records the recipe's
    command), or one of another model type than ``model_name_or_path`` (a local folder's ``config.json``):
    resuming would fail on the first tensor of another size, or train the wrong model.

    Raises:
        Refusal: naming the checkpoint, what wrote it, and what to do.
    """
    advice = (
        "Pass --overwrite_output_dir to train from scratch in that folder, or choose another --output_dir (or "
        "--resume_from_checkpoint false)."
    )
    recorded = checkpoint_recipe(checkpoint)
    if recorded is not None and os.path.basename(recorded) != os.path.basename(recipe_file):
        raise Refusal(
            f"{checkpoint} was written by {os.path.basename(recorded)} (its training_args.bin), not by "
            f"{os.path.basename(recipe_file)}: this run cannot resume from it. {advice}"
        )
    saved, ours = model_type_of(checkpoint), model_type_of(model_name_or_path)
    if saved is not None and ours is not None and saved != ours:
        raise Refusal(
            f"{checkpoint} holds a {saved} model, but --model_name_or_path {model_name_or_path} is a {ours} model: "
            f"this run cannot resume from it. {advice}"
        )


def model_type_of(folder: str | None) -> str | None:
    """The ``model_type`` of a local model folder's ``config.json``; None where there is none (a Hub id)."""
    path = os.path.join(folder, "config.json") if folder else ""
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


class _Anything:
    """What :class:`_RecordReader` makes of every class: an object holding the state it is given."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple):  # (dict, slots)
            state = state[0]
        if isinstance(state, dict):
            self.__dict__.update(state)


class _RecordReader(pickle.Unpickler):
    """Reads a pickle without importing or running any of its classes: each becomes :class:`_Anything`."""

    def find_class(self, module, name):
        if (module, name) == ("copyreg", "_reconstructor"):
            return lambda cls, base, state: cls()
        return _Anything

    def persistent_load(self, pid):
        return None


def checkpoint_recipe(checkpoint: str) -> str | None:
    """The recipe file that wrote ``checkpoint``: the first word of the ``recipe_command`` its
    ``training_args.bin`` records (the recipes set it), read without running the pickle's code; None for a
    checkpoint without one (another script's, or unreadable)."""
    path = os.path.join(checkpoint, "training_args.bin")
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(name for name in archive.namelist() if name.endswith("data.pkl"))
            arguments = _RecordReader(io.BytesIO(archive.read(name))).load()
    except Exception:  # noqa: BLE001 - a missing, legacy or corrupt file records nothing we can read
        return None
    command = getattr(arguments, "__dict__", {}).get("recipe_command")
    return command[0] if isinstance(command, list) and command and isinstance(command[0], str) else None


def exit_on_refusal(error_type, error, traceback, *, previous=sys.excepthook) -> None:
    """``sys.excepthook`` of a recipe run as a script: a :class:`Refusal` ends the run with its message alone
    (exit code 1), any other error with its traceback."""
    if isinstance(error, Refusal):
        print(f"{os.path.basename(sys.argv[0])}: {error}", file=sys.stderr)
        return
    previous(error_type, error, traceback)

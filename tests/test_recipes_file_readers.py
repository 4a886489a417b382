"""A data file that cannot be parsed or is cut short ends a recipe in one line naming the file (and the line, where
the format has lines), before any model loads: nothing trained, nothing written (issue #40).

Every format on the one reader (``recipe_utils.readers``), through text classification; every recipe on a file
cut short; the formats a recipe reads itself (CoNLL, ``id2label.json``) through it; and the import graph of
``recipe_utils`` without a circle. The cases run each recipe's ``main`` as ``tests/test_recipes_data_checks.py``
does, with a model that does not exist.
"""

import ast
import gzip
import importlib
import io
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from recipe_helpers import QUIET, RECIPES_DIR, REPO_ROOT
from recipe_utils import Refusal, read_data_file, read_json_file
from test_recipes_data_checks import NO_MODEL, chat_tokenizer, refusal, write, write_bytes  # noqa: F401 - a fixture


def gzipped(text: str) -> bytes:
    return gzip.compress(text.encode("utf-8"), mtime=0)


def cut(data: bytes) -> bytes:
    """The first two thirds of ``data``: a file whose writer stopped early."""
    return data[: len(data) * 2 // 3]


def parquet_bytes(rows: dict) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(rows), buffer)
    return buffer.getvalue()


ROWS = "".join(json.dumps({"text": f"film {i}", "label": "pos" if i % 2 else "neg"}) + "\n" for i in range(200))
CSV_ROWS = "text,label\n" + "".join(f"film {i},{'pos' if i % 2 else 'neg'}\n" for i in range(200))

# name -> (file name, its bytes, the message after "Could not read {path} as ").
FORMATS = {
    "CSV row with more fields": (
        "train.csv",
        b"text,label\ngood,pos\nbad,neg,extra,more\n",
        "CSV: Error tokenizing data. C error: Expected 2 fields in line 3, saw 4",
    ),
    "TSV row with more fields": (
        "train.tsv",
        b"text\tlabel\ngood\tpos\nbad\tneg\textra\n",
        "CSV: Error tokenizing data. C error: Expected 2 fields in line 3, saw 3",
    ),
    "CSV not UTF-8": (
        "train.csv",
        b"text,label\ngood,pos\nb\xe4d,neg\n",
        "CSV: line 3 is not UTF-8 text (invalid continuation byte at byte 2 of the line)",
    ),
    "JSON array cut short": (
        "train.json",
        b'[{"text": "good", "label": "pos"},\n{"text": "bad", "label": "neg"},\n{"text": "meh", "la',
        "JSON: line 3 is not valid JSON (Unterminated string starting at character 17)",
    ),
    "JSON lines with a broken line": (
        "train.jsonl",
        b'{"text": "good", "label": "pos"}\n{"text": "bad" "label": "neg"}\n',
        "JSON: line 2 is not a JSON object (Expecting ',' delimiter at character 16)",
    ),
    "JSON lines cut short": (
        "train.jsonl",
        ROWS.encode()[:100],
        "JSON: line 3 is not a JSON object (Unterminated string starting at character 29)",
    ),
    "gzip'd JSON lines cut short": (
        "train.jsonl.gz",
        cut(gzipped(ROWS)),
        "JSON: the compressed data breaks off {where}: the file is cut short (Compressed file "
        "ended before the end-of-stream marker was reached)",
    ),
    "gzip'd CSV cut short": (
        "train.csv.gz",
        cut(gzipped(CSV_ROWS)),
        "CSV: the compressed data breaks off {where}: the file is cut short (Compressed file "
        "ended before the end-of-stream marker was reached)",
    ),
    "gzip'd JSON lines with a broken line": (
        "train.jsonl.gz",
        gzipped('{"text": "good", "label": "pos"}\n{"text": "bad", "label": \n'),
        "JSON: line 2 is not a JSON object (Expecting value at character 26)",
    ),
    "Parquet cut short": (
        "train.parquet",
        cut(parquet_bytes({"text": ["good", "bad"] * 100, "label": ["pos", "neg"] * 100})),
        "PARQUET: it is not a complete Parquet file (cut short, or not Parquet): Parquet magic bytes not found in "
        "footer. Either the file is corrupted or this is not a parquet file.",
    ),
}


def _where(data: bytes) -> str:
    """Where a gzip'd file cut short breaks off, as the message says it ("" for a file that is not gzip'd)."""
    if not data.startswith(b"\x1f\x8b"):
        return ""
    lines = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(data).count(b"\n")
    return f"after line {lines}" if lines else "before its first line ends"


@pytest.mark.parametrize("case", list(FORMATS))
def test_every_format_ends_in_one_line_naming_the_file_and_line(case, tmp_path):
    name, data, expected = FORMATS[case]
    path = write_bytes(tmp_path / name, data)
    message = refusal("text_classification", f"--do_train --train_file {path}", tmp_path)
    assert message == f"Could not read {path} as " + expected.format(where=_where(data))
    assert "\n" not in message


# Each recipe's arguments around a training file whose rows would suit it (before it was cut short).
RECIPE_FILES = {
    "text_classification": ("", ROWS),
    "text_classification_no_trainer": ("", ROWS),
    "image_classification": ("--image_column path --label_column label", '{"path": "a.png", "label": "cat"}\n' * 50),
    "audio_classification": ("--audio_column_name path", '{"path": "a.wav", "label": "kick"}\n' * 50),
    "token_classification": ("", '{"tokens": ["Ana", "sings"], "ner_tags": ["B-PER", "O"]}\n' * 50),
    "question_answering": ("", '{"id": "1", "question": "Who?", "context": "Ana sings.", "answers": {}}\n' * 50),
    "sft": ("", '{"messages": [{"role": "user", "content": "hi"}]}\n' * 50),
    "seq2seq": ("", '{"document": "A long text.", "summary": "A sum."}\n' * 50),
    "semantic_segmentation": ("", '{"image": "a.png", "label": "a.png"}\n' * 50),
}


@pytest.mark.parametrize("recipe", list(RECIPE_FILES))
def test_every_recipe_names_a_file_cut_short(recipe, tmp_path, chat_tokenizer):  # noqa: F811 - the fixture
    flags, rows = RECIPE_FILES[recipe]
    data = cut(gzipped(rows))
    path = write_bytes(tmp_path / "train.jsonl.gz", data)
    write(tmp_path / "id2label.json", json.dumps({"0": "background", "1": "a"}))
    train = "" if recipe == "text_classification_no_trainer" else "--do_train "
    model = chat_tokenizer if recipe == "sft" else NO_MODEL
    if recipe == "text_classification_no_trainer":  # its own flags, none of the Trainer's
        with pytest.raises(Refusal) as error:
            importlib.import_module(recipe).main(
                ["--model_name_or_path", NO_MODEL, "--train_file", path, "--cache_dir", str(tmp_path / "cache")]
            )
        message = str(error.value)
    else:
        message = refusal(recipe, f"{train}{flags} --train_file {path}".strip(), tmp_path, model=model)
    assert message == (
        f"Could not read {path} as JSON: the compressed data breaks off {_where(data)}: "
        "the file is cut short (Compressed file ended before the end-of-stream marker was reached)"
    )


def test_a_conll_file_that_is_not_utf8_or_cut_short_names_its_line(tmp_path):
    path = write_bytes(tmp_path / "train.conll", b"Ana B-PER\nsings O\n\nB\xf6 B-PER\nruns O\n")
    message = refusal(
        "token_classification", f"--do_train --conll_columns tokens ner_tags --train_file {path}", tmp_path
    )
    assert message == f"Could not read {path}: line 4 is not UTF-8 text (invalid start byte at byte 2 of the line)."
    text = "".join(f"w{i} O\n" for i in range(400))
    path = write_bytes(tmp_path / "train.conll.gz", cut(gzipped(text)))
    message = refusal(
        "token_classification", f"--do_train --conll_columns tokens ner_tags --train_file {path}", tmp_path
    )
    assert message == (
        f"Could not read {path}: the compressed data breaks off {_where(cut(gzipped(text)))}: the file is cut short "
        "(Compressed file ended before the end-of-stream marker was reached)."
    )


def test_an_id2label_file_that_does_not_parse_names_its_line(tmp_path):
    pairs = write(tmp_path / "pairs.csv", "image,label\na.png,a.png\n")
    labels = write(tmp_path / "id2label.json", '{"0": "background",\n "1": "a"\n "2": "b"}\n')
    message = refusal("semantic_segmentation", f"--do_train --train_file {pairs} --id2label_file {labels}", tmp_path)
    assert message == (
        f"Could not read {labels} as JSON: line 3 is not valid JSON (Expecting ',' delimiter at character 2)."
    )


def test_the_readers_take_plain_values(tmp_path):
    good = write(tmp_path / "good.jsonl", ROWS)
    assert len(read_data_file(good, cache_dir=str(tmp_path / "cache"))) == 200
    assert read_json_file(write(tmp_path / "labels.json", '{"0": "a"}')) == {"0": "a"}
    with pytest.raises(Refusal, match=r"labels\.json is empty\.$"):
        read_json_file(write(tmp_path / "labels.json", "\n"))


def _recipe_utils_imports() -> dict[str, set[str]]:
    """Module -> the modules of recipe_utils it imports (at any level, under TYPE_CHECKING too)."""
    folder = Path(RECIPES_DIR) / "recipe_utils"
    graph = {}
    for path in folder.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    imported.add(node.module.split(".")[0])
                else:
                    imported.update(alias.name for alias in node.names)
        graph[path.stem] = imported
    return graph


def test_argument_dataclasses_call_no_reader():
    """The readers take plain values: neither the argument dataclasses nor the readers import each other (no import
    circle anywhere under recipes/: tests/test_no_import_circles.py)."""
    graph = _recipe_utils_imports()
    assert graph["arguments"] <= {"files", "checks"}
    for reader in ("data", "media", "readers", "files"):
        assert "arguments" not in graph[reader] and "splits" not in graph[reader], reader


def test_no_recipe_parses_a_data_file_itself():
    """The recipes read their data through recipe_utils' reader: no json.load, pandas or `datasets` file builder
    of their own."""
    for name in sorted(os.listdir(RECIPES_DIR)):
        if not name.endswith(".py"):
            continue
        text = Path(RECIPES_DIR, name).read_text()
        for call in ("json.load(", "pd.read_", "pandas.read_", 'load_dataset("json"', 'load_dataset("csv"'):
            assert call not in text, (name, call)


@pytest.mark.slow  # the in-process cases above cover the message; this one the script's exit and stderr
def test_a_cut_parquet_file_ends_the_script_with_one_line_and_exit_1(tmp_path):
    path = write_bytes(tmp_path / "train.parquet", FORMATS["Parquet cut short"][1])
    command = [
        sys.executable, os.path.join(RECIPES_DIR, "text_classification.py"), "--model_name_or_path", NO_MODEL,
        "--output_dir", str(tmp_path / "out"), "--do_train", "--train_file", path, *QUIET,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"text_classification.py: Could not read {path} as PARQUET: it is not a complete Parquet file (cut short, "
        "or not Parquet): Parquet magic bytes not found in footer. Either the file is corrupted or this is not a "
        "parquet file."
    )
    assert "Traceback" not in result.stderr and "Failed to read schema" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_image_folder_whose_metadata_does_not_parse_names_the_file_and_line(tmp_path):
    from test_recipes_data_checks import write_image

    write_image(tmp_path / "train" / "cat" / "1.png")
    write_image(tmp_path / "train" / "dog" / "2.png")
    metadata = write(
        tmp_path / "train" / "metadata.jsonl",
        '{"file_name": "cat/1.png", "label": "cat"}\n{"file_name": "dog/2.png" "label": "dog"}\n',
    )
    message = refusal("image_classification", f"--do_train --train_dir {tmp_path / 'train'}", tmp_path)
    assert message == (
        f"Could not read {metadata} as JSON: line 2 is not a JSON object (Expecting ',' delimiter at character 27)"
    )


def test_detection_annotation_files_that_do_not_parse_name_the_file_and_line(tmp_path):
    from recipe_utils.detection import read_coco, read_image_folder, read_voc

    coco = write(tmp_path / "coco.json", '{"images": [],\n "annotations": [] "categories": []}\n')
    with pytest.raises(Refusal) as error:
        read_coco(str(coco))
    assert str(error.value) == (
        f"Could not read {coco} as JSON: line 2 is not valid JSON (Expecting ',' delimiter at character 20)."
    )
    folder = tmp_path / "folder"
    metadata = write(
        folder / "metadata.jsonl", '{"file_name": "1.jpg", "objects": {"bbox": [], "category": []}}\n{"file'
    )
    with pytest.raises(Refusal) as error:
        read_image_folder(str(folder))
    assert str(error.value).startswith(f"{metadata}, line 2: not a detection entry (JSONDecodeError: ")
    voc = tmp_path / "voc"
    listing = write_bytes(voc / "ImageSets" / "Main" / "train.txt", b"img1\nimg\xf62\n")
    with pytest.raises(Refusal) as error:
        list(read_voc(str(voc), "train"))
    assert str(error.value).startswith(f"Could not read {listing}: line 2 ")

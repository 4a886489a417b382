"""Bad data never trains in silence (issue #32): every recipe checks its data before it loads a model, and a
refusal names the file, the row (counted from 1: the first example of a file) and the column.

Each case writes a handful of rows and runs the recipe's ``main`` with a model that does not exist: the refusal
(a ``Refusal``, the recipes' own error) proves the data was checked before any model was loaded, and the output
folder is left unmade (nothing trained, no checkpoint). The output-folder checks, the drop flag, the decoding
errors found as batches are drawn and the message a script ends with are checked after the recipes' cases.
"""

import importlib
import json
import logging
import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
import soundfile
import torch
from datasets import Dataset
from PIL import Image
from recipe_helpers import QUIET, RECIPES_DIR, REPO_ROOT
from recipe_utils import (
    ROW_COLUMN,
    DataCheck,
    DataError,
    RecipeTrainingArguments,
    Refusal,
    check_texts,
    checkpoint_recipe,
    decode_media,
    exit_on_refusal,
    number_rows,
    read_image,
    sample_positions,
    take_samples,
    undecoded,
    writable,
)


NO_MODEL = "/no/such/model"


def refusal(recipe: str, arguments: str, tmp_path, model: str = NO_MODEL) -> str:
    """The message ``recipe`` refuses the run with; its output folder is never made."""
    output_dir = tmp_path / "out"
    common = f"--model_name_or_path {model} --output_dir {output_dir} --cache_dir {tmp_path / 'cache'}"
    with pytest.raises(Refusal) as error:
        importlib.import_module(recipe).main(common.split() + QUIET + arguments.split())
    assert not output_dir.exists()
    return str(error.value)


def write(path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return str(path)


def write_bytes(path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def write_jsonl(path, rows: list) -> str:
    return write(path, "".join(json.dumps(row) + "\n" for row in rows))


def write_image(path, size=(64, 64), mode="RGB", truncate=False, value=None) -> str:
    """A noise image (or one of ``value`` everywhere, for a mask); ``truncate`` cuts the file's last quarter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    pixels = np.full(shape, value, dtype=np.uint8) if value is not None else rng.integers(0, 255, shape, np.uint8)
    Image.fromarray(pixels, mode=mode).save(path)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 3 // 4])
    return str(path)


def write_clip(path, samples: int = 1600) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.random.default_rng(0).uniform(-0.1, 0.1, samples).astype(np.float32), 16000)
    return str(path)


# ---------------------------------------------------------------------------------------------- text classification


def csv_file(path, header: str, *rows: str) -> str:
    return write(path, "\n".join((header, *rows)) + "\n")


def text_rows(t, *rows: str, name="train.csv") -> str:
    return csv_file(t / name, "text,label", *rows)


TEXT_CASES = {
    "empty label cell": (
        lambda t: f"--do_train --train_file {text_rows(t, 'good film,pos', 'bad film,', 'awful,neg')}",
        "{t}/train.csv, row 2, column 'label': the label is missing (''); every training and evaluation row needs "
        "one.",
    ),
    "null label": (
        lambda t: (
            "--do_train --train_file "
            + write_jsonl(t / "train.jsonl", [{"text": "a", "label": "pos"}, {"text": "b", "label": None}])
        ),
        "{t}/train.jsonl, row 2, column 'label': the label is missing (None); every training and evaluation row "
        "needs one.",
    ),
    "label of another type": (
        lambda t: (
            "--do_train --train_file "
            + write_jsonl(
                t / "train.jsonl",
                [{"text": "a", "label": "pos"}, {"text": "b", "label": "neg"}, {"text": "c", "label": 1}],
            )
        ),
        "{t}/train.jsonl, row 3, column 'label': holds the number 1, while its other labels are text.",
    ),
    "empty text": (
        lambda t: f"--do_train --train_file {text_rows(t, 'good film,pos', ',neg')}",
        "{t}/train.csv, row 2, column 'text': the text is missing ('').",
    ),
    "text that is a number": (
        lambda t: (
            "--do_train --train_file "
            + write_jsonl(t / "train.jsonl", [{"text": "a", "label": "pos"}, {"text": 7, "label": "neg"}])
        ),
        "{t}/train.jsonl, row 2, column 'text': the text is int 7, not text.",
    ),
    "empty second sentence": (
        lambda t: (
            "--do_train --train_file "
            + csv_file(t / "pairs.csv", "sentence1,sentence2,label", "A man runs,A man moves,yes", "It rains,,no")
        ),
        "{t}/pairs.csv, row 2, column 'sentence2': the second text of the pair is missing ('').",
    ),
    "label only in validation": (
        lambda t: (
            f"--train_file {text_rows(t, 'good,pos', 'bad,neg')} "
            f"--validation_file {text_rows(t, 'meh,neutral', name='dev.csv')}"
        ),
        "Column 'label' of {t}/dev.csv holds labels ['neutral'] that are not among the 2 labels ['neg', 'pos'] of "
        "{t}/train.csv. Fix the data, or choose the label column with --label_column.",
    ),
    "JSON that does not parse": (
        lambda t: (
            "--do_train --train_file "
            + write(
                t / "train.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n{"text": "c" "label": 1}\n'
            )
        ),
        "Could not read {t}/train.jsonl as JSON: line 3 is not a JSON object (Expecting ',' delimiter at character "
        "14)",
    ),
    "CSV that is not UTF-8": (
        lambda t: "--do_train --train_file " + write_bytes(t / "train.csv", b"text,label\ngood,pos\nb\xe4d,neg\n"),
        "Could not read {t}/train.csv as CSV: line 3 is not UTF-8 text (invalid continuation byte at byte 2 of the "
        "line)",
    ),
}


@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_text_classification_refuses_bad_rows(case, tmp_path):
    arguments, expected = TEXT_CASES[case]
    assert refusal("text_classification", arguments(tmp_path), tmp_path) == expected.format(t=tmp_path)


# --------------------------------------------------------------------------------------------- image classification


def image_rows(t, *rows: tuple[str, str]) -> str:
    """A CSV of image paths and labels."""
    return csv_file(t / "images.csv", "path,label", *(f"{path},{label}" for path, label in rows))


IMAGES = "--image_column path --label_column label --do_train --train_file"
IMAGE_CASES = {
    "empty label cell": (
        lambda t: f"{IMAGES} {image_rows(t, (write_image(t / 'a.png'), 'cat'), (write_image(t / 'b.png'), ''))}",
        "{t}/images.csv, row 2, column 'label': the label is missing (''); every training and evaluation row needs "
        "one.",
    ),
    "missing image file": (
        lambda t: f"{IMAGES} {image_rows(t, (write_image(t / 'a.png'), 'cat'), (t / 'gone.png', 'dog'))}",
        "{t}/images.csv, row 2, column 'path', file {t}/gone.png: no such file.",
    ),
    "empty path cell": (
        lambda t: f"{IMAGES} {image_rows(t, (write_image(t / 'a.png'), 'cat'), ('', 'dog'))}",
        "{t}/images.csv, row 2, column 'path': names no file ('').",
    ),
    "empty image file": (
        lambda t: f"{IMAGES} {image_rows(t, (write_image(t / 'a.png'), 'cat'), (write_bytes(t / 'b.png', b''), 'dog'))}",
        "{t}/images.csv, row 2, column 'path', file {t}/b.png: is an empty file (0 bytes).",
    ),
    "a text file named .png": (
        lambda t: f"{IMAGES} {image_rows(t, (write_image(t / 'a.png'), 'cat'), (write(t / 'b.png', 'hi'), 'dog'))}",
        "{t}/images.csv, row 2, column 'path', file {t}/b.png: is not an image PIL can read (UnidentifiedImageError: "
        "cannot identify image file '{t}/b.png').",
    ),
    "truncated JPEG in the third row": (
        lambda t: IMAGES
        + " "
        + image_rows(
            t,
            (write_image(t / "a.jpg"), "cat"),
            (write_image(t / "b.jpg"), "dog"),
            (write_image(t / "c.jpg", truncate=True), "dog"),
        ),
        "{t}/images.csv, row 3, column 'path', file {t}/c.jpg: cannot be decoded (OSError: image file is truncated "
        "(1 bytes not processed)).",
    ),
    "class folder only in validation": (
        lambda t: [write_image(t / split / name / "1.png") for split, name in
                   (("train", "cat"), ("train", "dog"), ("val", "cat"), ("val", "fox"))]
        and f"--train_dir {t / 'train'} --validation_dir {t / 'val'}",
        "Column 'label' of image folder {t}/val holds labels ['fox'] that are not among the 2 labels ['cat', 'dog'] "
        "of image folder {t}/train. Fix the data, or choose the label column with --label_column.",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(IMAGE_CASES))
def test_image_classification_refuses_bad_rows_and_images(case, tmp_path):
    arguments, expected = IMAGE_CASES[case]
    assert refusal("image_classification", arguments(tmp_path), tmp_path) == expected.format(t=tmp_path)


# --------------------------------------------------------------------------------------------- audio classification


def clip_rows(t, *rows: tuple[str, str]) -> str:
    return csv_file(t / "clips.csv", "path,label", *(f"{path},{label}" for path, label in rows))


CLIPS = "--audio_column_name path --do_train --train_file"
AUDIO_CASES = {
    "clip without samples": (
        lambda t: f"{CLIPS} {clip_rows(t, (write_clip(t / 'a.wav'), 'kick'), (write_clip(t / 'b.wav', 0), 'snare'))}",
        "{t}/clips.csv, row 2, column 'path', file {t}/b.wav: holds no samples (a clip of length 0).",
    ),
    "malformed WAV": (
        lambda t: (
            CLIPS
            + " "
            + clip_rows(t, (write_clip(t / "a.wav"), "kick"), (write_bytes(t / "b.wav", b"RIFF1234WAVEjunk"), "snare"))
        ),
        "{t}/clips.csv, row 2, column 'path', file {t}/b.wav: is not a clip soundfile can read (LibsndfileError: "
        "Error opening '{t}/b.wav': Error in WAV file. No 'data' chunk marker.).",
    ),
    "empty label cell": (
        lambda t: f"{CLIPS} {clip_rows(t, (write_clip(t / 'a.wav'), 'kick'), (write_clip(t / 'b.wav'), ''))}",
        "{t}/clips.csv, row 2, column 'label': the label is missing (''); every training and evaluation row needs "
        "one.",
    ),
    "empty path cell": (
        lambda t: f"{CLIPS} {clip_rows(t, (write_clip(t / 'a.wav'), 'kick'), ('', 'snare'))}",
        "{t}/clips.csv, row 2, column 'path': names no file ('').",
    ),
}


@pytest.mark.parametrize("case", list(AUDIO_CASES))
def test_audio_classification_refuses_bad_rows_and_clips(case, tmp_path):
    arguments, expected = AUDIO_CASES[case]
    assert refusal("audio_classification", arguments(tmp_path), tmp_path) == expected.format(t=tmp_path)


# --------------------------------------------------------------------------------------------- token classification


def sentences(t, *rows) -> str:
    return write_jsonl(t / "train.jsonl", [{"tokens": words, "ner_tags": tags} for words, tags in rows])


TOKEN_CASES = {
    "a missing tag": (
        lambda t: sentences(t, (["Ana", "sings"], ["B-PER", "O"]), (["Bo", "runs"], ["B-PER", None])),
        "{t}/train.jsonl, row 2, column 'ner_tags': tag 2 of 2 is None.",
    ),
    "an empty word": (
        lambda t: sentences(t, (["Ana", "sings"], ["B-PER", "O"]), (["", "runs"], ["B-PER", "O"])),
        "{t}/train.jsonl, row 2, column 'tokens': word 1 of 2 is ''.",
    ),
    "no tags": (
        lambda t: sentences(t, (["Ana", "sings"], ["B-PER", "O"]), (["Bo", "runs"], None)),
        "{t}/train.jsonl, row 2, column 'ner_tags': holds None, not a list of tags.",
    ),
    "no words": (
        lambda t: sentences(t, (["Ana", "sings"], ["B-PER", "O"]), ([], [])),
        "{t}/train.jsonl, row 2, column 'tokens': holds [], not a list of words.",
    ),
    "fewer tags than words": (
        lambda t: sentences(t, (["Ana", "sings"], ["B-PER", "O"]), (["Bo", "runs", "far"], ["B-PER", "O"])),
        "{t}/train.jsonl, row 2, column 'ner_tags': 2 tags for the 3 words of 'tokens'.",
    ),
}


@pytest.mark.parametrize("case", list(TOKEN_CASES))
def test_token_classification_refuses_bad_sentences(case, tmp_path):
    data, expected = TOKEN_CASES[case]
    message = refusal("token_classification", f"--do_train --train_file {data(tmp_path)}", tmp_path)
    assert message == expected.format(t=tmp_path)


# ------------------------------------------------------------------------------------------------ question answering

CONTEXT = "The Broncos beat the Panthers in Super Bowl 50, played in Santa Clara."


def question(index: int, answer: str = "the Panthers", start: int | None = None, **fields) -> dict:
    row = {"id": f"q{index}", "context": CONTEXT, "question": "Who lost?"}
    row["answers"] = {"text": [answer], "answer_start": [CONTEXT.index(answer) if start is None else start]}
    return row | fields


def questions(t, *rows, name="train.jsonl") -> str:
    return write_jsonl(t / name, list(rows))


QA_CASES = {
    "answer_start off by 7 characters": (
        lambda t: (
            f"--do_train --train_file {questions(t, question(1), question(2, start=CONTEXT.index('the Panthers') + 7))}"
        ),
        "{t}/train.jsonl, row 2, column 'answers': answer 1 'the Panthers' is not at answer_start 24, where the "
        "context reads 'thers in Sup' (it stands at character 17).",
    ),
    "answer_start past the context's end": (
        lambda t: f"--do_train --train_file {questions(t, question(1), question(2, start=500))}",
        "{t}/train.jsonl, row 2, column 'answers': answer 1 'the Panthers' starts at character 500, past the end of "
        "its 70-character context.",
    ),
    "an answer the context does not hold": (
        lambda t: f"--do_train --train_file {questions(t, question(1), question(2, answer='the Giants', start=17))}",
        "{t}/train.jsonl, row 2, column 'answers': answer 1 'the Giants' is not at answer_start 17, where the context "
        "reads 'the Panthe' (the context does not hold it).",
    ),
    "duplicate ids in the validation file": (
        lambda t: (
            f"--do_eval --train_file {questions(t, question(1))} "
            f"--validation_file {questions(t, question(1), question(2), question(1), name='dev.jsonl')}"
        ),
        "{t}/dev.jsonl, row 3, column 'id': 'q1' is also the id of row 1: the answers are keyed by id, so one of the "
        "two questions would go unscored.",
    ),
    "an empty question": (
        lambda t: f"--do_train --train_file {questions(t, question(1), question(2, question=' '))}",
        "{t}/train.jsonl, row 2, column 'question': the question is missing (' ').",
    ),
    "answers with one offset for two texts": (
        lambda t: (
            "--do_train --train_file "
            + questions(t, question(1), question(2) | {"answers": {"text": ["a", "b"], "answer_start": [0]}})
        ),
        "{t}/train.jsonl, row 2, column 'answers': holds 2 answer texts but 1 answer_start offsets.",
    ),
}


@pytest.mark.parametrize("case", list(QA_CASES))
def test_question_answering_refuses_answers_that_do_not_fit_their_context(case, tmp_path):
    arguments, expected = QA_CASES[case]
    assert refusal("question_answering", arguments(tmp_path), tmp_path) == expected.format(t=tmp_path)


# ------------------------------------------------------------------------------------------------------------- SFT

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def chat_tokenizer(tmp_path_factory):
    """A tokenizer folder with a ChatML template and no model: loading a model from it fails, so a refusal from
    it was made before any model was loaded."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocabulary = {token: index for index, token in enumerate(["<unk>", "<|im_start|>", "<|im_end|>", "hi", "there"])}
    backend = Tokenizer(models.WordLevel(vocabulary, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>")
    tokenizer.chat_template = CHATML
    folder = str(tmp_path_factory.mktemp("chat-tokenizer"))
    tokenizer.save_pretrained(folder)
    return folder


def turns(*pairs) -> dict:
    return {"messages": [{"role": role, "content": content} for role, content in pairs]}


def conversations(t, *rows) -> str:
    return write_jsonl(t / "chats.jsonl", [turns(("user", "hi"), ("assistant", "there")), *rows])


SFT_CASES = {
    "a role the template does not know": (
        lambda t: f"--train_file {conversations(t, turns(('user', 'hi'), ('narrator', 'there')))}",
        "{t}/chats.jsonl, row 2, column 'messages': turn 2 has the role 'narrator'; the chat template knows "
        "assistant, system, tool, user.",
    ),
    "the assistant spelt otherwise, assistant-only loss": (
        lambda t: (
            "--assistant_only_loss true --train_file "
            + conversations(t, turns(("user", "hi"), ("Assistant", "there")))
        ),
        "{t}/chats.jsonl, row 2, column 'messages': turn 2 has the role 'Assistant'; the chat template knows "
        "assistant, system, tool, user.",
    ),
    "no assistant turn, assistant-only loss": (
        lambda t: f"--assistant_only_loss true --train_file {conversations(t, turns(('user', 'hi')))}",
        "{t}/chats.jsonl, row 2, column 'messages': has no assistant turn to train on with --assistant_only_loss "
        "(TRL would drop it in silence).",
    ),
    "a turn without content": (
        lambda t: f"--train_file {conversations(t, turns(('user', None), ('assistant', 'there')))}",
        "{t}/chats.jsonl, row 2, column 'messages': turn 1 (user) has no text: None.",
    ),
    "a conversation the template refuses": (
        lambda t: (
            f"--chat_template_path {write(t / 'strict.jinja', STRICT)} --train_file "
            + conversations(t, turns(("system", "hi"), ("user", "hi"), ("assistant", "there")))
        ),
        "{t}/chats.jsonl, row 2, column 'messages': the chat template fails on it (TemplateError: System role not "
        "supported).",
    ),
    "an empty completion": (
        lambda t: (
            "--train_file "
            + write_jsonl(
                t / "pairs.jsonl", [{"prompt": "hi", "completion": "there"}, {"prompt": "hi", "completion": ""}]
            )
        ),
        "{t}/pairs.jsonl, row 2, column 'completion': the completion is ''.",
    ),
    "a null text": (
        lambda t: f"--train_file {write_jsonl(t / 'texts.jsonl', [{'text': 'hi there'}, {'text': None}])}",
        "{t}/texts.jsonl, row 2, column 'text': the text is None.",
    ),
}
STRICT = (
    "{% for message in messages %}{% if message['role'] == 'system' %}{{ raise_exception('System role not "
    "supported') }}{% endif %}{{ message['role'] + ': ' + message['content'] + '\\n' }}{% endfor %}"
)


@pytest.mark.parametrize("case", list(SFT_CASES))
def test_sft_refuses_bad_conversations(case, tmp_path, chat_tokenizer):
    arguments, expected = SFT_CASES[case]
    message = refusal("sft", f"--do_train {arguments(tmp_path)}", tmp_path, model=chat_tokenizer)
    assert message == expected.format(t=tmp_path)


# ------------------------------------------------------------------------------------------------- seq2seq

DROP_ADVICE = "Fix these rows, or pass --drop_invalid_rows to leave out the rows that cannot be trained on."


def documents(t, *summaries) -> str:
    return write_jsonl(
        t / "xsum.jsonl",
        [{"document": f"Article {index}.", "summary": summary} for index, summary in enumerate(summaries)],
    )


SEQ2SEQ_CASES = {
    "an empty summary": (
        lambda t: f"--train_file {documents(t, 'A sum.', '')}",
        "{t}/xsum.jsonl, row 2, column 'summary': the target summary is missing ('').\n" + DROP_ADVICE,
    ),
    "a null document": (
        lambda t: "--train_file "
        + write_jsonl(t / "xsum.jsonl", [{"document": "An article.", "summary": "A sum."}, {"document": None, "summary": "B."}]),
        "{t}/xsum.jsonl, row 2, column 'document': the source text is missing (None).\n" + DROP_ADVICE,
    ),
    "every summary empty": (
        lambda t: f"--train_file {documents(t, *[''] * 12)}",
        "\n".join(f"{{t}}/xsum.jsonl, row {row}, column 'summary': the target summary is missing ('')." for row in range(1, 11))
        + "\n... and 2 more (12 in all).\n" + DROP_ADVICE,
    ),
    "every summary empty, dropped": (
        lambda t: f"--drop_invalid_rows --train_file {documents(t, '', '')}",
        "{t}/xsum.jsonl, row 1, column 'summary': the target summary is missing ('').\n"
        "{t}/xsum.jsonl, row 2, column 'summary': the target summary is missing ('').\n"
        "Every row of {t}/xsum.jsonl is one of these: fix them, there is nothing to train on.",
    ),
    "a translation without its target": (
        lambda t: "--source_lang en --target_lang es --train_file "
        + write_jsonl(t / "bible.jsonl", [{"translation": {"en": "In the beginning", "es": "En el principio"}},
                                          {"translation": {"en": "Let there be light"}}]),
        "{t}/bible.jsonl, row 2, column 'translation': the target translation ('es') is None.\n" + DROP_ADVICE,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(SEQ2SEQ_CASES))
def test_seq2seq_refuses_empty_sources_and_targets(case, tmp_path):
    arguments, expected = SEQ2SEQ_CASES[case]
    assert refusal("seq2seq", f"--do_train {arguments(tmp_path)}", tmp_path) == expected.format(t=tmp_path)


# ------------------------------------------------------------------------------------------- semantic segmentation


def pairs(t, *rows) -> str:
    """A CSV of image and mask paths, and the id2label of 3 classes beside it."""
    write(t / "id2label.json", json.dumps({"0": "background", "1": "a", "2": "b"}))
    return csv_file(t / "pairs.csv", "image,label", *(f"{image},{mask}" for image, mask in rows))


def pair(t, name: str, mask_size=(64, 64), mask_value=1, mask_mode="L", truncate=False) -> tuple[str, str]:
    image = write_image(t / "images" / f"{name}.jpg", truncate=truncate)
    return image, write_image(t / "masks" / f"{name}.png", mask_size, mask_mode, value=mask_value)


SEGMENTATION_CASES = {
    "a mask of another size": (
        lambda t: pairs(t, pair(t, "a"), pair(t, "b", mask_size=(64, 32))),
        "{t}/pairs.csv, row 2, column 'label', file {t}/masks/b.png: the image is 64x64 but its mask is 64x32: each "
        "mask must label every pixel of its image.",
    ),
    "an unknown class id in the third mask": (
        lambda t: pairs(t, pair(t, "a"), pair(t, "b"), pair(t, "c", mask_value=7)),
        "{t}/pairs.csv, row 3, column 'label', file {t}/masks/c.png: the mask holds class ids [7], but there are 3 "
        "classes (ids 0 to 2) and --ignore_index is 255. Check --id2label_file, --reduce_labels and "
        "--label_column_name.",
    ),
    "a truncated image": (
        lambda t: pairs(t, pair(t, "a"), pair(t, "b", truncate=True)),
        "{t}/pairs.csv, row 2, column 'image', file {t}/images/b.jpg: cannot be decoded (OSError: image file is "
        "truncated (1 bytes not processed)).",
    ),
    "a colour mask": (
        lambda t: pairs(t, pair(t, "a"), pair(t, "b", mask_mode="RGB")),
        "{t}/pairs.csv, row 2, column 'label', file {t}/masks/b.png: the mask is an image of mode RGB; masks hold one "
        "class id per pixel (8- or 16-bit grayscale, or palette PNG). Check --label_column_name.",
    ),
    "a missing mask": (
        lambda t: pairs(t, pair(t, "a"), (pair(t, "b")[0], t / "masks" / "gone.png")),
        "{t}/pairs.csv, row 2, column 'label', file {t}/masks/gone.png: no such file.",
    ),
}


@pytest.mark.parametrize("case", list(SEGMENTATION_CASES))
def test_semantic_segmentation_refuses_bad_images_and_masks(case, tmp_path):
    data, expected = SEGMENTATION_CASES[case]
    message = refusal("semantic_segmentation", f"--do_train --train_file {data(tmp_path)}", tmp_path)
    assert message == expected.format(t=tmp_path)


# ----------------------------------------------------------------------------------------------------- output folder


def good_text_data(t) -> str:
    return f"--do_train --train_file {text_rows(t, 'good film,pos', 'bad film,neg')}"


def output_dir_refusal(output_dir, tmp_path, model: str = NO_MODEL) -> str:
    """The message text_classification refuses ``output_dir`` with, before it reads the data (there is none)."""
    common = f"--model_name_or_path {model} --output_dir {output_dir} --do_train --train_file {tmp_path / 'none.csv'}"
    write(tmp_path / "none.csv", "text,label\n")  # holds no rows: reading it would be refused otherwise
    before = sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else None
    with pytest.raises(Refusal) as error:
        importlib.import_module("text_classification").main(common.split() + QUIET)
    assert (sorted(os.listdir(output_dir)) if os.path.isdir(output_dir) else None) == before
    return str(error.value)


def fake_checkpoint(folder, recipe: str, model_type: str) -> str:
    """A complete checkpoint as ``recipe`` writes one: its state, its model's config, its pickled arguments."""
    checkpoint = folder / "checkpoint-4"
    write(checkpoint / "trainer_state.json", json.dumps({"global_step": 4}))
    write(checkpoint / "config.json", json.dumps({"model_type": model_type}))
    write_bytes(checkpoint / "model.safetensors", b"")
    arguments = RecipeTrainingArguments(output_dir=str(folder))
    arguments.recipe_command = [f"recipes/{recipe}.py", "--output_dir", str(folder)]
    torch.save(arguments, checkpoint / "training_args.bin")
    return str(checkpoint)


def test_an_output_dir_that_is_a_file_or_under_one_is_refused(tmp_path):
    notes = write(tmp_path / "notes.txt", "keep me")
    assert output_dir_refusal(notes, tmp_path) == (
        f"--output_dir {notes} is a file, not a folder: choose a folder for the run's outputs."
    )
    assert output_dir_refusal(f"{notes}/run", tmp_path) == (
        f"--output_dir {notes}/run cannot be made: {notes} is a file, not a folder."
    )


def test_an_output_dir_that_cannot_be_written_is_refused(tmp_path):
    read_only = "/sys/finetune-llrd-out"  # a read-only mount, even for root
    if not os.path.isdir("/sys") or writable("/sys"):
        pytest.skip("no read-only folder on this machine")
    assert output_dir_refusal(read_only, tmp_path) == (
        f"--output_dir {read_only}: cannot write into /sys, where it would be made (permissions, or a read-only file "
        "system). Choose another --output_dir."
    )


def test_a_checkpoint_of_another_recipe_or_model_is_not_resumed(tmp_path):
    output_dir = tmp_path / "run"
    checkpoint = fake_checkpoint(output_dir, "seq2seq", "t5")
    assert checkpoint_recipe(checkpoint) == "recipes/seq2seq.py"
    advice = (
        "Pass --overwrite_output_dir to train from scratch in that folder, or choose another --output_dir (or "
        "--resume_from_checkpoint false)."
    )
    assert output_dir_refusal(output_dir, tmp_path) == (
        f"{checkpoint} was written by seq2seq.py (its training_args.bin), not by text_classification.py: this run "
        f"cannot resume from it. {advice}"
    )
    # The same recipe, another model type: the local model folder's config says which.
    other = tmp_path / "other"
    checkpoint = fake_checkpoint(other, "text_classification", "t5")
    bert = write(tmp_path / "bert" / "config.json", json.dumps({"model_type": "bert"}))
    assert output_dir_refusal(other, tmp_path, model=os.path.dirname(bert)) == (
        f"{checkpoint} holds a t5 model, but --model_name_or_path {os.path.dirname(bert)} is a bert model: this run "
        f"cannot resume from it. {advice}"
    )


# ------------------------------------------------------------------ dropping, decoding as batches come, the message


def test_drop_invalid_rows_drops_with_a_warning_that_counts_them(tmp_path, caplog):
    splits = {"train": Dataset.from_dict({"document": ["a", "", "c", None], "summary": ["x", "y", "", "z"]})}
    sources = {"train": "xsum.jsonl"}
    drop = {"drop_flag": "--drop_invalid_rows", "drop": True}
    with caplog.at_level(logging.WARNING, logger="recipe_utils"), DataCheck(splits, sources, **drop) as check:
        check_texts(check, {"document": "source text", "summary": "target summary"}, droppable=True)
    assert splits["train"]["document"] == ["a"]
    assert caplog.messages == [
        "--drop_invalid_rows: dropped 3 of the 4 rows of xsum.jsonl (row 2, column 'document': the source text is "
        "missing (''); row 3, column 'summary': the target summary is missing (''); row 4, column 'document': the "
        "source text is missing (None)). Without --drop_invalid_rows the run stops on them instead."
    ]


def test_seq2seq_goes_on_past_the_rows_it_drops(tmp_path, caplog):
    data = f"--do_train --drop_invalid_rows --train_file {documents(tmp_path, 'A sum.', '', 'C sum.')}"
    common = f"--model_name_or_path {NO_MODEL} --output_dir {tmp_path / 'out'}".split()
    with caplog.at_level(logging.WARNING, logger="recipe_utils"), pytest.raises(OSError):  # the model, next
        importlib.import_module("seq2seq").main(common + QUIET + data.split())
    assert f"--drop_invalid_rows: dropped 1 of the 3 rows of {tmp_path}/xsum.jsonl (row 2" in caplog.text


def _numbered_images(tmp_path, truncated_row: int) -> Dataset:
    paths = [write_image(tmp_path / f"{row}.jpg", truncate=row == truncated_row) for row in range(1, 5)]
    dataset = Dataset.from_dict({"image": paths, "label": [0, 1, 0, 1]})
    return number_rows(undecoded(dataset.cast_column("image", datasets.Image()), ["image"]))


def test_a_file_that_fails_as_batches_are_drawn_is_named_with_its_row(tmp_path):
    dataset = _numbered_images(tmp_path, truncated_row=3)
    sampled = take_samples(dataset, 3, seed=0)  # the rows keep their numbers in the file

    def apply(batch):
        return {"pixels": [np.asarray(image).mean() for image in batch["image"]], "labels": batch["label"]}

    transformed = sampled.with_transform(decode_media(apply, source="photos.csv", readers={"image": read_image}))
    rows = sampled[ROW_COLUMN]
    assert rows == [position + 1 for position in sample_positions(4, 3, seed=0)] and 3 in rows
    with pytest.raises(DataError) as error:
        transformed[:]
    assert str(error.value) == (
        f"photos.csv, row 3, column 'image', file {tmp_path}/3.jpg: cannot be decoded (OSError: "
        "image file is truncated (1 bytes not processed))."
    )

    def fails_on_label_1(batch):
        if 1 in batch["label"]:
            raise ValueError("label 1 is not wanted here")
        return apply(batch)

    readers = {"image": read_image}
    fine = number_rows(
        undecoded(Dataset.from_dict({"image": [write_image(tmp_path / "x.png")] * 2, "label": [0, 1]}), [])
    )
    transformed = fine.with_transform(decode_media(fails_on_label_1, source="photos.csv", readers=readers))
    with pytest.raises(DataError, match=r"^photos\.csv, row 2: label 1 is not wanted here\.$"):
        transformed[:]


@pytest.mark.parametrize("mode, refused", [("header", False), ("auto", True), ("decode", True)])
def test_media_check_decodes_or_reads_headers(tmp_path, mode, refused):
    from types import SimpleNamespace

    from recipe_utils import check_media

    splits = {"train": _numbered_images(tmp_path, truncated_row=3).remove_columns(ROW_COLUMN)}
    data_args = SimpleNamespace(media_check=mode, max_samples=lambda split: None)
    if refused:
        with pytest.raises(DataError, match=r"row 3, column 'image', file .*3\.jpg: cannot be decoded"):
            check_media(splits, {"train": "photos.csv"}, {"image": "image"}, data_args=data_args, seed=0)
    else:  # the header is sound: the rest is checked as batches are drawn
        check_media(splits, {"train": "photos.csv"}, {"image": "image"}, data_args=data_args, seed=0)


def test_sample_positions_are_the_rows_take_samples_keeps():
    dataset = Dataset.from_dict({"row": list(range(50))})
    assert take_samples(dataset, 7, seed=3)["row"] == sample_positions(50, 7, seed=3)
    assert dataset.shuffle(seed=3).select(range(7))["row"] == sample_positions(50, 7, seed=3)
    assert sample_positions(50, None, seed=3) is None and sample_positions(50, 80, seed=3) is None


def test_a_script_ends_a_refusal_with_its_message_alone(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["recipes/seq2seq.py"])
    exit_on_refusal(
        DataError, DataError("xsum.jsonl, row 2, column 'summary': the target summary is missing ('')."), None
    )
    assert (
        capsys.readouterr().err
        == "seq2seq.py: xsum.jsonl, row 2, column 'summary': the target summary is missing ('').\n"
    )


@pytest.mark.slow
def test_a_recipe_run_as_a_script_exits_1_with_the_message(tmp_path):
    data = text_rows(tmp_path, "good film,pos", "bad film,")
    command = [
        sys.executable, os.path.join(RECIPES_DIR, "text_classification.py"), "--model_name_or_path", NO_MODEL,
        "--output_dir", str(tmp_path / "out"), "--do_train", "--train_file", data, *QUIET,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"text_classification.py: {data}, row 2, column 'label': the label is missing (''); every training and "
        "evaluation row needs one."
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()

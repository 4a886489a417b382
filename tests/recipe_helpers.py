"""Shared by the recipe tests: running a recipe, tiny models saved with a locally made tokenizer or image
processor, and the real data under ../shared/data."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import string
from collections import Counter

import torch
import transformers
from tiny_models import tiny_model
from transformers import BertTokenizerFast, ViTImageProcessor


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES_DIR = os.path.join(REPO_ROOT, "recipes")
SHARED_DATA = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "data"))

# Settings every test run shares: no progress bars, no checkpoints, logs only at warning level.
QUIET = ["--disable_tqdm", "true", "--save_strategy", "no", "--report_to", "none", "--log_level", "warning"]


def shared_data(*parts: str) -> str:
    return os.path.join(SHARED_DATA, *parts)


def run_recipe(name: str, argv: list[str]) -> None:
    """Runs ``recipes/<name>.py``'s ``main(argv)`` in this process on one thread, restoring transformers'
    verbosity and torch's thread count after. Tiny models train several times faster on one thread than on
    two when other processes keep the cores busy (the threads of a parallel op wait for each other)."""
    recipe = importlib.import_module(name)
    verbosity, threads = transformers.logging.get_verbosity(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        recipe.main(argv)
    finally:
        transformers.logging.set_verbosity(verbosity)
        torch.set_num_threads(threads)


def read_json(*parts: str) -> dict:
    with open(os.path.join(*parts), encoding="utf-8") as handle:
        return json.load(handle)


def write_word_piece_vocab(path: str, texts: list[str], size: int = 400) -> str:
    """A WordPiece vocabulary of special tokens, single characters and the most common words of ``texts``."""
    words = Counter(word for text in texts for word in text.lower().split())
    characters = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + characters + [f"##{c}" for c in string.ascii_lowercase]
    tokens += [word for word, _ in words.most_common() if word not in tokens][: max(0, size - len(tokens))]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(tokens) + "\n")
    return path


def save_tiny_text_model(directory: str, texts: list[str], num_labels: int | None = 2) -> str:
    """A tiny BERT (3 blocks, hidden 32) saved with a WordPiece tokenizer made from ``texts``: a sequence
    classifier for ``num_labels``, or with ``num_labels=None`` the bare encoder, as pretrained checkpoints are."""
    os.makedirs(directory, exist_ok=True)
    vocab_file = write_word_piece_vocab(os.path.join(directory, "vocab.txt"), texts)
    # vocab=, not vocab_file=: transformers 5 ignores vocab_file= and maps every word to [UNK].
    tokenizer = BertTokenizerFast(vocab=vocab_file, do_lower_case=True, model_max_length=128)
    with open(vocab_file, encoding="utf-8") as handle:
        vocab_size = sum(1 for _ in handle)
    model = tiny_model("bert", num_labels=num_labels or 2, vocab_size=vocab_size, max_position_embeddings=128)
    (model if num_labels else model.bert).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_vit(directory: str, num_labels: int = 10, image_size: int = 32, model_type: str = "vit") -> str:
    """A tiny ViT (3 blocks, hidden 32, 8x8 patches; or another vision architecture of ``tiny_models``) saved
    with a ViT image processor."""
    os.makedirs(directory, exist_ok=True)
    tiny_model(model_type, num_labels=num_labels, image_size=image_size).save_pretrained(directory)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(directory)
    return directory


def sst2_sentences(count: int) -> list[str]:
    with open(shared_data("sst2", "train.tsv"), encoding="utf-8") as handle:
        next(handle)
        return [line.split("\t")[0] for _, line in zip(range(count), handle)]


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

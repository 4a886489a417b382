"""The README's "Which settings?" table stays readable at a glance, and its links reach BENCHMARKS.md sections."""

import os
import re


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_CELL = 160


def _read(name):
    with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as handle:
        return handle.read()


def _settings_rows():
    section = _read("README.md").split("## Which settings?", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in rows[2:]]


def _github_anchor(heading):
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_cell_of_the_settings_table_is_short():
    rows = _settings_rows()
    assert len(rows) >= 8
    assert len({len(row) for row in rows}) == 1
    long_cells = [(row[0], len(cell)) for row in rows for cell in row if len(cell) > MAX_CELL]
    assert long_cells == []


def test_the_settings_table_links_to_benchmark_sections_that_exist():
    anchors = {
        _github_anchor(line.lstrip("#")) for line in _read("BENCHMARKS.md").splitlines() if line.startswith("#")
    }
    links = [
        link for row in _settings_rows() for cell in row for link in re.findall(r"\(BENCHMARKS\.md#([^)]+)\)", cell)
    ]
    assert links, "the measured rows link to their detail"
    assert [link for link in links if link not in anchors] == []

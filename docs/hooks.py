"""MkDocs hooks (mkdocs.yml ``hooks:``): the pages stay readable on GitHub, where a link such as
``../BENCHMARKS.md`` or ``../recipes/text_classification.py`` points at the repository's file, and the site carries
those files too.

* ``on_files``: every repository file that a page links to outside ``docs/`` (BENCHMARKS.md and the figures it
  shows, ARCHITECTURE.md, CONTRIBUTING.md, the recipes' sources and Accelerate configs) joins the site under its
  repository path;
* ``on_page_markdown``: such links are rewritten to point at the copy, relative to the page;
* ``<!-- layerwise-flags -->`` in a page becomes the table of the layer-wise fields of
  ``LayerwiseArgumentsMixin`` (name, default, help), read from the source without importing it.
"""

from __future__ import annotations

import ast
import os
import posixpath
import re

from mkdocs.structure.files import File


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A Markdown link or image: ](target) with an optional #anchor.
LINK = re.compile(r"(\]\()([^)\s#]+)(#[^)\s]*)?(\))")
FLAGS_MARKER = "<!-- layerwise-flags -->"


def _outside_target(page_src_uri: str, target: str) -> str | None:
    """The repository path of a relative link that leaves docs/, or None."""
    if re.match(r"^[a-z]+:", target) or target.startswith("/"):
        return None
    path = posixpath.normpath(posixpath.join("docs", posixpath.dirname(page_src_uri), target))
    if path.startswith("docs/") or path.startswith(".."):
        return None
    return path if os.path.isfile(os.path.join(REPO_ROOT, path)) else None


def _linked_files(docs_dir: str) -> set[str]:
    """Every repository file outside docs/ that a page links to, and the images of the Markdown ones."""
    found: set[str] = set()
    for folder, _, names in os.walk(docs_dir):
        for name in names:
            if not name.endswith(".md"):
                continue
            src_uri = os.path.relpath(os.path.join(folder, name), docs_dir).replace(os.sep, "/")
            with open(os.path.join(folder, name), encoding="utf-8") as handle:
                for match in LINK.finditer(handle.read()):
                    path = _outside_target(src_uri, match.group(2))
                    if path is not None:
                        found.add(path)
    for path in [path for path in found if path.endswith(".md")]:
        with open(os.path.join(REPO_ROOT, path), encoding="utf-8") as handle:
            for match in LINK.finditer(handle.read()):
                linked = posixpath.normpath(posixpath.join(posixpath.dirname(path), match.group(2)))
                if linked.endswith((".png", ".svg", ".jpg")) and os.path.isfile(os.path.join(REPO_ROOT, linked)):
                    found.add(linked)
    return found


def on_files(files, config):
    for path in sorted(_linked_files(config["docs_dir"])):
        files.append(File(path, REPO_ROOT, config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    src_uri = page.file.src_uri
    if not os.path.isfile(os.path.join(config["docs_dir"], src_uri)):
        return markdown  # a repository page: its links are relative to the repository root already

    def rewrite(match):
        path = _outside_target(src_uri, match.group(2))
        if path is None:
            return match.group(0)
        relative = posixpath.relpath(path, posixpath.dirname(src_uri) or ".")
        return f"{match.group(1)}{relative}{match.group(3) or ''}{match.group(4)}"

    markdown = LINK.sub(rewrite, markdown)
    if FLAGS_MARKER in markdown:
        markdown = markdown.replace(FLAGS_MARKER, layerwise_flags_table())
    return markdown


def layerwise_flags_table() -> str:
    """The fields of ``LayerwiseArgumentsMixin`` as a Markdown table, from finetune_llrd/arguments.py's source."""
    with open(os.path.join(REPO_ROOT, "finetune_llrd", "arguments.py"), encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    mixin = next(
        node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "LayerwiseArgumentsMixin"
    )
    rows = ["| flag | default | what it does |", "|---|---|---|"]
    for node in mixin.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Call)):
            continue
        keywords = {keyword.arg: keyword.value for keyword in node.value.keywords}
        default = ast.unparse(keywords["default"]) if "default" in keywords else "required"
        metadata = keywords.get("metadata")
        help_node = (
            next(
                (value for key, value in zip(metadata.keys, metadata.values) if ast.literal_eval(key) == "help"), None
            )
            if isinstance(metadata, ast.Dict)
            else None
        )
        help_text = "" if help_node is None else ast.literal_eval(help_node).replace("|", "\\|")
        rows.append(f"| `--{node.target.id}` | `{default}` | {help_text} |")
    return "\n".join(rows)

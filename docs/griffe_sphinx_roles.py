"""A griffe extension (mkdocs.yml, mkdocstrings' ``extensions``): the docstrings refer to other objects with Sphinx
roles (``:class:`LayerMap```, ``:func:`~finetune_llrd.layer_map```), which Markdown would show as written. Each
becomes the object's name in code: ``LayerMap``, ``layer_map``."""

from __future__ import annotations

import re
from typing import Any

import griffe


ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|obj|exc|const):`~?([^`]+)`")


def plain_name(match: re.Match) -> str:
    target = match.group(1)
    # Sphinx shows ``~a.b.c`` as ``c``; the full path reads poorly in prose either way.
    return f"`{target.rsplit('.', 1)[-1] if '.' in target and not target.startswith('.') else target.lstrip('.')}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(plain_name, obj.docstring.value)

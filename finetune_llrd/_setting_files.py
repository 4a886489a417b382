"""Settings given on a command line as inline JSON or as the path of a JSON or YAML file (``--layer_mapping``,
``--param_group_rules``, ``--search_space``), read one way with one set of messages."""

from __future__ import annotations

import json
import os
from typing import Any


def read_setting_file(path: str, setting: str, error: type[ValueError] = ValueError) -> Any:
    """The content of a JSON file, or of a YAML file (by its extension, ``.yaml`` / ``.yml``).

    Args:
        path: the file.
        setting: the setting's name, for the messages.
        error: the exception class to raise.

    Raises:
        error: naming the setting and the file, if it is missing or not valid JSON / YAML.
    """
    if not os.path.isfile(path):
        raise error(f"{setting}: no file at {path!r}.")
    with open(path, encoding="utf-8") as handle:
        content = handle.read()
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            return yaml.safe_load(content)
        except yaml.YAMLError as parse_error:
            raise error(f"{setting}: {path} is not valid YAML: {parse_error}.") from parse_error
    try:
        return json.loads(content)
    except json.JSONDecodeError as parse_error:
        raise error(f"{setting}: {path} is not valid JSON: {parse_error}.") from parse_error


def read_setting(value: str, setting: str, expected: str, error: type[ValueError] = ValueError) -> Any:
    """A setting's value from inline JSON (text starting with ``{`` or ``[``) or from the file it names.

    Args:
        value: the text given.
        setting: the setting's name, for the messages.
        expected: what the setting holds, for the message when ``value`` is neither JSON nor a file
            (``"a JSON object such as ..."``).
        error: the exception class to raise.

    Raises:
        error: naming the setting, for invalid JSON, a missing file or an unreadable one.
    """
    if value.lstrip().startswith(("{", "[")):
        try:
            return json.loads(value)
        except json.JSONDecodeError as parse_error:
            raise error(f"{setting} is not valid JSON: {parse_error}.") from parse_error
    if not os.path.isfile(value):
        raise error(
            f"{setting} must be {expected} or the path of a JSON or YAML file holding one; {value!r} is neither."
        )
    return read_setting_file(value, setting, error)

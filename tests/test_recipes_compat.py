"""The package ``recipes/recipe_utils/`` stands where the single module ``recipe_utils.py`` stood: every name
is still imported from ``recipe_utils``, the training arguments that recipe runs pickled (``training_args.bin``,
and the same arguments in every checkpoint) still load, and the modules log under the ``recipe_utils`` logger."""

import ast
import glob
import logging
import os
import pickle
import pickletools
import shutil

import pytest
import recipe_utils
import torch
from recipe_helpers import RECIPES_DIR, REPO_ROOT


FIXTURES = os.path.normpath(os.path.join(REPO_ROOT, "..", "shared", "fixtures", "v0.1.0"))
PACKAGE_MODULES = sorted(glob.glob(os.path.join(RECIPES_DIR, "recipe_utils", "*.py")))


def _public_names(path: str) -> set[str]:
    """The public functions, classes and constants a module defines."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    names = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    names |= {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    return {name for name in names if not name.startswith("_") and name != "logger"}


def _pickled_globals(data: bytes) -> set[str]:
    """The ``module.name`` of every class or function a pickle refers to."""
    strings, found = [], set()
    for opcode, argument, _ in pickletools.genops(data):
        if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(argument)
        elif opcode.name == "STACK_GLOBAL":
            found.add(".".join(strings[-2:]))
        elif opcode.name == "GLOBAL":
            found.add(argument.replace(" ", "."))
    return found


def test_the_package_exports_every_public_name_of_its_modules():
    modules = [path for path in PACKAGE_MODULES if os.path.basename(path) != "__init__.py"]
    defined = set().union(*(_public_names(path) for path in modules))
    assert set(recipe_utils.__all__) == defined
    assert len(recipe_utils.__all__) == len(defined)
    for name in recipe_utils.__all__:
        value = getattr(recipe_utils, name)
        if callable(value):
            assert value.__module__.split(".")[0] == "recipe_utils", name


@pytest.mark.skipif(not os.path.isdir(FIXTURES), reason="../shared/fixtures is not on this machine")
def test_training_arguments_pickled_by_version_0_1_0_load(tmp_path):
    path = shutil.copy(os.path.join(FIXTURES, "args_recipe.bin"), tmp_path)
    args = torch.load(path, weights_only=False)
    assert type(args) is recipe_utils.RecipeTrainingArguments
    assert (args.learning_rate, args.layer_decay, args.weight_decay) == (1e-3, 0.8, 0.01)


def test_training_arguments_are_still_pickled_under_the_name_recipe_utils(tmp_path):
    args = recipe_utils.RecipeTrainingArguments(
        output_dir=str(tmp_path), learning_rate=1e-3, layer_decay=0.8, report_to=[], use_cpu=True
    )
    data = pickle.dumps(args)
    assert "recipe_utils.RecipeTrainingArguments" in _pickled_globals(data)
    loaded = pickle.loads(data)
    assert type(loaded) is recipe_utils.RecipeTrainingArguments
    assert (loaded.learning_rate, loaded.layer_decay) == (1e-3, 0.8)


def test_the_modules_log_under_the_recipe_utils_logger(caplog):
    loggers = [module.logger for module in vars(recipe_utils).values() if hasattr(module, "logger")]
    assert {logger.name for logger in loggers} >= {
        "recipe_utils.setup",
        "recipe_utils.metrics",
        "recipe_utils.training",
    }
    for logger in loggers:
        assert logger.name.startswith("recipe_utils.")
        with caplog.at_level(logging.WARNING, logger="recipe_utils"):
            logger.warning(f"from {logger.name}")
        assert caplog.messages[-1] == f"from {logger.name}"

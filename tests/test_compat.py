"""What users of 0.1.0 already have keeps working: pickled arguments, checkpoints, and every import path.

The files come from ``../shared/fixtures/v0.1.0`` (written by finetune_llrd 0.1.0, read-only; see its README):
the tests copy what they change.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training import training_args

import finetune_llrd
from finetune_llrd import LayerwiseRates, LLRDTrainer
from finetune_llrd._moved import MOVED_MODULES
from finetune_llrd.checkpoints import CheckpointError


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures" / "v0.1.0"
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason="../shared/fixtures/v0.1.0 is not beside the checkout"
)


# ---- arguments pickled by 0.1.0 ----


@needs_fixtures
@pytest.mark.parametrize(
    ("file", "class_name", "wrapped"),
    [
        ("args_llrd.bin", "LLRDTrainingArguments", "transformers.training_args.TrainingArguments"),
        (
            "args_seq2seq.bin",
            "LLRDSeq2SeqTrainingArguments",
            "transformers.training_args_seq2seq.Seq2SeqTrainingArguments",
        ),
        ("args_sft.bin", "LLRDSFTConfig", "trl.trainer.sft_config.SFTConfig"),
    ],
)
def test_arguments_pickled_by_0_1_0_load_with_their_values(tmp_path, file, class_name, wrapped):
    copy = tmp_path / file
    shutil.copy(FIXTURES / file, copy)
    args = torch.load(copy, weights_only=False)
    assert type(args).__name__ == class_name
    assert f"{type(args).__mro__[2].__module__}.{type(args).__mro__[2].__qualname__}" == wrapped
    assert (args.learning_rate, args.layer_decay, args.weight_decay) == (1e-3, 0.8, 0.01)
    assert args.layerwise_rates == LayerwiseRates(learning_rate=1e-3, layer_decay=0.8)
    assert args.uses_layerwise_groups is True
    assert args.report_to == [] and args.use_cpu is True
    if file == "args_seq2seq.bin":
        assert args.predict_with_generate is True


def test_arguments_pickled_while_the_composition_lived_in_arguments_py_still_load():
    import pickle

    from transformers import Seq2SeqTrainingArguments

    from finetune_llrd import layerwise_arguments

    args = layerwise_arguments(Seq2SeqTrainingArguments)(output_dir="unused", report_to=[], layer_decay=0.7)
    data = pickle.dumps(args, protocol=0)
    assert b"cfinetune_llrd.composition\n_restore_arguments\n" in data
    # 0.2.0's development named the restoring function in finetune_llrd.arguments.
    old = data.replace(
        b"cfinetune_llrd.composition\n_restore_arguments\n", b"cfinetune_llrd.arguments\n_restore_arguments\n"
    )
    with pytest.warns(DeprecationWarning, match=r"arguments\._restore_arguments moved .* finetune_llrd\.composition"):
        loaded = pickle.loads(old)
    assert type(loaded) is type(args) and loaded == args


# ---- a checkpoint written by 0.1.0 ----


def _fixture_run(tmp_path: Path, **overrides):
    """The fixture's run copied into ``tmp_path``, with a trainer set up as 0.1.0's was (see the fixtures' README)."""
    from datasets import load_from_disk
    from transformers import AutoConfig, AutoModelForSequenceClassification

    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "run", run)
    for path in run.rglob("*"):
        path.chmod(0o644 if path.is_file() else 0o755)
    checkpoint = run / "checkpoint-2"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(checkpoint))
    # The tests' usual few CPU steps (lr 1e-3, weight decay 0.01, batch 8, max_steps 4, seed 0), as the fixture ran.
    args = training_args(run, **{"layer_decay": 0.8, "logging_steps": 1, **overrides})
    trainer = LLRDTrainer(model=model, args=args, train_dataset=load_from_disk(FIXTURES / "data"))
    return trainer, checkpoint


@needs_fixtures
def test_a_checkpoint_of_0_1_0_resumes_and_continues_its_rates(tmp_path):
    trainer, checkpoint = _fixture_run(tmp_path)
    saved = json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]
    output = trainer.train(resume_from_checkpoint=str(checkpoint))
    assert output.global_step == 4
    history = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert [entry["step"] for entry in history] == [1, 2, 3, 4]
    assert history[:2] == saved  # the steps trained by 0.1.0, as it logged them
    # The fixture's run had max_steps=2: its linear schedule left every group at 0 after step 2, and the stock
    # Trainer takes step 3 at the rates the optimizer state holds. The scheduler, rebuilt for 4 steps, then gives
    # step 4 a quarter of each depth's own rate (head 1e-3, blocks x 0.8 per depth down): the ratios survive.
    base = {"lr/layer_00": 0.512e-3, "lr/layer_01": 0.64e-3, "lr/layer_02": 0.8e-3, "lr/head": 1e-3}
    for entry, factor in zip(history[2:], (0.0, 0.25)):
        assert {key: entry[key] for key in base} == pytest.approx({key: rate * factor for key, rate in base.items()})
        assert entry["learning_rate"] == pytest.approx(1e-3 * factor)  # --learning_rate as scheduled


@needs_fixtures
def test_a_checkpoint_of_0_1_0_is_refused_with_other_layerwise_settings(tmp_path):
    trainer, checkpoint = _fixture_run(tmp_path, layer_decay=0.7)
    with pytest.raises(
        CheckpointError, match=r"other layer-wise groups .*lr 0.000512 in the checkpoint, 0.000343 now"
    ):
        trainer.train(resume_from_checkpoint=str(checkpoint))


# ---- import paths ----

# The public names of each module that moved, as 0.1.0 (or 0.2.0's development, search/) defined them.
OLD_MODULE_NAMES = {
    "finetune_llrd.parameter_names": ["clean_parameter_name"],
    "finetune_llrd.block_stacks": ["BlockStackDepths", "block_stack_depths", "base_model_path", "is_norm_module"],
    "finetune_llrd.backbones": [
        "BACKBONE_ATTRIBUTE_NAMES",
        "DENSE_TASK_SUFFIXES",
        "DENSE_TASK_ENCODER_NAMES",
        "MASK_DECODER_NAME",
        "is_backbone_class",
        "find_backbone",
        "new_modules_around",
    ],
    "finetune_llrd.towers": [
        "TOWER_ATTRIBUTE_NAMES",
        "ENCODER_DECODER_NAMES",
        "TOWER_OPTIONS",
        "Towers",
        "Tower",
        "tower_block_depth",
        "validate_towers",
        "parse_layer_towers",
        "find_tower_roots",
    ],
    "finetune_llrd.layer_map": [
        "clean_parameter_name",
        "is_norm_module",
        "LayerMapping",
        "LAYER_GROUPINGS",
        "LayerMapError",
        "LayerMap",
        "validate_layer_grouping",
        "layer_map",
        "parse_layer_mapping",
    ],
    "finetune_llrd.weight_decay": ["is_norm_module", "no_weight_decay_names"],
    "finetune_llrd.rates": [
        "LayerwiseRates",
        "depth_learning_rates",
        "parse_tower_layer_decay",
        "check_finite_non_negative",
    ],
    "finetune_llrd.param_groups": [
        "format_lr_table",
        "lr_table",
        "depth_learning_rates",
        "no_weight_decay_names",
        "validate_layerwise_settings",
        "check_parameters_are_not_flattened",
        "param_groups",
    ],
    "finetune_llrd.rate_table": ["lr_table", "format_lr_table"],
    "finetune_llrd.deepspeed_checks": [
        "WARMUP_COSINE_KEEPS_RATIOS_FROM",
        "WARMUP_KEEPS_RATIOS_FROM",
        "check_deepspeed_scheduler",
    ],
    "finetune_llrd.search.runner": ["SearchOutcome", "run_search", "space_params", "trial_record"],
    "finetune_llrd.search.searcher": ["search_rates", "search_layerwise_rates", "search_metric"],
}
# Names that left a module that stayed: old module -> name -> new module.
OLD_MODULE_MOVED_NAMES = {
    "finetune_llrd.trainer": {"NonFiniteLossError": "finetune_llrd.callbacks"},
    "finetune_llrd.arguments": {
        "check_deepspeed_config": "finetune_llrd.integrations.deepspeed",
        "check_deepspeed_scheduler": "finetune_llrd.integrations.deepspeed",
        "layerwise_arguments": "finetune_llrd.composition",
        "register_composed": "finetune_llrd.composition",
        "_restore_arguments": "finetune_llrd.composition",
    },
    "finetune_llrd.integrations.sentence_transformers": {
        "LayerwiseSentenceTransformerTrainerMixin": "finetune_llrd.composition",
    },
    "finetune_llrd.integrations.trl": {"with_arguments_the_trainer_takes": "finetune_llrd.composition"},
}


def test_every_moved_module_is_listed_with_its_old_names():
    assert sorted(MOVED_MODULES) == sorted(OLD_MODULE_NAMES)


@pytest.mark.parametrize("old", sorted(OLD_MODULE_NAMES))
def test_a_moved_module_still_imports_each_name_with_a_deprecation_warning(old):
    module = importlib.import_module(old)
    for name in OLD_MODULE_NAMES[old]:
        with pytest.warns(
            DeprecationWarning, match=rf"^{old} moved in finetune_llrd 0\.2\.0: import {name} from finetune_llrd\."
        ) as caught:
            value = getattr(module, name)
        new_home = str(caught[0].message).rsplit(" from ", 1)[1].removesuffix(" instead.")
        assert getattr(importlib.import_module(new_home), name) is value


@pytest.mark.parametrize("old", sorted(OLD_MODULE_MOVED_NAMES))
def test_names_that_left_a_module_still_import_from_it(old):
    for name, new_home in OLD_MODULE_MOVED_NAMES[old].items():
        with pytest.warns(DeprecationWarning, match=rf"{old}\.{name} moved .* from {new_home} instead"):
            value = getattr(importlib.import_module(old), name)
        assert value is getattr(importlib.import_module(new_home), name)


def test_a_removed_name_still_works_with_a_deprecation_warning_that_says_what_to_use():
    from finetune_llrd import layer_map

    layers = layer_map(
        torch.nn.Sequential(torch.nn.Embedding(4, 2), torch.nn.Linear(2, 2)), mapping={"^0": 0, "^1": 2}
    )
    with pytest.warns(DeprecationWarning, match=r"finetune_llrd.layer_map.iter_depth_names was removed .*block_name"):
        from finetune_llrd.layer_map import iter_depth_names
    assert list(iter_depth_names(layers)) == [(depth, layers.block_name(depth)) for depth in range(3)]
    with pytest.warns(DeprecationWarning, match=r"LayerMap.rule was renamed .* LayerMap.method instead"):
        assert layers.rule == layers.method == "user_mapping"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("DepthRateRule", "DepthRateAdaptation"),
        ("ADAPTATION_RULES", "ADAPTATIONS"),
        ("adaptation_rule", "adaptation_from_args"),
    ],
)
def test_a_renamed_name_still_imports_with_a_deprecation_warning(old, new):
    import finetune_llrd.adaptation as adaptation

    with pytest.warns(
        DeprecationWarning, match=rf"adaptation\.{old} was renamed .* use finetune_llrd\.adaptation\.{new}"
    ):
        value = getattr(adaptation, old)
    assert value is getattr(adaptation, new)


def test_the_old_from_import_form_works_and_the_package_names_stay_functions():
    with pytest.warns(DeprecationWarning):
        from finetune_llrd.layer_map import LayerMap as OldLayerMap
        from finetune_llrd.param_groups import format_lr_table as old_format_lr_table
    from finetune_llrd.depths import LayerMap
    from finetune_llrd.groups import format_lr_table

    assert OldLayerMap is LayerMap and old_format_lr_table is format_lr_table
    # The old modules share their names with two functions of the package: those stay the functions.
    assert (
        callable(finetune_llrd.layer_map) and finetune_llrd.layer_map.__module__ == "finetune_llrd.depths.layer_maps"
    )
    assert (
        callable(finetune_llrd.param_groups)
        and finetune_llrd.param_groups.__module__ == "finetune_llrd.groups.parameter_groups"
    )


def test_every_public_name_imports_from_the_package():
    for name in finetune_llrd.__all__:
        assert getattr(finetune_llrd, name) is not None, name
    assert finetune_llrd.__all__ == sorted(finetune_llrd.__all__)


def _fresh_interpreter(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.split()


HEAVY = "('torch', 'transformers', 'transformers.trainer', 'accelerate', 'datasets')"


def test_importing_the_package_loads_nothing_heavy():
    loaded = _fresh_interpreter(
        f"import sys, finetune_llrd; print(*[m for m in {HEAVY} if m in sys.modules] or ['none'])"
    )
    assert loaded == ["none"]


def test_the_depth_and_group_functions_load_no_trainer_accelerate_or_datasets():
    loaded = _fresh_interpreter(
        "import sys; from finetune_llrd import layer_map, param_groups, LayerMap, LayerwiseRates, lr_table\n"
        f"print(*[m for m in {HEAVY} if m in sys.modules])"
    )
    assert loaded == ["torch"]


def test_every_public_name_is_defined_where_the_package_reads_it_not_served_by_a_deprecation_table():
    from finetune_llrd import _PUBLIC_NAMES

    served = [
        f"finetune_llrd.{module}.{name}"
        for name, module in _PUBLIC_NAMES.items()
        if name not in vars(importlib.import_module(f"finetune_llrd.{module}"))
    ]
    assert served == []


def test_the_version_is_the_package_metadata_of_pyproject():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert finetune_llrd.__version__ == declared
    sources = "".join(path.read_text() for path in (ROOT / "finetune_llrd").rglob("*.py"))
    assert f'"{declared}"' not in sources


def _imports_of(path: Path, package: str) -> set[str]:
    """The finetune_llrd modules a module imports, at module level or inside functions."""
    module = package + "." + ".".join(path.relative_to(ROOT / package).with_suffix("").parts)
    module = module.removesuffix(".__init__")
    here = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = here.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.startswith(package):
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(package))
    return found


def test_no_module_of_the_library_imports_one_that_imports_it_back():
    package = "finetune_llrd"
    files = dict.fromkeys((ROOT / package).rglob("*.py"))
    modules = {}
    for path in files:
        name = package + "." + ".".join(path.relative_to(ROOT / package).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    graph = {
        name: {target for target in _imports_of(path, package) if target in modules and target != name}
        for name, path in modules.items()
    }
    # A package's __init__ re-exports its modules; a module importing a sibling through the package is an edge to
    # the package, which imports everything in it: keep the edges to packages, but not the package's own.
    cycles = []

    def visit(node, stack, done):
        if node in stack:
            cycles.append(stack[stack.index(node) :] + [node])
            return
        if node in done:
            return
        for target in sorted(graph[node]):
            if node.startswith(target + ".") or target == package:
                continue  # a module importing from its own package (or the top-level package) for a re-export
            visit(target, stack + [node], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        visit(name, [], done)
    assert cycles == []


# The layers of ARCHITECTURE.md, lowest first: a module imports modules of its own layer or of a lower one only
# (at module level or inside a function). Within a layer, test_no_module_..._imports_it_back keeps the arrows one way.
LAYERS = [
    ("utilities", ["finetune_llrd._moved", "finetune_llrd._setting_files", "finetune_llrd.import_utils"]),
    ("depths", ["finetune_llrd.depths"]),
    ("groups", ["finetune_llrd.groups"]),
    ("integrations", ["finetune_llrd.integrations"]),
    (
        "step parts",
        [
            "finetune_llrd.adaptation",
            "finetune_llrd.callbacks",
            "finetune_llrd.checkpoints",
            "finetune_llrd.diagnostics",
            "finetune_llrd.launching",
            "finetune_llrd.optimizer_choice",
            "finetune_llrd.optimizers",
            "finetune_llrd.preemption",
            "finetune_llrd.reinit",
            "finetune_llrd.schedules",
            "finetune_llrd._trainer_internals",
        ],
    ),
    ("trainer wiring", ["finetune_llrd.arguments", "finetune_llrd.trainer", "finetune_llrd.model_card"]),
    ("composition", ["finetune_llrd.composition"]),
    ("applications", ["finetune_llrd.search", "finetune_llrd.cli", "finetune_llrd.plotting"]),
    ("package", ["finetune_llrd"]),
]


def _layer_of(module: str) -> int:
    matches = [
        (len(prefix), index)
        for index, (_, prefixes) in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    assert matches, f"{module} is in no layer of LAYERS: add it, and to ARCHITECTURE.md's table"
    return max(matches)[1]


def test_no_function_or_class_of_the_library_is_defined_twice():
    defined: dict[str, list[str]] = {}
    for path in sorted((ROOT / "finetune_llrd").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name != "__getattr__":
                defined.setdefault(node.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in defined.items() if len(paths) > 1} == {}


def test_every_import_of_the_library_points_to_its_own_layer_or_a_lower_one():
    package = "finetune_llrd"
    upward = []
    for path in sorted((ROOT / package).rglob("*.py")):
        name = (package + "." + ".".join(path.relative_to(ROOT / package).with_suffix("").parts)).removesuffix(
            ".__init__"
        )
        for target in sorted(_imports_of(path, package)):
            if target == package and name != package:
                continue  # `from . import x` names the module x, listed too
            if _layer_of(target) > _layer_of(name):
                upward.append(f"{name} ({LAYERS[_layer_of(name)][0]}) -> {target} ({LAYERS[_layer_of(target)][0]})")
    assert upward == []


def test_architecture_md_states_the_layers_the_test_enforces():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    table = text[text.index("| layer |") :].split("\n\n", 1)[0]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    stated = [(layer.strip(), sorted(m.strip(" `") for m in modules.split(","))) for layer, modules in rows]
    assert stated == [(layer, sorted(m.removeprefix("finetune_llrd.") for m in modules)) for layer, modules in LAYERS]

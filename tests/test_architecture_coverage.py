"""Every sequence- and image-classification model type of the installed transformers, shrunk and built
on the meta device (no memory), gets a correct layer map and correct groups."""

import re

import pytest
import transformers
from tiny_models import build_shrunk, names_at
from torch import nn
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
)

from finetune_llrd import layer_map, param_groups
from finetune_llrd.depths import base_model_path


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


# Model types that cannot be built here: they need packages that are not installed (detectron2, natten,
# timm) or their default configs cannot be instantiated by this transformers release.
NOT_BUILDABLE_HERE = {
    "cohere_compass_text",
    "esm",
    "hunyuan_v1_dense",
    "hunyuan_v1_moe",
    "layoutlmv2",
    "ministral",
    "nemotron",
    "dinat",
    "timm_wrapper",
}


def map_problems(model) -> list[str]:
    """What is wrong with a model's map, judged without the map's own internals."""
    layers = layer_map(model)
    names = [name for name, param in model.named_parameters() if param.requires_grad]
    problems = []
    if set(layers.depths) != set(names):
        problems.append("not every parameter has a depth")
    empty = [d for d in range(1, layers.num_layers + 1) if not names_at(layers, d)]
    if layers.num_layers < 1 or empty:
        problems.append(f"L={layers.num_layers}, empty depths {empty[:5]}")
    modules = dict(model.named_modules())
    base = base_model_path(modules)
    if base is not None:
        outside = [n for n in names if not n.startswith(base + ".") and layers.depths[n] != layers.head_depth]
        if outside:
            problems.append(f"head parameters below the head: {outside[:3]}")
    for path, module in modules.items():
        if isinstance(module, nn.Embedding) and not re.search(r"\.\d+(\.|$)", path):
            for name, _ in module.named_parameters(prefix=path):
                if name in layers.depths and layers.depths[name] != 0:
                    problems.append(f"embedding {name} at depth {layers.depths[name]}")
    stacks = [
        (p, m)
        for p, m in modules.items()
        if isinstance(m, nn.ModuleList)
        and len(m) > 1
        and p.startswith(base or "")
        and all(any(True for _ in c.children()) for c in m)
    ]
    if stacks:
        path, stack = max(stacks, key=lambda item: sum(p.numel() for p in item[1].parameters()))
        # A weight shared by several blocks (Zamba's shared transformer) is named at its first use only.
        owned = [[f"{path}.{i}.{n}" for n, _ in stack[i].named_parameters()] for i in range(len(stack))]
        element_depths = [
            min(layers.depths[n] for n in names)
            for names in ([n for n in element if n in layers.depths] for element in owned)
            if names
        ]
        if element_depths != sorted(element_depths) or (
            len(element_depths) > 1 and element_depths[0] == element_depths[-1]
        ):
            problems.append(f"blocks of {path} not numbered bottom to top: {element_depths[:8]}")
    groups = param_groups(model, lr=1e-3, layer_decay=0.8, weight_decay=0.01, layers=layers)
    grouped = [id(p) for g in groups for p in g["params"]]
    if len(grouped) != len(set(grouped)) or set(grouped) != {id(p) for p in model.parameters() if p.requires_grad}:
        problems.append("a parameter is in no group or in two")
    rates = sorted({(g["layer"], g["lr"]) for g in groups})
    if any(a[1] > b[1] for a, b in zip(rates, rates[1:])) or rates[-1][0] != layers.head_depth:
        problems.append("rates fall with depth")
    problems.extend(rule_problems(model, layers))
    return problems


def rule_problems(model, layers) -> list[str]:
    """With parameter rules on top (a multiple on the head, no weight decay on norms, the first parameter frozen),
    every trainable parameter but the frozen one is in exactly one group, and the groups are minimal."""
    names = [name for name, param in model.named_parameters() if param.requires_grad]
    rules = [
        {"pattern": f"^{re.escape(names[0])}$", "name": "first", "freeze": True},
        {"pattern": r"(?i)norm", "name": "norms", "weight_decay": 0.0},
        {"pattern": r"weight$|bias$", "name": "weights", "lr_scale": 2.0},
    ]
    rules = [
        rule
        for rule in rules
        if any(re.search(rule["pattern"], name) for name in names[1:]) or rule["name"] == "first"
    ]
    groups = param_groups(model, lr=1e-3, layer_decay=0.8, weight_decay=0.01, layers=layers, rules=rules)
    grouped = [name for group in groups for name in group["param_names"]]
    keys = [(g["layer"], g.get("tower"), g.get("rule"), g["weight_decay"]) for g in groups]
    problems = []
    if sorted(grouped) != sorted(names[1:]):
        problems.append("with rules, a parameter is in no group or in two (or the frozen one in a group)")
    if len(keys) != len(set(keys)) or not all(g["params"] for g in groups):
        problems.append("with rules, the groups are not minimal")
    return problems


@pytest.fixture(scope="module")
def coverage():
    results = {}
    for mapping, auto_class in (
        (MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES, transformers.AutoModelForSequenceClassification),
        (MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES, transformers.AutoModelForImageClassification),
    ):
        for model_type in mapping:
            model = build_shrunk(model_type, auto_class)
            if model is None:
                results[(auto_class.__name__, model_type)] = None
                continue
            try:
                results[(auto_class.__name__, model_type)] = map_problems(model)
            except Exception as error:  # noqa: BLE001 - reported as a failure of that model type
                results[(auto_class.__name__, model_type)] = [f"{type(error).__name__}: {error}"]
    return results


def test_every_buildable_model_type_gets_a_correct_map(coverage, capsys):
    built = {key: problems for key, problems in coverage.items() if problems is not None}
    correct = [key for key, problems in built.items() if not problems]
    with capsys.disabled():
        print(
            f"\narchitecture coverage: {len(correct)} of {len(built)} buildable model types get a correct map "
            f"({len(coverage)} in the installed transformers {transformers.__version__})"
        )
    wrong = {f"{cls}:{model_type}": problems for (cls, model_type), problems in built.items() if problems}
    assert wrong == {}
    assert len(built) >= 150


def test_only_known_model_types_cannot_be_built(coverage):
    unbuilt = {model_type for (_, model_type), problems in coverage.items() if problems is None}
    assert unbuilt <= NOT_BUILDABLE_HERE

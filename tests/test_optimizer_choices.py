"""The optimizers a user names beside the layer-wise settings: torchao's 4/8-bit AdamW, transformers' optimizer
factories, and an optimizer given in ``optimizers=`` beside settings its groups lack."""

import importlib.util
import os

import pytest
import torch
from tiny_models import tiny_model
from training import RandomTokens, training_args

from finetune_llrd import LLRDTrainer, param_groups


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rates(log_history):
    return [
        {key: value for key, value in entry.items() if key.startswith("lr/") or key == "learning_rate"}
        for entry in log_history
        if "learning_rate" in entry
    ]


def _train(output_dir, optim, resume=None, optimizer_cls_and_kwargs=None, **overrides):
    settings = dict(
        optim="adamw_torch" if optimizer_cls_and_kwargs else optim,
        layer_decay=0.5,
        logging_steps=1,
        save_strategy="steps",
        save_steps=2,
        max_steps=4,
        lr_scheduler_type="linear",
    )
    trainer = LLRDTrainer(
        model=tiny_model("bert"),
        args=training_args(output_dir, **{**settings, **overrides}),
        train_dataset=RandomTokens(),
        optimizer_cls_and_kwargs=optimizer_cls_and_kwargs,
    )
    trainer.train(resume_from_checkpoint=resume)
    return trainer


class TensorRateAdamW(torch.optim.AdamW):
    """AdamW keeping each group's rate as a float32 tensor, as torchao's 4/8-bit optimizers do (the schedulers then
    change it in place)."""

    def add_param_group(self, param_group):
        super().add_param_group(param_group)
        self.param_groups[-1]["lr"] = torch.tensor(self.param_groups[-1]["lr"], dtype=torch.float32)


# torchao's real 4- and 8-bit optimizers (about 10 s each here) beside an AdamW that keeps its rates as tensors.
@pytest.mark.parametrize("optim", ["tensor_rates", "adamw_torch_4bit", "adamw_torch_8bit"])
def test_tensor_rates_train_save_resume_and_log_the_rates_the_steps_used(tmp_path, optim):
    if optim == "tensor_rates":
        cls_and_kwargs = {"optimizer_cls_and_kwargs": (TensorRateAdamW, {"foreach": False})}
    else:
        pytest.importorskip("torchao")
        cls_and_kwargs = {}
    whole = _train(tmp_path / "whole", optim, **cls_and_kwargs)
    reference = _train(tmp_path / "reference", "adamw_torch")
    logged, expected = _rates(whole.state.log_history), _rates(reference.state.log_history)
    assert [sorted(entry) for entry in logged] == [sorted(entry) for entry in expected]
    for entry, reference_entry in zip(logged, expected):
        for key, value in entry.items():
            assert type(value) is float
            # torchao holds each rate as a float32 tensor: the rate its step used, to float32's precision.
            assert value == pytest.approx(reference_entry[key], rel=1e-7), key
    resumed = _train(tmp_path / "resumed", optim, resume=str(tmp_path / "whole" / "checkpoint-2"), **cls_and_kwargs)
    assert _rates(resumed.state.log_history) == logged
    for (name, param), resumed_param in zip(whole.model.named_parameters(), resumed.model.parameters()):
        assert torch.equal(param, resumed_param), name


# ---- transformers' optimizer factories ----


class LayerwiseFactory:
    """A factory in transformers' protocol (``factory()(model, **kwargs)``) that also takes the layer-wise groups."""

    def __call__(self, model, param_groups, lr=None, **kwargs):
        return torch.optim.SGD(param_groups, lr=lr)


class ModelOnlyFactory:
    def __call__(self, model, **kwargs):
        return torch.optim.SGD(model.parameters(), lr=0.1)


class GroupDroppingFactory:
    def __call__(self, model, param_groups, **kwargs):
        return torch.optim.SGD([{"params": [p for g in param_groups for p in g["params"]]}], lr=0.1)


def _factory_trainer(tmp_path, factory):
    return LLRDTrainer(
        model=tiny_model("bert"),
        args=training_args(tmp_path, layer_decay=0.5, max_steps=1),
        train_dataset=RandomTokens(),
        optimizer_cls_and_kwargs=(factory, {"lr": 1e-3}),
    )


def test_a_factory_that_takes_the_groups_is_composed(tmp_path):
    trainer = _factory_trainer(tmp_path, LayerwiseFactory)
    trainer.train()
    groups = trainer.optimizer.optimizer.param_groups
    assert isinstance(trainer.optimizer.optimizer, torch.optim.SGD)
    assert [group["initial_lr"] for group in groups] == [
        group["lr"] for group in param_groups(tiny_model("bert"), lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    ]


def test_a_factory_of_the_model_alone_is_refused_naming_why(tmp_path):
    with pytest.raises(ValueError, match=r"factory ModelOnlyFactory takes only the model .* layer_decay=0.5"):
        _factory_trainer(tmp_path, ModelOnlyFactory).create_optimizer()
    with pytest.raises(ValueError, match=r"factory GroupDroppingFactory .* has no group carrying a depth"):
        _factory_trainer(tmp_path, GroupDroppingFactory).create_optimizer()


# ---- optimizers= beside settings its groups lack ----


@pytest.mark.parametrize(
    "settings, built_with, message",
    [
        (
            {"layer_decay": 0.5, "param_group_rules": [{"pattern": "classifier", "lr_scale": 10}]},
            {},
            r"does not follow learning_rate=0.001, weight_decay=0.01, layer_decay=0.5, param_group_rules=.*: classifier.bias at lr 0.001 in it, 0.01 by",
        ),
        (
            {"layer_decay": 0.5, "param_group_rules": [{"pattern": "embeddings", "freeze": True}]},
            {},
            r"bert.embeddings.LayerNorm.bias trains in it \(the settings give it no group: frozen\)",
        ),
        (
            {"layer_decay": 0.8},
            {},
            r"does not follow .*layer_decay=0.8: bert.embeddings.LayerNorm.bias at lr 6.25e-05",
        ),
        (
            {"layer_decay": 0.5, "learning_rate": 2e-3},
            {},
            r"learning_rate=0.002, .*bert.embeddings.LayerNorm.bias at lr 6.25e-05 in it, 0.000125 by",
        ),
        (
            {"layer_decay": 0.5, "weight_decay": 0.1},
            {},
            r"weight_decay=0.1, .*bert.embeddings.position_embeddings.weight at weight_decay 0.01 in it, 0.1 by",
        ),
    ],
)
def test_an_optimizer_beside_settings_its_groups_lack_is_refused_naming_them(tmp_path, settings, built_with, message):
    model = tiny_model("bert")
    optimizer = torch.optim.AdamW(param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01, **built_with))
    with pytest.raises(ValueError, match=message):
        LLRDTrainer(model=model, args=training_args(tmp_path, **settings), optimizers=(optimizer, None))


def test_an_optimizer_over_some_depths_logs_the_blocks_as_blocks(tmp_path):
    model = tiny_model("bert")
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith("bert.encoder.layer.1"))
    args = training_args(tmp_path, layer_decay=0.5, max_steps=1, logging_steps=1)
    optimizer = torch.optim.AdamW(param_groups(model, rates=args.layerwise_rates, weight_decay=args.weight_decay))
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens(), optimizers=(optimizer, None))
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "learning_rate" in entry][0]
    assert sorted(key for key in logged if key.startswith("lr/")) == ["lr/layer_02"]


# ---- every --optim value ----


def test_the_optimizers_page_is_what_building_each_optimizer_gives():
    """docs/assets/optimizers-table.txt (included by docs/optimizers.md) is generated: rewrite it with
    ``python scripts/optimizers_table.py`` when this fails."""
    spec = importlib.util.spec_from_file_location(
        "optimizers_table", os.path.join(REPO_ROOT, "scripts", "optimizers_table.py")
    )
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    with open(table.TABLE, encoding="utf-8") as handle:
        assert table.optimizers_table() == handle.read()
    with open(os.path.join(REPO_ROOT, "docs", "optimizers.md"), encoding="utf-8") as handle:
        assert '--8<-- "assets/optimizers-table.txt"' in handle.read()


@pytest.mark.parametrize(
    "optim, package",
    [
        ("schedule_free_adamw", "schedulefree"),
        ("lion_32bit", "bitsandbytes"),
        ("paged_adamw_8bit", "bitsandbytes"),
        ("adafactor", None),
        ("sgd", None),
        ("stable_adamw", "optimi"),
    ],
)
def test_these_optimizers_train_with_every_group_at_its_depths_rate(tmp_path, optim, package):
    if package is not None:
        pytest.importorskip(package)
    model = tiny_model("bert")
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    trainer = LLRDTrainer(
        model=model,
        args=training_args(tmp_path, optim=optim, layer_decay=0.5, max_steps=1, lr_scheduler_type="constant"),
        train_dataset=RandomTokens(),
    )
    trainer.train()
    groups = trainer.optimizer.optimizer.param_groups
    expected = param_groups(tiny_model("bert"), lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    assert [(group["layer"], group["param_names"]) for group in groups] == [
        (group["layer"], group["param_names"]) for group in expected
    ]
    assert [float(group["initial_lr"]) for group in groups] == [group["lr"] for group in expected]
    assert not torch.equal(dict(model.named_parameters())["classifier.weight"], before["classifier.weight"])


def test_galore_is_refused_saying_why(tmp_path):
    pytest.importorskip("galore_torch")
    trainer = LLRDTrainer(
        model=tiny_model("bert"),
        args=training_args(
            tmp_path, optim="galore_adamw", layer_decay=0.5, optim_target_modules=["attention", "intermediate"]
        ),
    )
    with pytest.raises(ValueError, match="--optim galore_adamw builds its own parameter groups, so layer-wise"):
        trainer.create_optimizer()

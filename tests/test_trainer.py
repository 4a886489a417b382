"""LLRDTrainer: the optimizer it builds, the schedules, the logs."""

import glob

import pytest
import torch
from tiny_models import tiny_model
from training import RandomTokens, training_args
from transformers import HfArgumentParser, Trainer, TrainingArguments

from finetune_llrd import LLRDTrainer, LLRDTrainingArguments, param_groups
from finetune_llrd.diagnostics import depth_learning_rate_logs
from finetune_llrd.trainer import _split_by_device_mesh


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


def _args(tmp_path, cls=LLRDTrainingArguments, **overrides):
    return training_args(tmp_path / "out", cls=cls, **overrides)


def _groups_summary(optimizer):
    return [(tuple(id(p) for p in g["params"]), g["lr"], g["weight_decay"]) for g in optimizer.param_groups]


def test_defaults_build_exactly_the_stock_optimizer(tmp_path):
    model = tiny_model("bert")
    stock = Trainer(model=model, args=_args(tmp_path, cls=TrainingArguments))
    ours = LLRDTrainer(model=model, args=_args(tmp_path))
    assert not ours.args.uses_layerwise_groups
    stock_optimizer, our_optimizer = stock.create_optimizer(), ours.create_optimizer()
    assert type(our_optimizer) is type(stock_optimizer)
    assert _groups_summary(our_optimizer) == _groups_summary(stock_optimizer)
    assert our_optimizer.defaults == stock_optimizer.defaults


def test_layerwise_optimizer_has_the_param_groups(tmp_path):
    model = tiny_model("bert")
    trainer = LLRDTrainer(model=model, args=_args(tmp_path, layer_decay=0.5))
    optimizer = trainer.create_optimizer()
    expected = param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    assert [(g["layer"], g["lr"], g["weight_decay"], g["param_names"]) for g in optimizer.param_groups] == [
        (g["layer"], g["lr"], g["weight_decay"], g["param_names"]) for g in expected
    ]
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["betas"] == (0.9, 0.999)
    assert [row["lr"] for row in trainer.layerwise_lr_table()] == [1e-3 * 0.5**k for k in (4, 3, 2, 1, 0)]


@pytest.mark.parametrize(
    "optim, optimizer_class",
    [("adamw_torch", "AdamW"), ("adamw_torch_fused", "AdamW"), ("adafactor", "Adafactor"), ("sgd", "SGD")],
)
def test_stock_optimizer_choices_keep_the_groups_and_train(tmp_path, optim, optimizer_class):
    model = tiny_model("bert")
    trainer = LLRDTrainer(
        model=model, args=_args(tmp_path, layer_decay=0.5, optim=optim, max_steps=2), train_dataset=RandomTokens()
    )
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.train()
    assert type(trainer.optimizer.optimizer).__name__ == optimizer_class
    assert [g["initial_lr"] for g in trainer.optimizer.param_groups] == [
        g["lr"] for g in param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    ]
    if optim == "adamw_torch_fused":
        assert trainer.optimizer.optimizer.defaults["fused"] is True
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert "bert.embeddings.word_embeddings.weight" in changed and "classifier.weight" in changed


def test_optimizer_that_brings_its_own_groups_is_refused(tmp_path):
    def muon_like_factory():
        return lambda model, **kwargs: torch.optim.SGD(model.parameters(), lr=0.1)

    trainer = LLRDTrainer(
        model=tiny_model("bert"),
        args=_args(tmp_path, layer_decay=0.5),
        optimizer_cls_and_kwargs=(muon_like_factory, {}),
    )
    with pytest.raises(ValueError, match="builds its own parameter groups"):
        trainer.create_optimizer()


@pytest.mark.parametrize(
    "schedule, kwargs",
    [
        ("linear", {}),
        ("cosine", {}),
        ("cosine_with_min_lr", {"min_lr_rate": 0.1}),
        ("constant_with_warmup", {}),
    ],
)
def test_schedules_keep_the_ratios_between_depths(tmp_path, schedule, kwargs):
    model = tiny_model("bert")
    args = _args(tmp_path, layer_decay=0.5, lr_scheduler_type=schedule, lr_scheduler_kwargs=kwargs, warmup_steps=3)
    trainer = LLRDTrainer(model=model, args=args)
    trainer.create_optimizer_and_scheduler(num_training_steps=20)
    initial = [g["initial_lr"] for g in trainer.optimizer.param_groups]
    assert initial == [g["lr"] for g in param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)]
    head_index = len(initial) - 1
    for _ in range(12):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        current = [g["lr"] for g in trainer.optimizer.param_groups]
        factor = current[head_index] / initial[head_index]
        assert current == pytest.approx([rate * factor for rate in initial], rel=1e-12, abs=0)
    assert 0 < factor < 1 or schedule == "constant_with_warmup"


def test_every_depth_rate_is_logged(tmp_path):
    model = tiny_model("bert")
    args = _args(
        tmp_path, layer_decay=0.5, logging_steps=1, lr_scheduler_type="linear", max_steps=4, report_to=["tensorboard"]
    )
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens())
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 4
    for entry in logs:
        keys = sorted(k for k in entry if k.startswith("lr/"))
        assert keys == ["lr/head", "lr/layer_00", "lr/layer_01", "lr/layer_02", "lr/layer_03"]
        schedule = 1 - (entry["step"] - 1) / 4
        # The stock "learning_rate" would be group 0's (the embeddings'): it is --learning_rate as scheduled.
        assert entry["learning_rate"] == pytest.approx(1e-3 * schedule, rel=1e-12)
        assert entry["lr/head"] == pytest.approx(1e-3 * schedule, rel=1e-12)
        for depth in range(4):
            assert entry[f"lr/layer_{depth:02d}"] == pytest.approx(1e-3 * 0.5 ** (4 - depth) * schedule, rel=1e-12)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(glob.glob(str(tmp_path / "out" / "**" / "events.out.tfevents*"), recursive=True)[0])
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/lr/head", "train/lr/layer_00", "train/lr/layer_03"} <= tags
    assert [e.value for e in events.Scalars("train/lr/head")] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4], rel=1e-6)


def test_log_keys_widen_for_deep_models():
    groups = [{"layer": d, "lr": float(d)} for d in range(102)]
    logs = depth_learning_rate_logs(groups, head_depth=101)
    assert "lr/layer_000" in logs and "lr/layer_100" in logs and logs["lr/head"] == 101.0
    assert depth_learning_rate_logs([{"lr": 1.0}]) == {}


def test_model_init_builds_groups_for_each_fresh_model(tmp_path):
    created = []

    def model_init():
        created.append(tiny_model("llama", seed=len(created)))
        return created[-1]

    trainer = LLRDTrainer(
        model_init=model_init, args=_args(tmp_path, layer_decay=0.5, max_steps=1), train_dataset=RandomTokens()
    )
    trainer.train()
    trainer.train()
    assert len(created) == 3  # one at construction, one per train()
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {
        id(p) for p in created[-1].parameters()
    }


def test_hyperparameter_search_tries_layer_decay(tmp_path):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    seen = []

    class Recording(LLRDTrainer):
        def create_optimizer(self, model=None):
            optimizer = super().create_optimizer(model)
            seen.append((self.args.layer_decay, [g["lr"] for g in optimizer.param_groups]))
            return optimizer

    trainer = Recording(
        model_init=lambda: tiny_model("bert"),
        args=_args(tmp_path, layer_decay=0.9, max_steps=1, eval_strategy="no"),
        train_dataset=RandomTokens(),
        eval_dataset=RandomTokens(size=8),
    )
    trainer.hyperparameter_search(
        hp_space=lambda trial: {"layer_decay": trial.suggest_categorical("layer_decay", [0.5, 0.25])},
        backend="optuna",
        n_trials=2,
        compute_objective=lambda metrics: metrics.get("eval_loss", 0.0),
    )
    decays = [decay for decay, _ in seen]
    assert set(decays) <= {0.5, 0.25} and len(decays) == 2
    for decay, rates in seen:
        head = rates[-1]
        assert rates[0] == pytest.approx(head * decay**4, rel=1e-12)


def test_hf_argument_parser_reads_the_fields():
    (args,) = HfArgumentParser(LLRDTrainingArguments).parse_args_into_dataclasses(
        [
            "--output_dir",
            "out",
            "--layer_decay",
            "0.8",
            "--head_learning_rate",
            "1e-3",
            "--embedding_learning_rate",
            "0",
            "--layer_decay_min_scale",
            "0.1",
            "--layer_grouping",
            "stage",
            "--layer_mapping",
            '{"^stem\\\\.": 0}',
        ]
    )
    assert (args.layer_decay, args.head_learning_rate, args.embedding_learning_rate) == (0.8, 1e-3, 0.0)
    assert (args.layer_decay_min_scale, args.layer_grouping, args.layer_mapping) == (0.1, "stage", {"^stem\\.": 0})
    assert args.uses_layerwise_groups


def test_mixed_device_meshes_get_separate_groups(tmp_path):
    import torch.distributed as dist
    from torch.distributed.device_mesh import DeviceMesh
    from torch.distributed.tensor import Replicate, distribute_tensor

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        mesh_a, mesh_b = DeviceMesh("cpu", [0], mesh_dim_names=("a",)), DeviceMesh("cpu", [0], mesh_dim_names=("b",))
        on_a = torch.nn.Parameter(distribute_tensor(torch.ones(2, 2), mesh_a, [Replicate()]))
        on_b = torch.nn.Parameter(distribute_tensor(torch.ones(2, 2), mesh_b, [Replicate()]))
        plain = torch.nn.Parameter(torch.ones(2))
        groups = [
            {
                "params": [on_a, plain, on_b],
                "param_names": ["a", "plain", "b"],
                "lr": 0.5,
                "weight_decay": 0.0,
                "layer": 1,
            }
        ]
        split = _split_by_device_mesh(groups)
        assert sorted(tuple(g["param_names"]) for g in split) == [("a",), ("b",), ("plain",)]
        assert all(g["lr"] == 0.5 and g["layer"] == 1 for g in split)
        assert _split_by_device_mesh([{**groups[0], "params": [plain], "param_names": ["plain"]}])[0][
            "param_names"
        ] == ["plain"]
    finally:
        dist.destroy_process_group()

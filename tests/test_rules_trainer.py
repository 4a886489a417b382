"""Parameter rules through the trainers (logs, freezing, model card, resume), and the paths that used to drop the
layer-wise settings in silence: an optimizer passed in, a create_optimizer of the user's, the logged learning_rate."""

import pytest
import torch
from tiny_models import tiny_model
from training import RandomTokens, training_args
from transformers import Trainer

from finetune_llrd import LLRDTrainer, layerwise_trainer, param_groups
from finetune_llrd.checkpoints import CheckpointError
from finetune_llrd.model_card import layerwise_model_card_section


pytestmark = pytest.mark.core  # also run at the floor of the core dependencies (.ci/run)


RULES = [
    {"pattern": r"^classifier\.", "name": "classifier", "lr_scale": 10},
    {"pattern": r"embeddings\.position_embeddings", "freeze": True},
]


def _args(tmp_path, **overrides):
    return training_args(tmp_path / "out", **overrides)


def test_rules_train_log_under_their_name_and_freeze(tmp_path):
    model = tiny_model("bert", num_labels=2)
    args = _args(tmp_path, layer_decay=0.5, logging_steps=1, max_steps=4, param_group_rules=RULES)
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens(num_labels=2))
    frozen = model.bert.embeddings.position_embeddings.weight
    before = frozen.detach().clone()
    trainer.train()
    assert frozen.requires_grad is False and torch.equal(frozen, before)
    grouped = {name for group in trainer.optimizer.param_groups for name in group["param_names"]}
    assert "bert.embeddings.position_embeddings.weight" not in grouped
    assert grouped == {name for name, p in model.named_parameters() if p.requires_grad}
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    for entry in logs:
        schedule = 1 - (entry["step"] - 1) / 4
        assert entry["lr/classifier/head"] == pytest.approx(1e-2 * schedule, rel=1e-12)
        assert entry["lr/head"] == pytest.approx(1e-3 * schedule, rel=1e-12)  # the pooler, no rule
        assert entry["lr/layer_00"] == pytest.approx(1e-3 * 0.5**4 * schedule, rel=1e-12)
        assert entry["learning_rate"] == pytest.approx(1e-3 * schedule, rel=1e-12)
    card = layerwise_model_card_section(trainer)
    assert "- param_group_rules: [{'pattern': '^classifier\\\\.', 'name': 'classifier', 'lr_scale': 10}" in card
    assert "| 4 | `head [classifier]` | 66 | 2 | 1.000e-02 | 0.01 |" in card


def test_a_checkpoint_built_with_other_rules_is_refused_with_the_differences(tmp_path):
    dataset = RandomTokens(num_labels=2)
    args = _args(
        tmp_path, layer_decay=0.5, max_steps=2, save_strategy="steps", save_steps=2, param_group_rules=RULES[:1]
    )
    LLRDTrainer(model=tiny_model("bert", num_labels=2), args=args, train_dataset=dataset).train()
    changed = [{**RULES[0], "lr_scale": 5}]
    args = _args(tmp_path, layer_decay=0.5, max_steps=4, param_group_rules=changed)
    trainer = LLRDTrainer(model=tiny_model("bert", num_labels=2), args=args, train_dataset=dataset)
    with pytest.raises(CheckpointError, match=r"depth 4\): lr 0\.01 in the checkpoint, 0\.005 now.*param_group_rules"):
        trainer.train(resume_from_checkpoint=True)
    args = _args(tmp_path, layer_decay=0.5, max_steps=4)
    trainer = LLRDTrainer(model=tiny_model("bert", num_labels=2), args=args, train_dataset=dataset)
    with pytest.raises(CheckpointError, match=r"the checkpoint has 12 parameter groups, this run 10"):
        trainer.train(resume_from_checkpoint=True)


# ---- an optimizer from outside ----


def test_a_plain_optimizer_beside_layerwise_settings_is_refused_naming_them(tmp_path):
    model = tiny_model("bert")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.raises(
        ValueError,
        match=r"AdamW, 1 parameter groups without a depth\) would train with none of layer_decay=0\.8, param_group_rules=",
    ):
        LLRDTrainer(
            model=model,
            args=_args(tmp_path, layer_decay=0.8, param_group_rules=RULES[:1]),
            optimizers=(optimizer, None),
        )
    # Set after the trainer was built: refused when training builds the optimizer.
    trainer = LLRDTrainer(model=model, args=_args(tmp_path, layer_decay=0.8), train_dataset=RandomTokens())
    trainer.optimizer = optimizer
    with pytest.raises(ValueError, match="would train with none of layer_decay=0.8"):
        trainer.train()


def test_an_optimizer_over_param_groups_is_accepted_and_the_card_describes_it(tmp_path):
    model = tiny_model("bert")
    args = _args(tmp_path, layer_decay=0.5, max_steps=2)
    optimizer = torch.optim.AdamW(param_groups(model, rates=args.layerwise_rates, weight_decay=args.weight_decay))
    trainer = LLRDTrainer(model=model, args=args, train_dataset=RandomTokens(), optimizers=(optimizer, None))
    trainer.train()
    assert trainer.optimizer.optimizer is optimizer
    assert [row["lr"] for row in trainer.layerwise_lr_table()] == [1e-3 * 0.5**k for k in (4, 3, 2, 1, 0)]


def test_an_optimizer_without_layerwise_settings_is_the_one_the_card_describes(tmp_path):
    model = tiny_model("bert")
    optimizer = torch.optim.SGD(
        [{"params": model.bert.parameters(), "lr": 1e-4}, {"params": model.classifier.parameters(), "lr": 1e-2}]
    )
    trainer = LLRDTrainer(
        model=model, args=_args(tmp_path, max_steps=1), train_dataset=RandomTokens(), optimizers=(optimizer, None)
    )
    trainer.train()
    card = layerwise_model_card_section(trainer)
    assert (
        "The optimizer was given to the trainer (`optimizers=`): SGD with 2 parameter groups at the base rates 1.000e-04, 1.000e-02."
        in card
    )
    assert "The optimizer was the stock one" not in card


# ---- a create_optimizer of the user's ----


class ReplacingTrainer(Trainer):
    def create_optimizer(self, model=None):
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.args.learning_rate)
        return self.optimizer


class GuardedTrainer(Trainer):
    def create_optimizer(self, model=None):
        if self.optimizer is None:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.args.learning_rate)
        return super().create_optimizer(model)


class RecordingLLRDTrainer(LLRDTrainer):
    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        self.recorded = [group["lr"] for group in optimizer.param_groups]
        return optimizer


class ReplacingLLRDTrainer(LLRDTrainer):
    def create_optimizer(self, model=None):
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.args.learning_rate)
        return self.optimizer


@pytest.mark.parametrize("trainer_cls", [ReplacingTrainer, GuardedTrainer])
def test_a_wrapped_trainer_with_its_own_create_optimizer_is_refused(tmp_path, trainer_cls):
    composed = layerwise_trainer(trainer_cls)
    with pytest.raises(
        ValueError,
        match=rf"test_rules_trainer\.{trainer_cls.__name__} defines its own create_optimizer, and layer_decay=0\.8 are set: .*override build_param_groups",
    ):
        composed(model=tiny_model("bert"), args=_args(tmp_path, layer_decay=0.8))
    # Without layer-wise settings nothing is dropped: the user's optimizer trains.
    trainer = composed(model=tiny_model("bert"), args=_args(tmp_path, max_steps=1), train_dataset=RandomTokens())
    trainer.train()
    assert type(trainer.optimizer.optimizer) is torch.optim.SGD


def test_a_subclass_of_llrdtrainer_may_compose_with_its_create_optimizer_but_not_replace_it(tmp_path):
    trainer = RecordingLLRDTrainer(
        model=tiny_model("bert"), args=_args(tmp_path, layer_decay=0.5, max_steps=1), train_dataset=RandomTokens()
    )
    trainer.train()
    assert trainer.recorded == [
        g["lr"] for g in param_groups(tiny_model("bert"), lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    ]
    trainer = ReplacingLLRDTrainer(
        model=tiny_model("bert"), args=_args(tmp_path, layer_decay=0.5, max_steps=1), train_dataset=RandomTokens()
    )
    with pytest.raises(
        ValueError,
        match=r"ReplacingLLRDTrainer\.create_optimizer returned has no layer-wise groups, so layer_decay=0\.5",
    ):
        trainer.train()


# ---- finetune-llrd inspect ----


def test_inspect_builds_the_head_the_config_names(tmp_path):
    from finetune_llrd.cli import load_inspected_model as load_model

    config = tiny_model("llama").config
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(tmp_path)
    assert type(load_model(str(tmp_path), from_config=True)).__name__ == "LlamaForCausalLM"
    assert (
        type(load_model(str(tmp_path), from_config=True, task="sequence-classification")).__name__
        == "LlamaForSequenceClassification"
    )
    config.architectures = ["LlamaModel"]  # a bare base model: a new classification head, as before
    config.save_pretrained(tmp_path)
    assert type(load_model(str(tmp_path), from_config=True)).__name__ == "LlamaForSequenceClassification"


def test_inspect_takes_param_group_rules(tmp_path, capsys):
    from finetune_llrd.cli import main

    tiny_model("bert", num_labels=2).save_pretrained(tmp_path)
    assert (
        main(
            [
                "inspect",
                str(tmp_path),
                "--layer_decay",
                "0.5",
                "--learning_rate",
                "1e-3",
                "--param_group_rules",
                '[{"pattern": "^classifier", "name": "classifier", "lr_scale": 10}]',
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].split() == ["4", "head", "[classifier]", "66", "2", "1.000e-02", "0.01"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["/no/such/model"], "finetune-llrd inspect: /no/such/model: no such model folder."),
        (["{empty}"], "finetune-llrd inspect: {empty} holds no config.json: point at a model folder or a Hub id."),
        (
            ["{bert}", "--layer_mapping", '{"^classifier": 9}'],
            "finetune-llrd inspect: Depth 9 for 'classifier.weight' is outside 0..4 (L=3 blocks, head at L+1).",
        ),
        (
            ["{bert}", "--param_group_rules", '[{"pattern": "projector", "lr_scale": 10}]'],
            "finetune-llrd inspect: Parameter rule 'projector' matches no trainable parameter",
        ),
    ],
)
def test_inspect_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    from finetune_llrd.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    bert = tmp_path / "bert"
    tiny_model("bert", num_labels=2).save_pretrained(bert)

    def filled(text):
        return text.replace("{empty}", str(empty)).replace("{bert}", str(bert))

    capsys.readouterr()  # what saving the tiny model printed
    with pytest.raises(SystemExit) as exited:  # parser.exit: a message, no traceback
        main(["inspect", *map(filled, argv), "--from_config"])
    assert exited.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(filled(message))

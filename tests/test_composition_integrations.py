"""The one extension point: an integration registered by a test composes a Trainer with nothing else changed, and
``finetune_llrd.import_utils`` answers which library a class comes from."""

import dataclasses
import functools

import pytest
import torch
from tiny_models import tiny_model
from training import training_args
from transformers import Trainer, TrainingArguments

from finetune_llrd import LayerwiseTrainerMixin, LLRDTrainingArguments, layerwise_arguments, layerwise_trainer
from finetune_llrd.composition import ConvertedArgumentsMixin
from finetune_llrd.import_utils import comes_from, is_available, is_trl_available
from finetune_llrd.integrations import integrations_for, register_integration, unregister_integration


class ToyTrainer(Trainer):
    """A library's trainer: takes its own arguments class and hands its own groups over (as a marker here)."""

    def __init__(self, model=None, args: "ToyArguments | None" = None, **kwargs):
        super().__init__(model=model, args=args, **kwargs)


@dataclasses.dataclass
class ToyArguments(TrainingArguments):
    toy_option: int = 7


class ToyTrainerMixin:
    """The toy library's hooks: every layer-wise group is marked."""

    def absorb_optimizer_groups(self, groups, optimizer_kwargs):
        groups = [{**group, "toy": True} for group in groups]
        return super().absorb_optimizer_groups(groups, optimizer_kwargs)


@pytest.fixture
def toy_integration():
    register_integration(
        "toy",
        matches=lambda cls: isinstance(cls, type) and issubclass(cls, ToyTrainer),
        trainer_mixin=ToyTrainerMixin,
        arguments_class=lambda trainer_cls: ToyArguments,
    )
    yield
    unregister_integration("toy")


def test_a_registered_integration_composes_a_trainer_with_nothing_else_changed(tmp_path, toy_integration):
    composed = layerwise_trainer(ToyTrainer)
    assert composed.__bases__ == (ConvertedArgumentsMixin, ToyTrainerMixin, LayerwiseTrainerMixin, ToyTrainer)
    args = training_args(tmp_path, layer_decay=0.5, max_steps=1)
    trainer = composed(model=tiny_model("bert"), args=args)
    # The arguments the toy trainer takes, with the layer-wise values copied over.
    assert type(trainer.args) is layerwise_arguments(ToyArguments)
    assert (trainer.args.layer_decay, trainer.args.toy_option) == (0.5, 7)
    groups = trainer.create_optimizer().param_groups
    assert all(group["toy"] for group in groups)
    # tiny BERT: 3 blocks, so depths 0..4 at 1e-3 * 0.5 ** (4 - d).
    assert {group["layer"]: group["lr"] for group in groups} == {
        depth: 1e-3 * 0.5 ** (4 - depth) for depth in range(5)
    }


def test_a_trainer_no_integration_owns_gets_the_generic_mixin_alone(toy_integration):
    class Plain(Trainer):
        pass

    assert layerwise_trainer(Plain).__bases__ == (LayerwiseTrainerMixin, Plain)
    assert [integration.name for integration in integrations_for(ToyTrainer)] == ["toy"]
    assert integrations_for(Plain) == []


class ToyPickledTrainer(Trainer):
    """A library trainer whose composition a fresh process makes again by name."""


def test_an_integrations_known_classes_are_composed_when_asked_for_by_name():
    import finetune_llrd.composition

    register_integration("toy_pickled", matches=lambda cls: False, known_classes=((__name__, "ToyPickledTrainer"),))
    try:
        composed = finetune_llrd.composition.LLRDToyPickledTrainer
    finally:
        unregister_integration("toy_pickled")
    assert composed.__bases__ == (LayerwiseTrainerMixin, ToyPickledTrainer)


def test_comes_from_reads_the_module_path_of_a_class_its_bases_an_instance_or_a_partial():
    from transformers import Seq2SeqTrainer

    class Mine(Seq2SeqTrainer):
        pass

    assert comes_from(Seq2SeqTrainer, "transformers") and comes_from(Mine, "transformers")
    assert not comes_from(Mine, "trl") and not comes_from(Mine, "transform")
    assert comes_from(torch.optim.AdamW, "torch.optim") and comes_from(torch.nn.Linear(1, 1), "torch")
    assert comes_from(functools.partial(torch.optim.SGD, lr=0.1), "torch")
    assert comes_from(torch.optim.AdamW, "torch.optim") and not comes_from(torch.optim.AdamW, "torch.nn")
    assert is_available("torch") and not is_available("no_such_library_anywhere")
    assert is_trl_available() is True  # the test extra installs it
    assert LLRDTrainingArguments.__module__ == "finetune_llrd.arguments"


def test_the_optimizer_hook_runs_for_the_library_the_optimizer_class_comes_from(monkeypatch):
    import finetune_llrd.integrations.bitsandbytes as bnb_integration
    from finetune_llrd.integrations import prepare_for_optimizer

    kept = []
    monkeypatch.setattr(bnb_integration, "keep_embeddings_in_32_bit", kept.append)
    eight_bit = type("AdamW8bit", (torch.optim.AdamW,), {"__module__": "bitsandbytes.optim.adamw"})
    model = torch.nn.Embedding(4, 2)
    prepare_for_optimizer(model, eight_bit, {"optim_bits": 8})
    prepare_for_optimizer(model, eight_bit, {"optim_bits": 32})
    prepare_for_optimizer(model, torch.optim.AdamW, {"optim_bits": 8})
    assert kept == [model]

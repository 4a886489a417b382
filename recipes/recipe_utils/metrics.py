"""The metrics of an evaluation: `evaluate` metrics, computed locally (scikit-learn, scipy) where the Hub is out
of reach, and the accuracy every classifier reports."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import transformers


logger = logging.getLogger(__name__)


def load_metric(
    name: str, config_name: str | None = None, local: Callable[..., dict[str, Any]] | None = None
) -> Callable[..., dict[str, float]]:
    """``compute(predictions=..., references=...)`` of an `evaluate` metric, or of the same metric computed locally.

    `evaluate` fetches its metric scripts from the Hub. Where that fails (no network, ``HF_HUB_OFFLINE``),
    the metric is computed with scikit-learn and scipy exactly as the `evaluate` script defines it, or by
    ``local``, a recipe's own implementation with the script's arguments and results.

    Args:
        name: "glue" (with a GLUE task as ``config_name``), "accuracy" or "mse"; any metric with ``local``.
        config_name: the GLUE task.
        local: the metric computed here, for a metric :func:`local_metric` does not implement.

    Returns:
        A function of ``predictions`` and ``references`` returning ``{metric name: value}``.
    """
    import evaluate

    try:
        metric = evaluate.load(name, config_name, keep_in_memory=True)
    except Exception as error:  # noqa: BLE001 - a failed Hub fetch surfaces as many exception types
        logger.warning(
            f"evaluate could not load the {name!r} metric ({type(error).__name__}: {error}); computing it with "
            f"{'this recipe' if local else 'scikit-learn and scipy'}, as the evaluate metric defines it."
        )
        return local or local_metric(name, config_name)
    logger.info(f"Computing the {name!r} metric with evaluate.")
    return metric.compute


def local_metric(name: str, config_name: str | None = None) -> Callable[..., dict[str, float]]:
    """The metric of :func:`load_metric` computed here, with the definitions of evaluate's scripts: accuracy
    ``mean(predictions == references)``, F1 of the positive class (scikit-learn ``f1_score``), Matthews
    correlation (``matthews_corrcoef``), Pearson and Spearman correlation (scipy), mean squared error.

    Raises:
        ValueError: for a metric without a local implementation.
    """
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score, matthews_corrcoef

    def accuracy(predictions, references):
        return {"accuracy": float((np.asarray(predictions) == np.asarray(references)).mean())}

    def accuracy_and_f1(predictions, references):
        return {**accuracy(predictions, references), "f1": float(f1_score(y_true=references, y_pred=predictions))}

    def matthews(predictions, references):
        return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}

    def pearson_and_spearman(predictions, references):
        return {
            "pearson": float(pearsonr(predictions, references)[0]),
            "spearmanr": float(spearmanr(predictions, references)[0]),
        }

    def mse(predictions, references):
        return {"mse": float(((np.asarray(predictions) - np.asarray(references)) ** 2).mean())}

    if name == "accuracy":
        return accuracy
    if name == "mse":
        return mse
    if name == "glue":
        glue = {"cola": matthews, "stsb": pearson_and_spearman, "mrpc": accuracy_and_f1, "qqp": accuracy_and_f1}
        if config_name in glue:
            return glue[config_name]
        if config_name in ("sst2", "mnli", "mnli_mismatched", "mnli_matched", "qnli", "rte", "wnli", "hans"):
            return accuracy
    raise ValueError(f"No local implementation of the metric {name!r} (config {config_name!r}).")


def accuracy_metrics():
    """``compute_metrics``: the accuracy of the most likely class."""
    metric = load_metric("accuracy")

    def compute_metrics(prediction: transformers.EvalPrediction):
        predictions = np.argmax(logits_of(prediction.predictions), axis=-1)
        return metric(predictions=predictions, references=prediction.label_ids)

    return compute_metrics


def logits_of(predictions: np.ndarray | tuple) -> np.ndarray:
    """The logits of a model's predictions, which are a tuple when the model returns more than its logits."""
    return predictions[0] if isinstance(predictions, tuple) else predictions

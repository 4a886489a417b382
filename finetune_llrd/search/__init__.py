"""A cheap search over learning rate x layer decay with Optuna, through ``Trainer.hyperparameter_search``.

Each trial trains a fresh model (``model_init``) for ``search_max_steps`` optimizer steps with one sampled
learning rate and decay (and, optionally, the head's rate as a multiple of the top block's), evaluates it at
every evaluation step, and is pruned when it falls below the median of earlier trials at the same step. The
caller then trains the best configuration to the end as a normal run. Optuna is an optional extra:
``pip install "finetune-llrd[search]"``.

* :mod:`.space`: what is sampled (:class:`SearchSpace`) and the flags (:class:`SearchArguments`);
* :mod:`.trials`: :func:`run_search`, the Optuna trials over a space (``Trainer.hyperparameter_search``);
* :mod:`.results`: the results file, the heat map and the command line of the best configuration;
* :mod:`.tuning`: a run's rates tuned: :func:`search_rates` from a model factory, :func:`search_layerwise_rates`
  from a trainer (a trainer for the trials, the trials, the results written, the best values put to use).
"""

from .results import (
    SEARCH_FLAGS,
    SEARCH_HEATMAP_FILE,
    SEARCH_RESULTS_FILE,
    TUNED_FLAGS,
    best_command_line,
    plot_search,
    write_search_results,
)
from .space import (
    SEARCH_DIRECTIONS,
    SearchArguments,
    SearchRange,
    SearchSpace,
    default_search_space,
    head_learning_rate,
    load_search_space,
    require_optuna,
)
from .trials import SearchOutcome, run_search, space_params, trial_record
from .tuning import search_layerwise_rates, search_metric, search_rates


__all__ = [
    "SEARCH_DIRECTIONS",
    "SEARCH_FLAGS",
    "SEARCH_HEATMAP_FILE",
    "SEARCH_RESULTS_FILE",
    "TUNED_FLAGS",
    "SearchArguments",
    "SearchOutcome",
    "SearchRange",
    "SearchSpace",
    "best_command_line",
    "default_search_space",
    "head_learning_rate",
    "load_search_space",
    "plot_search",
    "require_optuna",
    "run_search",
    "search_layerwise_rates",
    "search_metric",
    "search_rates",
    "space_params",
    "trial_record",
    "write_search_results",
]

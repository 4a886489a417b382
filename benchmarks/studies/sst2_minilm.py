"""SST-2, few-sample: the real 6-layer MiniLM-L6 (``minilm-l6``) on 1,000 training sentences, 188 steps at batch 16;
872 sentences held out from the training file choose each arm's rate, the 872 of the GLUE dev set (``test.tsv``) are
reported.

Arms: uniform rates, layer-wise decay 0.9, re-initialising the top 2 blocks, decay 0.9 + re-initialising the top 2;
and each ``layer_lr_adaptation`` method on top of uniform rates and of decay 0.9, paired with the runs without
adaptation at 1e-4, with larger rates for auto_rgn (3e-4, 1e-3) and lars (1e-3, 1e-2, 1e-1), which only shrink rates.
Staged: seed 0 every rate, seeds 1-2 each arm's chosen rate. Then the lr x decay search (12 trials) on seed 0.
"""

from engine import Study
from engine.classification import CHOSEN_ON_SELECTION, Classification, text_arms


ADAPTIVE_RATES = {
    "singh2015": (1e-4,),
    "auto_rgn": (1e-4, 3e-4, 1e-3),
    "autolr": (1e-4,),
    "lars": (1e-4, 1e-3, 1e-2, 1e-1),
}

STUDY = Study(
    name="sst2_minilm",
    title="text",
    section="evidence",
    section_order=8,
    executor=Classification("minilm-l6", "sst2"),
    **text_arms((0.9,), (2,), adaptations=ADAPTIVE_RATES),
    learning_rates=(3e-5, 1e-4, 3e-4),
    seeds=(0, 1, 2),
    search_trials=12,
    **CHOSEN_ON_SELECTION,
)

"""CoLA, few-sample (Zhang et al. 2021): the real 12-layer ``e5-small`` on 1,000 training sentences, 188 steps at
batch 16; 500 sentences held out from the training file choose each arm's rate, Matthews correlation on the 516
sentences of the dev file is reported.

Arms: uniform rates, layer-wise decay 0.9, re-initialising the top 1, 2 or 3 blocks, decay 0.9 + re-initialising the
top 2. Staged: seed 0 runs every rate, seeds 1-4 each arm's chosen rate (re-init of the top 1 or 3: seed 0 only so
far).
"""

from engine import Study
from engine.classification import CHOSEN_ON_SELECTION, Classification, text_arms


STUDY = Study(
    name="cola_e5",
    title="text",
    section="evidence",
    section_order=3,
    executor=Classification("e5-small", "cola"),
    **text_arms((0.9,), (1, 2, 3)),
    learning_rates=(3e-5, 1e-4, 3e-4),
    seeds=(0, 1, 2, 3, 4),
    **CHOSEN_ON_SELECTION,
)

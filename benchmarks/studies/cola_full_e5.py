"""CoLA with the whole training file (``cola-full``: 8,051 sentences for training, 500 held out to choose each arm's
rate, 3 epochs = 1,510 steps at batch 16), beyond Zhang et al.'s protocol, for models that learn nothing from 1,000
sentences: the real 12-layer ``e5-small``.

Arms: uniform rates, layer-wise decay 0.9, re-initialising the top 2 blocks, decay 0.9 + re-initialising the top 2,
each at 3e-5 and 1e-4 on seed 0, then each arm's chosen rate on seeds 1-4.
"""

from engine import Study
from engine.classification import CHOSEN_ON_SELECTION, Classification, text_arms


STUDY = Study(
    name="cola_full_e5",
    title="text",
    section="evidence",
    section_order=2,
    executor=Classification("e5-small", "cola-full"),
    **text_arms((0.9,), (2,), reinit_rates=(3e-5, 1e-4)),
    learning_rates=(3e-5, 1e-4),
    seeds=(0, 1, 2, 3, 4),
    **CHOSEN_ON_SELECTION,
)

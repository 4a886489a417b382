"""CoLA, few-sample (Zhang et al. 2021): the real 6-layer MiniLM-L6 (``minilm-l6``) on 1,000 training sentences, 188
steps at batch 16, seed 0: every rate of every arm (uniform, decay 0.8 and 0.9, re-initialising the top 1, 2 or 3
blocks, decay 0.9 + re-initialising the top 2)."""

from engine import Study
from engine.classification import CHOSEN_ON_SELECTION, Classification, text_arms


STUDY = Study(
    name="cola_minilm",
    title="text",
    section="evidence",
    section_order=7,
    executor=Classification("minilm-l6", "cola"),
    **text_arms((0.8, 0.9), (1, 2, 3)),
    learning_rates=(3e-5, 1e-4, 3e-4),
    seeds=(0,),
    **CHOSEN_ON_SELECTION,
)

"""CoLA, few-sample, long budget: ``cola_e5`` with 3 times the steps (564), every arm at 1e-4, 5 seeds."""

from engine import Study
from engine.classification import CHOSEN_ON_SELECTION, Classification, text_arms


STUDY = Study(
    name="cola_long_e5",
    title="text",
    section="evidence",
    section_order=4,
    executor=Classification("e5-small", "cola", budget="long"),
    **text_arms((0.9,), (2,)),
    learning_rates=(1e-4,),
    seeds=(0, 1, 2, 3, 4),
    **CHOSEN_ON_SELECTION,
)

"""Adaptive rates and the search at the quality budget: ``quality_sst2`` narrowed to each arm's chosen configuration
(uniform 1e-4, layer-wise 2e-4 with decay 0.8), and each ``layer_lr_adaptation`` method on top of both, compared seed
by seed with its twin without adaptation; then the lr x decay search (12 trials, each at the grid's 64 steps, scored
on the selection split) on seed 0, against ``quality_sst2``'s grid."""

from engine import Point, Study
from engine.classification import CHOSEN_ON_SELECTION, Classification, arm, arms


LAYERWISE = (Point(2e-4, (("layer_decay", 0.8),)),)

STUDY = Study(
    name="quality_adaptive_sst2",
    title="Adaptive rates and the search at the quality budget",
    section="quality_adaptive",
    search_grid="quality_sst2",
    executor=Classification("minilm-l6", "quality-sst2"),
    **arms(
        arm("uniform"),
        arm("layerwise", rates=LAYERWISE),
        *(
            entry
            for method in ("singh2015", "autolr", "auto_rgn", "lars")
            for entry in (arm("adaptive", adaptation=method), arm("layerwise", adaptation=method, rates=LAYERWISE))
        ),
    ),
    learning_rates=(1e-4,),
    grid_seeds=(0, 1, 2),
    seeds=(0, 1, 2),
    search_trials=12,
    **CHOSEN_ON_SELECTION,
)

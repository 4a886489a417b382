"""Quality at equal budget, SST-2: the real pretrained all-MiniLM-L6-v2, uniform rates (stock ``Trainer``) against
layer-wise decay (``LLRDTrainer``), every run the same 64 steps of batch 32 (max 64 tokens) on the same 2,048
training sentences, with the same schedule and evaluation points; per seed both arms start from the same head
initialisation and see the same batches in the same order.

Three splits, each for one purpose: the curve split (``test.tsv``, the 872-row GLUE dev set, every 16 steps) gives
the accuracy-against-step curve and the time to accuracy; the selection split (872 rows of ``dev.tsv``, held out from
GLUE train) chooses each arm's configuration (mean over the seeds), so that it is not chosen on the figures it is
reported with; the report split (``test.tsv``) gives the final accuracy.

Both arms get four configurations, so that both have the same chance in the selection: uniform lr in {5e-5, 1e-4,
2e-4, 4e-4}; layer-wise head lr in {2e-4, 4e-4} x decay in {0.8, 0.9}, whose depth-mean rates (1.0e-4 to 2.8e-4) lie
inside the uniform range. Every configuration on every seed.
"""

from engine import Study, grid
from engine.classification import CHOSEN_ON_SELECTION, Classification, arm, arms


STUDY = Study(
    name="quality_sst2",
    title="Quality at equal budget",
    section="quality",
    executor=Classification("minilm-l6", "quality-sst2"),
    **arms(arm("uniform"), arm("layerwise", rates=grid((2e-4, 4e-4), layer_decay=(0.8, 0.9)))),
    learning_rates=(5e-5, 1e-4, 2e-4, 4e-4),
    grid_seeds=(0, 1, 2),
    seeds=(0, 1, 2),
    **CHOSEN_ON_SELECTION,
)

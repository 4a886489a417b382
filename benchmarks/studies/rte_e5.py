"""RTE, few-sample (Zhang et al. 2021, *Revisiting Few-sample BERT Fine-tuning*): the real 12-layer ``e5-small``
fine-tuned on 1,000 training pairs for 3 epochs at batch 16 (188 steps); 244 pairs held out from the training file
choose each arm's rate, the 1,384 pairs of the test file are reported.

Arms: uniform rates (stock ``Trainer``), layer-wise decay 0.8 and 0.9, re-initialising the top 1, 2 or 3 blocks,
decay 0.9 + re-initialising the top 2; and each ``layer_lr_adaptation`` method on top of uniform rates and of decay
0.9, paired with the runs without adaptation at the same rate (auto_rgn and lars at 1e-3, the rate that suited them
on MiniLM; singh2015 also at 3e-5). Staged: seed 0 runs every rate of every arm, each arm's rate is chosen on its
selection split, seeds 1-4 run that rate only.
"""

from engine import Study
from engine.classification import CHOSEN_ON_SELECTION, Classification, text_arms


STUDY = Study(
    name="rte_e5",
    title="text",
    section="evidence",
    section_order=5,
    executor=Classification("e5-small", "rte"),
    **text_arms(
        (0.8, 0.9),
        (1, 2, 3),
        adaptations={"singh2015": (3e-5, 1e-4), "auto_rgn": (1e-3,), "autolr": (1e-4,), "lars": (1e-3,)},
    ),
    learning_rates=(3e-5, 1e-4, 3e-4),
    seeds=(0, 1, 2, 3, 4),
    **CHOSEN_ON_SELECTION,
)

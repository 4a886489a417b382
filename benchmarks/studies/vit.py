"""ViT on CIFAR-10: the real DINOv2-layout ViT-S/14 (``dinov2-small-imgfocus``, 12 blocks) fine-tuned on 2,000
CIFAR-10 images at 56 px (a 4 x 4 grid of 14-px patches) for 200 steps (3.2 epochs: the curves flatten).

Arms: a linear probe (backbone frozen), uniform fine-tuning (stock ``Trainer``), layer-wise decay 0.65 / 0.75 / 0.85
(the ViT literature's values), each over its rate grid on 3 seeds (uniform's 1e-5 and 2e-5 added when its best lay
at the grid's lowest rate); drop path 0.1 and label smoothing 0.1 in every fine-tuning arm. Then each
``layer_lr_adaptation`` method on top of uniform rates (2e-5) and of decay 0.75 (2e-4), each arm's chosen rate, paired
with the runs without adaptation (singh2015 on seed 0 has run; the rest is one resumable command). Each arm's rate
is chosen on the selection split (500 images held out from the training file) over the seeds every rate has run;
the report split is 2,000 images of the test file.
"""

from engine import Study
from engine.classification import ADAPTATIONS, CHOSEN_ON_SELECTION, Classification, adaptive_arms, arm, arms


STUDY = Study(
    name="vit",
    title="ViT on CIFAR-10",
    section="evidence",
    section_order=0,
    executor=Classification("dinov2-small-imgfocus", "cifar10"),
    **arms(
        arm("uniform", rates=(1e-5, 2e-5, 5e-5, 2e-4, 8e-4)),
        arm("probe", rates=(1e-3,)),
        *(arm("layerwise", decay) for decay in (0.65, 0.75, 0.85)),
        *adaptive_arms(dict.fromkeys(ADAPTATIONS, (2e-5,)), 0.75, dict.fromkeys(ADAPTATIONS, (2e-4,))),
    ),
    learning_rates=(5e-5, 2e-4, 8e-4),
    grid_seeds=(0, 1, 2),
    seeds=(0, 1, 2),
    **CHOSEN_ON_SELECTION,
)

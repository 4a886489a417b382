"""CNN on CIFAR-10: the real ImageNet EfficientNet-Lite0 (16 blocks in 7 stages) fine-tuned on 2,000 CIFAR-10
images at 56 px for 200 steps.

Arms: uniform rates against layer-wise decay with one depth per block (0.85, 16 blocks) and one per stage (0.7,
7 stages), each at 2e-4, 1e-3, 5e-3 and 2e-2 on 3 seeds; then each ``layer_lr_adaptation`` method on top of uniform
rates (1e-3) and of per-block decay (5e-3), each arm's chosen rate, paired with the runs without adaptation. Each
arm's rate is chosen on the selection split (500 images held out from the training file) over the seeds every rate
has run; the report split is 2,000 images of the test file.
"""

from engine import Study
from engine.classification import ADAPTATIONS, CHOSEN_ON_SELECTION, Classification, adaptive_arms, arm, arms


STUDY = Study(
    name="cnn",
    title="CNN on CIFAR-10",
    section="evidence",
    section_order=1,
    executor=Classification("efficientnet-lite0", "cifar10"),
    **arms(
        arm("uniform"),
        arm("layerwise", 0.85),
        arm("layerwise", 0.7, "stage"),
        *adaptive_arms(dict.fromkeys(ADAPTATIONS, (1e-3,)), 0.85, dict.fromkeys(ADAPTATIONS, (5e-3,))),
    ),
    learning_rates=(2e-4, 1e-3, 5e-3, 2e-2),
    grid_seeds=(0, 1, 2),
    seeds=(0, 1, 2),
    **CHOSEN_ON_SELECTION,
)

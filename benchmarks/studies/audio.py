"""Audio classification: the real Whisper tiny.en encoder on real one-shot drum samples (8 instruments), uniform
rates against layer decay 0.75 (AudioMAE's fine-tuning setting) and a linear probe (the encoder frozen,
``--freeze_base_model``: only the new projector and classifier train).

Sizing (measured on the shared 2-core machine, one thread): Whisper's feature extractor pads every clip to 30 s,
so each clip costs a full 1,500-position encoder pass whatever its length (the drums last at most 2 s). In
fp32 a training step of 8 clips costs about 12.5 CPU seconds (8.5 under ``--bf16``, used here), an evaluation
clip about 0.33 s in bf16 and a probe step about 3 s. One epoch of the 446 training clips (56 steps) and the 177
validation clips make a run of about 9 minutes of a free core, a probe run about 4. Each arm chooses its rate
from 2 on seed 0 (uniform 1e-4 and 3e-4; decay 0.75, whose lower blocks train slower, 3e-4 and 1e-3; the probe,
a new head alone, 1e-3 and 3e-3; uniform and decay, best at the lower end of their grids, also try 3e-5 and
1e-4), then seeds 1 and 2 run at the chosen rates: 14 runs, about 105 minutes of one core. A first sizing of 16 steps on 128 clips could not separate the arms (on seed 1 uniform and decay both
stayed at the constant answer, 0.169) and its runs were discarded.
"""

from engine import Study
from engine.recipe import Recipe


STUDY = Study(
    name="audio",
    executor=Recipe(
        "audio_classification.py",
        model="whisper-tiny-en",
        common_args=[
            "--train_dir",
            "{data}/drums/train",
            "--validation_dir",
            "{data}/drums/validation",
            "--num_train_epochs",
            "1",
            "--per_device_train_batch_size",
            "8",
            "--per_device_eval_batch_size",
            "16",
            "--warmup_steps",
            "0.1",
            "--weight_decay",
            "0.01",
            "--logging_steps",
            "5",
            "--bf16",
        ],
    ),
    arms={
        "uniform": [],
        "decay0.75": ["--layer_decay", "0.75"],
        "probe": ["--freeze_base_model"],
    },
    learning_rates=(1e-4, 3e-4),
    arm_learning_rates={"uniform": (3e-5, 1e-4, 3e-4), "decay0.75": (1e-4, 3e-4, 1e-3), "probe": (1e-3, 3e-3)},
    grid_seeds=(0,),
    seeds=(0, 1, 2),
    metric="eval_accuracy",
    greater_is_better=True,
    other_metrics=("eval_loss",),
    caveats=(
        "One epoch (56 steps of 8) of the 446 training clips (the order set by the seed, the same for every arm of a seed), "
        "scored on the 177 validation clips, which come from 3 kits never seen in training: the differences "
        "between kits dominate, and a few labels are noisy (a tom filed under kick). bf16 autocast on the CPU. "
        "Each arm's rate chosen on seed 0 from 2 rates (uniform and decay from 3)."
    ),
)

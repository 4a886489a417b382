"""Extractive QA: the real 12-layer e5-small on real SQuAD v1.1 questions, uniform rates against layer decay 0.8
and against ELECTRA's published SQuAD setting for a base model (Clark et al. 2020: rate 1e-4, decay 0.8, in this
toolkit's terms ``--learning_rate 8e-5 --layer_decay 0.8 --head_learning_rate 1e-4``).

Sizing (measured on the shared 2-core machine, one thread): a training step of 16 windows of 128 tokens costs
about 6 CPU seconds on e5-small and the 200 evaluation questions (478 windows) about 45, so a run of 30 steps
is about 4 minutes of a free core (the first run took 10 minutes of wall time at a load average of 5). The
machine's heavy-run lock is shared with the other studies, so each arm runs at one rate, 3 seeds: 9 runs.
uniform and decay 0.8 share the head's rate (1e-4, the README's 12-layer setting), so they differ only in the
rates below the head; ELECTRA's arm has the same decay with every block one more factor 0.8 below its head.
Adding rates to ``learning_rates`` later turns it into the usual grid on seed 0 (the runs kept are reused).
That is a short fine-tuning (480 windows of about 300 questions): it measures which rates learn fastest from a
sentence-embedding checkpoint, not SQuAD's converged F1.
"""

from recipe_study import RecipeStudy

STUDY = RecipeStudy(
    name="qa",
    recipe="question_answering.py",
    model="e5-small",
    common_args=[
        "--train_file", "{data}/squad/train.jsonl.gz",
        "--validation_file", "{data}/squad/validation.jsonl.gz",
        "--max_seq_length", "128",
        "--doc_stride", "32",
        "--max_train_samples", "300",
        "--max_eval_samples", "200",
        "--per_device_train_batch_size", "16",
        "--per_device_eval_batch_size", "64",
        "--max_steps", "30",
        "--warmup_steps", "0.1",
        "--weight_decay", "0.01",
        "--logging_steps", "10",
    ],
    arms={
        "uniform": [],
        "decay0.8": ["--layer_decay", "0.8"],
        "electra": ["--layer_decay", "0.8", "--head_learning_rate", "1e-4"],
    },
    learning_rates=(1e-4,),
    arm_learning_rates={"electra": (8e-5,)},
    grid_seeds=(0,),
    seeds=(0, 1, 2),
    metric="eval_f1",
    greater_is_better=True,
    caveats=(
        "30 steps of 16 windows (128 tokens, stride 32) from 300 SQuAD training questions, scored on 200 dev "
        "questions (a random subset per seed, the same for every arm of a seed): an early point of fine-tuning, "
        "not SQuAD's converged F1. e5-small is a sentence-embedding model with 4-bit quantised weights "
        "(dequantised), not a QA-pretrained encoder. Each arm at one rate (no grid, for lack of machine time): "
        "uniform and decay 0.8 at 1e-4 (the head's rate), ELECTRA's arm at its published base-model rate."
    ),
)

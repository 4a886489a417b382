"""Supervised fine-tuning of the real SmolLM2-135M-Instruct (30 blocks) on the real chitchat conversations:
uniform rates against layer-wise decay 0.95 and 0.9 over the decoder blocks, and against a LoRA adapter
(r 16, alpha 32, on q_proj and v_proj, PEFT's default for Llama), scored by the held-out loss on the assistant
turns (``--assistant_only_loss``; lower is better) and its perplexity.

Sizing (measured on the shared 2-core machine, one thread, under a load average of about 6): a training step
of 8 conversations at 128 tokens took 28 s in bf16 autocast and 36 s in fp32, and the evaluation about 1 s per
conversation. Each run here trains 20 steps of 4 conversations (80 random conversations of the 3,517, one
epoch), evaluates 100 random validation conversations of the 500 (the same 100 for every arm of a seed), and
loads the model: about 3 minutes of one core (LoRA's 5). The rate grids on seed 0 (3 rates for uniform, 2 for the
others) and 2 more seeds of each arm make 17 runs, an hour of one core.
SFTConfig's defaults stay (bf16 autocast, which measured faster on this CPU; weight decay 0; linear schedule)
except gradient checkpointing, off: at 128 tokens activations are small and recomputing them costs a third
more time.

The rate grids differ by arm because decay lowers the mean rate: with 30 blocks, decay 0.9 trains the bottom
block at 0.042 and the tied embeddings / LM head at 0.038 of ``--learning_rate`` (0.95: 0.21 and 0.20), and
LoRA's usual rates are 10 times full fine-tuning's.
"""

from engine import Study
from engine.recipe import Recipe


STUDY = Study(
    name="sft",
    executor=Recipe(
        "sft.py",
        model="smollm2-135m-instruct",
        common_args=[
            "--train_file",
            "{data}/chitchat/train.jsonl.gz",
            "--validation_file",
            "{data}/chitchat/validation.jsonl",
            "--max_train_samples",
            "80",
            "--max_eval_samples",
            "100",
            "--max_length",
            "128",
            "--assistant_only_loss",
            "true",
            "--per_device_train_batch_size",
            "4",
            "--per_device_eval_batch_size",
            "16",
            "--max_steps",
            "20",
            "--warmup_steps",
            "0.1",
            "--gradient_checkpointing",
            "false",
            "--logging_steps",
            "5",
        ],
    ),
    arms={
        "uniform": [],
        "decay0.95": ["--layer_decay", "0.95"],
        "decay0.9": ["--layer_decay", "0.9"],
        "lora": ["--use_peft", "--lora_r", "16", "--lora_alpha", "32"],
    },
    learning_rates=(1e-4, 3e-4),
    arm_learning_rates={"uniform": (3e-5, 1e-4, 3e-4), "lora": (3e-4, 1e-3)},
    grid_seeds=(0,),
    seeds=(0, 1, 2),
    metric="eval_loss",
    greater_is_better=False,
    caveats=(
        "SmolLM2-135M-Instruct here is dequantized from a 4-bit (Q4_1) GGUF file, not the original bf16 weights: "
        "expect somewhat higher losses than the original gives. 20 steps of 4 conversations cut to 128 tokens "
        "(80 conversations, one epoch), loss on the assistant turns only, 100 validation conversations per "
        "seed (the same for every arm of a seed, other ones for other seeds). The tied embeddings / LM head sit at "
        "depth 0, so decay trains the output layer slowest. Rate of each arm chosen on seed 0 (uniform from 3 "
        "rates, the others from 2); a "
        "chosen rate at the edge of its grid means the best may lie beyond it. chitchat has some junk turns "
        "('asdf')."
    ),
)

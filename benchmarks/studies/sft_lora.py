"""LoRA and LoRA+ in the SFT study's setting: the real SmolLM2-135M-Instruct on the real chitchat conversations,
scored by the held-out loss on the assistant turns (lower is better).

Arms, each with the study's LoRA adapter (r 16, alpha 32 on q_proj and v_proj): plain LoRA; LoRA+ at ratio 16
(``--loraplus_lr_ratio 16``, the ratio the LoRA+ paper suggests: each B matrix at 16 times its block's rate, as
peft's ``create_loraplus_optimizer`` splits the parameters); LoRA+ at ratio 16 with layer decay 0.95 over the 30
blocks (the decay the ``sft`` study found level with uniform rates), so the adapters decay with their block too;
and full fine-tuning at uniform rates, at the rate the ``sft`` study chose for it (1e-4), as the yardstick.

Everything but the precision is the ``sft`` study's (the same arguments, data, conversations per seed and rate
choice on seed 0): this study runs in fp32 (``--bf16 false``), because the CPU of the session that ran it has no
bf16 instructions (a 512 x 512 bf16 matmul took 65 times a fp32 one), where the ``sft`` study's machine ran bf16
autocast fastest. Its losses are therefore compared with each other, not with the ``sft`` study's table.

Grids: LoRA's reaches 1e-2, since the ``sft`` study's LoRA chose 1e-3, its upper end; the LoRA+ paper advises a
base rate somewhat below LoRA's, so the LoRA+ grids start a step lower. The first grids (up to 3e-3 for LoRA and
1e-3 for LoRA+) had every LoRA arm choose its upper end on seed 0; each grid was then extended one step up before
any seed beyond 0 ran.
"""

import dataclasses

from engine import Study
from studies.sft import STUDY as SFT


LORA = ["--use_peft", "--lora_r", "16", "--lora_alpha", "32"]

STUDY = Study(
    name="sft_lora",
    executor=dataclasses.replace(SFT.executor, common_args=[*SFT.executor.common_args, "--bf16", "false"]),
    arms={
        "lora": LORA,
        "loraplus16": [*LORA, "--loraplus_lr_ratio", "16"],
        "loraplus16_decay0.95": [*LORA, "--loraplus_lr_ratio", "16", "--layer_decay", "0.95"],
        "uniform": [],
    },
    learning_rates=(1e-4, 3e-4, 1e-3, 3e-3),
    arm_learning_rates={"lora": (3e-4, 1e-3, 3e-3, 1e-2), "uniform": (1e-4,)},
    grid_seeds=SFT.grid_seeds,
    seeds=SFT.seeds,
    metric=SFT.metric,
    greater_is_better=SFT.greater_is_better,
    other_metrics=SFT.other_metrics,
    title="LoRA and LoRA+ for SFT: SmolLM2-135M on chitchat (recipe study, fp32)",
    caveats=(
        "SmolLM2-135M-Instruct here is dequantized from a 4-bit (Q4_1) GGUF file, not the original bf16 weights. "
        "20 steps of 4 conversations cut to 128 tokens (80 conversations, one epoch), loss on the assistant turns "
        "only, 100 validation conversations per seed (the same for every arm of a seed). fp32 (this session's CPU "
        "has no bf16 instructions), where the sft study ran bf16 autocast: compare this table's rows with each "
        "other, not with the sft study's. Each LoRA arm's rate is chosen on seed 0 from 4 rates, every choice "
        "inside its grid (the grids were extended one step up after the first 3 rates chose their upper end); "
        "full fine-tuning runs at the rate the sft study chose for it (1e-4) alone. 3 seeds: a difference of a "
        "few hundredths of a nat is within the seeds' spread."
    ),
)

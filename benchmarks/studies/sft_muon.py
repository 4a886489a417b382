"""Muon against AdamW for full fine-tuning, each at uniform rates and at layer-wise decay 0.9, in the SFT study's
setting: the real SmolLM2-135M-Instruct (30 blocks) on the real chitchat conversations, scored by the held-out loss
on the assistant turns (lower is better).

The question (issue #38): Muon fine-tuning of an AdamW-pretrained model is reported to degrade with the strength of
its update (arXiv 2605.10468), and LoRA to mitigate it; does layer-wise decay, which shrinks the update of the lower
blocks, change Muon's fine-tuning, for better or worse?

Arms: AdamW (the ``sft`` study's full fine-tuning) and ``--use_muon true`` (``finetune_llrd.LayerwiseMuon``: the 210
hidden matrices of the 30 blocks take torch's Muon step, the tied embeddings / LM head and the norms an AdamW
step, each at its depth's rate; Muon's update scaled to AdamW's RMS, ``adjust_lr_fn="match_rms_adamw"``, so the
rates are on AdamW's scale), each at ``layer_decay`` 1.0 and 0.9.

Everything is the ``sft`` study's (arguments, data, conversations per seed, bf16 autocast): the CPU of the session
that ran this study has AMX bf16 (a forward and backward pass of 4 x 128 tokens took 6 s in bf16 autocast and 12 s
in fp32), so bf16 is the faster precision here as on the ``sft`` study's machine. Muon's Newton-Schulz iteration
costs about 7 s per step on one core (210 matrices, 5 iterations in bf16), so a Muon run takes about 2 minutes
longer than an AdamW one.

Grids: 2 rates per arm on seed 0, then 2 more seeds at each arm's chosen rate: 16 runs, about 70 minutes of one core.
Muon's grids were extended up after their rates chose their upper end on seed 0, before any seed beyond 0 ran: uniform
Muon's twice (3e-4 after 1e-4 beat 3e-5, then 1e-3 after 3e-4 beat 1e-4; 3e-4 then won), Muon with decay's three
times (1e-3, 3e-3, 1e-2, each after the rate below it won): 21 runs. Muon at the RMS-matched scale wants higher rates than AdamW here: its update's RMS is 0.2 x lr, where
AdamW's first steps move every weight by about lr.
The ``sft`` study chose 1e-4 for uniform AdamW (from 3e-5, 1e-4, 3e-4) and 3e-4 for decay 0.9 (the upper end of
1e-4, 3e-4), so decay 0.9's grid here is one step higher. Muon's grids start a step lower than AdamW's, since its
update is the stronger one at the same RMS-matched rate (every singular direction moves).
"""

from engine import Study
from studies.sft import STUDY as SFT


MUON = ["--use_muon", "true"]

STUDY = Study(
    name="sft_muon",
    executor=SFT.executor,
    arms={
        "adamw": [],
        "adamw_decay0.9": ["--layer_decay", "0.9"],
        "muon": MUON,
        "muon_decay0.9": [*MUON, "--layer_decay", "0.9"],
    },
    learning_rates=(1e-4, 3e-4),
    arm_learning_rates={
        "adamw": (1e-4, 3e-4),
        "adamw_decay0.9": (3e-4, 1e-3),
        "muon": (3e-5, 1e-4, 3e-4, 1e-3),
        "muon_decay0.9": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
    },
    grid_seeds=(0,),
    seeds=(0, 1, 2),
    metric=SFT.metric,
    greater_is_better=SFT.greater_is_better,
    other_metrics=SFT.other_metrics,
    title="Muon and AdamW, with and without layer-wise decay: SFT of SmolLM2-135M on chitchat (recipe study)",
    caveats=(
        "SmolLM2-135M-Instruct here is dequantized from a 4-bit (Q4_1) GGUF file, not the original bf16 weights. "
        "20 steps of 4 conversations cut to 128 tokens (80 conversations, one epoch), loss on the assistant turns "
        "only, 100 validation conversations per seed (the same for every arm of a seed), bf16 autocast as the sft "
        "study. Muon is finetune_llrd's LayerwiseMuon (torch's Muon step on the blocks' 210 matrices, AdamW on the "
        "tied embeddings / LM head and norms), momentum 0.95, Nesterov, 5 Newton-Schulz steps, its update scaled to "
        "AdamW's RMS; weight decay 0 (SFTConfig's default) on both. Each arm's rate is chosen on seed 0 from 2 "
        "rates, Muon's from 4 (uniform) and 5 (decay 0.9): their grids were extended up while seed 0 chose their "
        "upper end, before any other seed ran. A choice at the edge of its grid means the best may lie beyond it; "
        "AdamW's choices sit at the lower end of their grids, where the sft study's same runs found the next rate "
        "down worse (uniform 3e-5: 3.725; decay 0.9 1e-4: 3.770). 3 seeds, 20 steps: a short "
        "fine-tuning, where the reported degradation of Muon fine-tuning (a long-run effect) may not show."
    ),
)

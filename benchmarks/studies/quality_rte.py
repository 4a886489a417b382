"""Quality at equal budget, RTE: ``quality_sst2``'s grid on RTE, 64 steps of batch 16 (max 128 tokens) on the whole
training file; the curve and the selection on ``dev.tsv`` (139 pairs, cheap enough to evaluate often), the report on
``test.tsv`` (1,384 pairs, evaluated once: ten times less noisy than dev)."""

from dataclasses import replace

from engine import load_study
from engine.classification import Classification


STUDY = replace(
    load_study("quality_sst2"),
    name="quality_rte",
    section_order=1,
    executor=Classification("minilm-l6", "quality-rte"),
)

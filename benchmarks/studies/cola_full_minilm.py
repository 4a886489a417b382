"""CoLA with the whole training file, ``cola_full_e5``'s study on the real 6-layer MiniLM-L6 (``minilm-l6``, fp32, from
PyPI)."""

from dataclasses import replace

from engine import load_study
from engine.classification import Classification


STUDY = replace(
    load_study("cola_full_e5"),
    name="cola_full_minilm",
    section_order=6,
    executor=Classification("minilm-l6", "cola-full"),
)

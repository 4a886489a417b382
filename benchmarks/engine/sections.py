"""The sections of BENCHMARKS.md that ``report.py`` renders from the in-process studies, and how each is viewed.

A study joins a section by declaring it: ``Study(..., section="evidence", section_order=3)`` in
``benchmarks/studies/<name>.py``; nothing else lists which study goes where. The sections' order here is their
order in the document; within a section, the studies go by ``section_order``, then by name. A study without a
``section`` (every recipe study) is reported on its own: ``python benchmarks/study.py report <name> --update
BENCHMARKS.md`` puts its table between its own markers, under the heading BENCHMARKS.md gives it (its ``title``).
"""

from __future__ import annotations

from dataclasses import dataclass


VIEWS = ("quality", "evidence")


@dataclass(frozen=True)
class Section:
    """One section of the report.

    Attributes:
        name: what a study's ``section`` says to join it.
        heading: its ``###`` heading in BENCHMARKS.md.
        view: how its studies are viewed (:mod:`engine.views`): ``quality`` (uniform against layer-wise at one
            budget, the time to accuracy, each adaptation against its twin) or ``evidence`` (each arm at its rate
            chosen on the selection split, rate spans, the lr x decay heatmap).
        plotted: whether ``plots.py`` draws its studies (the quality curves and rates per depth, or one evidence
            figure per study).
    """

    name: str
    heading: str
    view: str
    plotted: bool = True

    def __post_init__(self):
        if self.view not in VIEWS:
            raise ValueError(f"Section {self.name!r}: view must be one of {VIEWS}, not {self.view!r}.")


SECTIONS = (
    Section("quality", "Quality at equal budget", view="quality"),
    Section("quality_adaptive", "Adaptive rates and the search at the quality budget", view="quality", plotted=False),
    Section("evidence", "Where layer-wise rates matter: real backbones to convergence", view="evidence"),
)


def section_named(name: str) -> Section:
    """The section a study's ``section`` names.

    Raises:
        ValueError: when there is none, naming the sections there are.
    """
    for section in SECTIONS:
        if section.name == name:
            return section
    raise ValueError(
        f"No report section {name!r}: declare one of {', '.join(section.name for section in SECTIONS)}, add a "
        "Section to SECTIONS in benchmarks/engine/sections.py, or leave section empty to report the study on its "
        "own (python benchmarks/study.py report <name> --update BENCHMARKS.md)."
    )

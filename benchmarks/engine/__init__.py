"""The study engine of benchmarks/: every study of the benchmarks is a declaration (``benchmarks/studies/``), and
this package plans it, runs it, stores it, summarizes it.

* :mod:`engine.declaration`: :class:`Study` (arms x a grid of rates x paired seeds, and the rule that chooses each
  arm's rate), :class:`Point`, :func:`grid`, :func:`load_study`;
* :mod:`engine.plan`: the rate choice and the runs that can run now;
* :mod:`engine.store`: one JSON file per run, the claims of the runners sharing a machine, the refusal of records
  whose arguments differ from the study's;
* :mod:`engine.runner`: the run loop (and the miniature of ``--quick``);
* :mod:`engine.recipe` and :mod:`engine.classification`: the two executors, a recipe in a subprocess and a
  classifier trained in this process;
* :mod:`engine.summary`: paired t intervals, per-seed scores, other metrics, rate spans, time to accuracy, the
  search's cost;
* :mod:`engine.sections`: the sections of the report a study declares it joins (``Study(section=...)``);
* :mod:`engine.views`: what the renderers draw of each section's studies (the quality and evidence views, the
  searches against their grids), computed once and writing nothing.

``python benchmarks/study.py`` is its command line; ``benchmarks/report.py`` (Markdown) and ``benchmarks/plots.py``
(figures) render its views, and import nothing of each other.
"""

from engine.declaration import Point, Study, grid, load_study, study_names


__all__ = ["Point", "Study", "grid", "load_study", "study_names"]

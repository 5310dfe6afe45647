"""Plumbing shared by the studies (private): configuration sections read from TOML, the output
directory and its resumable stages, seeds, and the plain-data summaries of results.json.

* :mod:`.config` — :func:`load_toml`, :func:`override_sections`, :func:`sections_dict`;
* :mod:`.sections` — the ``[trajectory]`` and ``[analysis]`` sections of the r_Q studies;
* :mod:`.stages` — :func:`derive_seed`, :func:`torch_threads`, :func:`versions`,
  :func:`check_out_config`, :func:`job_spec`, :func:`local_executor`, :func:`run_stage`,
  :class:`TimingLog`;
* :mod:`.summaries` — :func:`interval_dict`, :func:`ranking_summary`,
  :func:`fill_keep_best_padding`, :data:`ORIGINAL`.
"""

from mis.studies._common.config import load_toml, override_sections, sections_dict
from mis.studies._common.sections import AnalysisSection, TrajectorySection
from mis.studies._common.stages import (
    TimingLog,
    check_out_config,
    derive_seed,
    job_spec,
    local_executor,
    run_stage,
    torch_threads,
    versions,
)
from mis.studies._common.summaries import (
    ORIGINAL,
    fill_keep_best_padding,
    interval_dict,
    ranking_summary,
)

__all__ = [
    "ORIGINAL",
    "AnalysisSection",
    "TimingLog",
    "TrajectorySection",
    "check_out_config",
    "derive_seed",
    "fill_keep_best_padding",
    "interval_dict",
    "job_spec",
    "load_toml",
    "local_executor",
    "override_sections",
    "ranking_summary",
    "run_stage",
    "sections_dict",
    "torch_threads",
    "versions",
]

"""Plumbing shared by the studies (private): configuration sections read from TOML, the output
directory and its resumable stages, seeds, and the plain-data summaries of results.json.

* :mod:`.config` — :func:`load_toml`, :func:`override_sections`, :func:`sections_dict`;
* :mod:`.sections` — the ``[trajectory]`` and ``[analysis]`` sections of the r_Q studies;
* :mod:`.stages` — :func:`derive_seed`, :func:`torch_threads`, :func:`versions`,
  :func:`check_out_config` (lock, configuration identity, ``config.json``) with
  :func:`locked_output` and :func:`read_only`, :func:`config_identity`, :func:`job_spec`,
  :func:`local_executor`, :func:`run_stage`, :class:`TimingLog`, :func:`verify_output`
  (``mis verify``);
* :mod:`.limits` — :func:`check_resources` and the footprints of the studies (size
  ceilings checked before anything is allocated);
* :mod:`.summaries` — :func:`interval_dict`, :func:`ranking_summary`,
  :func:`fill_keep_best_padding`, :data:`ORIGINAL`.
"""

from mis.studies._common.config import load_toml, override_sections, sections_dict
from mis.studies._common.limits import (
    MAX_JOBS,
    audit_footprint,
    check_resources,
    molecular_footprint,
    synthetic_footprint,
)
from mis.studies._common.sections import AnalysisSection, TrajectorySection
from mis.studies._common.stages import (
    LOCK,
    STORE,
    OutputReport,
    TimingLog,
    check_out_config,
    config_identity,
    derive_seed,
    job_spec,
    local_executor,
    locked_output,
    read_only,
    run_stage,
    torch_threads,
    verify_output,
    versions,
)
from mis.studies._common.summaries import (
    ORIGINAL,
    fill_keep_best_padding,
    interval_dict,
    ranking_summary,
)

__all__ = [
    "LOCK",
    "MAX_JOBS",
    "ORIGINAL",
    "STORE",
    "AnalysisSection",
    "OutputReport",
    "TimingLog",
    "TrajectorySection",
    "audit_footprint",
    "check_out_config",
    "check_resources",
    "config_identity",
    "derive_seed",
    "fill_keep_best_padding",
    "interval_dict",
    "job_spec",
    "load_toml",
    "local_executor",
    "locked_output",
    "molecular_footprint",
    "override_sections",
    "ranking_summary",
    "read_only",
    "run_stage",
    "sections_dict",
    "synthetic_footprint",
    "torch_threads",
    "verify_output",
    "versions",
]

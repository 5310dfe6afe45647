"""End-to-end studies, one package each, and the plumbing they share.

* :mod:`mis.studies.synthetic` — the synthetic validation study of Aubinais et al. (2025),
  §5.1 (``mis demo``, ``mis synth``);
* :mod:`mis.studies.audit` — the PTQ privacy audit of Zhang et al. (2025) (``mis audit``);
* :mod:`mis.studies.molecular` — the molecular study of Aubinais et al. (2025), §5.2
  (``mis molecular``);
* :mod:`mis.studies._common` — configuration sections, the output directory and its
  resumable stages, seeds, results summaries.

Every study package has the same shape: ``config.py`` (``Config``, ``load_config``,
``default_config``, ``*Section``), its jobs, ``pipeline.py`` (``run_<study>``),
``analysis.py`` and ``report.py`` (``write_report``, ``summary_markdown``).
"""

from mis.studies import audit, molecular, synthetic
from mis.studies.audit import run_audit
from mis.studies.molecular import run_molecular
from mis.studies.synthetic import run_synthetic

__all__ = ["audit", "molecular", "run_audit", "run_molecular", "run_synthetic", "synthetic"]

"""The molecular study of Aubinais et al. (2025), §5.2: ``mis molecular`` (needs ``mis[chem]``).

* :mod:`.config` — :class:`Config`, its sections and :class:`TaskSpec`, :func:`load_config`
  (TOML), :func:`default_config` (FreeSolv and solubility);
* :mod:`.jobs` — the resumable job of one task (features, runs, trajectories);
* :mod:`.analysis` — r_Q rankings and the performance of the quantized models;
* :mod:`.pipeline` — :func:`run_molecular`;
* :mod:`.report` — ``report.md``, CSV and the privacy–performance figure.
"""

from mis.studies.molecular.config import Config, TaskSpec, default_config, load_config
from mis.studies.molecular.pipeline import run_molecular
from mis.studies.molecular.report import summary_markdown

__all__ = [
    "Config",
    "TaskSpec",
    "default_config",
    "load_config",
    "run_molecular",
    "summary_markdown",
]

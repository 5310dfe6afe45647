"""The synthetic validation study of Aubinais et al. (2025), §5.1: ``mis demo`` / ``mis synth``.

* :mod:`.config` — :class:`Config` and its sections, :func:`load_config` (TOML),
  :func:`default_config` (the paper's study), :func:`demo_config` (the reduced one);
* :mod:`.data` — the mixtures, validation / test / training / non-member sets, seed purposes;
* :mod:`.model` — the single layer on ``[x, x²]`` as flat parameter vectors;
* :mod:`.stacked` — :class:`KeepBestRecorder`, the many-runs-at-once trajectory recorder;
* :mod:`.jobs` — the resumable training and discriminator jobs;
* :mod:`.pipeline` — :func:`run_synthetic`, the stages end to end;
* :mod:`.analysis` — r_Q, rankings, stability, agreement with the MIS, accuracies;
* :mod:`.report` — ``report.md``, CSV tables and figures.
"""

from mis.studies.synthetic.config import Config, default_config, demo_config, load_config
from mis.studies.synthetic.pipeline import run_synthetic
from mis.studies.synthetic.report import summary_markdown

__all__ = [
    "Config",
    "default_config",
    "demo_config",
    "load_config",
    "run_synthetic",
    "summary_markdown",
]

"""The synthetic validation study of Aubinais et al. (2025), §5.1: ``mis demo`` / ``mis synth``.

* :mod:`.config` — :class:`Config` and its sections, :func:`load_config` (TOML),
  :func:`default_config` (the paper's study), :func:`demo_config` (the reduced one);
* :mod:`.data` — the mixtures, validation / test / training / non-member sets, seed purposes;
* :mod:`.model` — the single layer on ``[x, x²]`` as flat parameter vectors (one or two
  logits);
* :mod:`.streaming` — :class:`StreamingRecorder`, r_Q over every distinct quantized checkpoint
  of many runs at once, streamed;
* :mod:`.jobs` — the resumable training (fused minibatch Adam) and cross-fitted
  discriminator jobs;
* :mod:`.calibration` — original-model accuracies for calibrating the free choices against
  Table 2;
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

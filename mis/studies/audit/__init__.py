"""The PTQ privacy audit of Zhang et al. (2025), *Bits for Privacy*: ``mis audit``.

* :mod:`.config` — :class:`Config`, its sections and :class:`Variant`, :func:`load_config`
  (TOML), :func:`default_config` (the embedded digits audit);
* :mod:`.seeds` — seed purposes; :mod:`.data` — the audit pool, test split and keep masks;
* :mod:`.models` — architecture, trainer choice, packed weights;
* :mod:`.jobs` — the resumable training and quantization jobs;
* :mod:`.scoring` — the attacks on every target and variant;
* :mod:`.analysis` — metrics, intervals, paired tests with Holm's correction, and
  :func:`~mis.studies.audit.analysis.verdict` (which quantizer to ship);
* :mod:`.pipeline` — :func:`run_audit`, the stages end to end;
* :mod:`.report` — ``report.md``, CSV tables and figures; :func:`summary_markdown`;
* :mod:`.own` — :func:`audit_model`, the audit of your own model, data, training function
  and quantizers from Python.
"""

from mis.studies.audit.config import Config, Variant, default_config, load_config
from mis.studies.audit.own import audit_model
from mis.studies.audit.pipeline import run_audit
from mis.studies.audit.report import summary_markdown

__all__ = [
    "Config",
    "Variant",
    "audit_model",
    "default_config",
    "load_config",
    "run_audit",
    "summary_markdown",
]

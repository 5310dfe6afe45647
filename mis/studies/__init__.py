"""End-to-end studies: configuration, resumable stages, results.

* :mod:`mis.studies.config` — TOML configuration of the synthetic study (defaults in code).
* :mod:`mis.studies.synthetic` — the synthetic validation study of Aubinais et al. (2025),
  §5.1: ``run_synthetic(config, out)`` trains the runs, records quantized validation losses,
  computes r_Q, the MIS baseline, rankings, stability and accuracies, and writes a report.
* :mod:`mis.studies.molecular` — the molecular study of Aubinais et al. (2025), §5.2:
  ``run_molecular(config, out)`` (configuration in :mod:`mis.studies.molecular_config`).
* :mod:`mis.studies.stacked` — stacked (many models at once) quantizers and a keep-best
  trajectory recorder for the quadratic single layer.

Torch is imported only when a study runs.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SyntheticConfig": "config",
    "load_config": "config",
    "demo_config": "config",
    "full_config": "config",
    "run_synthetic": "synthetic",
    "stacked_quantize": "stacked",
    "KeepBestRecorder": "stacked",
    "StackedQuantizer": "stacked",
    "MolecularConfig": "molecular_config",
    "load_molecular_config": "molecular_config",
    "default_molecular_config": "molecular_config",
    "run_molecular": "molecular",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mis.studies' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"mis.studies.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

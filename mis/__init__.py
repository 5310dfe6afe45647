"""mis: membership-inference measurement for (quantized) neural networks.

The statistics (:mod:`mis.metrics`, :mod:`mis.attacks`, :mod:`mis.security`) never import
torch; importing ``mis`` does not either. Two torch-side names are offered here, loaded on
first access so that ``import mis.metrics`` stays torch-free:

* :class:`RQRecorder` — r_Q in any PyTorch training loop (:mod:`mis.train.rq_recorder`);
* :func:`audit_model` — the PTQ privacy audit of your own model, data, training function and
  quantizers (:mod:`mis.studies.audit.own`).
"""

__version__ = "0.1.0"

__all__ = ["RQRecorder", "__version__", "audit_model"]


def __getattr__(name):
    # the torch boundary (module docstring)
    if name == "RQRecorder":
        from mis.train.rq_recorder import RQRecorder

        return RQRecorder
    if name == "audit_model":
        from mis.studies.audit.own import audit_model

        return audit_model
    raise AttributeError(f"module 'mis' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"RQRecorder", "audit_model"})

"""mis: membership-inference measurement for (quantized) neural networks.

The statistics (:mod:`mis.metrics`, :mod:`mis.attacks`, :mod:`mis.security`) never import
torch; importing ``mis`` does not either. :class:`RQRecorder` (r_Q in any PyTorch training
loop, :mod:`mis.train.rq_recorder`) is the one torch-side name offered here, loaded on first
access so that ``import mis.metrics`` stays torch-free.
"""

__version__ = "0.1.0"

__all__ = ["RQRecorder", "__version__"]


def __getattr__(name):
    if name == "RQRecorder":
        from mis.train.rq_recorder import RQRecorder  # the torch boundary (module docstring)

        return RQRecorder
    raise AttributeError(f"module 'mis' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | {"RQRecorder"})

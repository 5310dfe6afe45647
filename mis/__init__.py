"""mis: membership-inference measurement for (quantized) neural networks.

Subpackages are imported lazily by their users so that the statistics
(``mis.metrics``, ``mis.attacks``, ``mis.security``) never pull in torch.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

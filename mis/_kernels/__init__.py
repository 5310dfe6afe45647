"""Private numba kernels.

Kernels take contiguous, already-validated arrays (float64 unless stated) and
never check their inputs: the public wrappers in ``mis.metrics``,
``mis.attacks`` and ``mis.security`` do that.
"""

"""Private numba kernels.

Kernels take contiguous, already-validated arrays (float64 unless stated) and
never check their inputs: the public wrappers in ``mis.metrics``,
``mis.attacks`` and ``mis.security`` do that. Flags live in one place,
:mod:`mis._kernels._config`.

Every public kernel (a numba dispatcher whose name has no leading underscore)
has a slow, obvious twin of the same name and parameters in ``tests/naive.py``,
compared with it on random inputs by ``tests/test_naive_twins.py``; helpers
that are not entry points carry a leading underscore.
"""

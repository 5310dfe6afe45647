"""One place for numba flags, so every kernel compiles the same way.

``cache=True`` stores compiled machine code next to the sources, so only the
first import on a machine pays the compile time. ``fastmath`` stays off: the
estimators must be reproducible bit for bit on the CPU.
"""

import numba

JIT = dict(nogil=True, cache=True, fastmath=False)
PARALLEL_JIT = dict(JIT, parallel=True)

njit = numba.njit
prange = numba.prange


def jit(fn):
    """Compile a serial kernel with the project's flags."""
    return numba.njit(**JIT)(fn)


def parallel_jit(fn):
    """Compile a kernel that uses ``prange`` with the project's flags."""
    return numba.njit(**PARALLEL_JIT)(fn)

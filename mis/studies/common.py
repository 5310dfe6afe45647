"""Pieces shared by the studies (synthetic r_Q study, PTQ audit): seeds, torch threads, versions."""

from __future__ import annotations

import contextlib
import platform
import sys
import zlib

import numpy as np


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed from the master seed and keys (ints, or strings hashed with CRC-32).

    ``numpy.random.SeedSequence([seed, *keys])``: independent streams for every purpose and
    index, whatever order the jobs run in.
    """
    ints = [int(seed)] + [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    state = np.random.SeedSequence(ints).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1


@contextlib.contextmanager
def torch_threads(n: int):
    """``torch.set_num_threads(n)`` for the duration (0: leave as is); restored after.

    Tiny models want one thread: two stall on a busy 2-core machine.
    """
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def versions() -> dict[str, str]:
    """Versions of mis and its numerical stack, for results.json."""
    import numba
    import scipy
    import torch

    from mis import __version__

    return {
        "mis": __version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
    }

"""Progress bars for long loops (private): one tqdm bar on stderr, quiet when not a terminal."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

__all__ = ["progress_bar"]


def progress_bar(iterable=None, *, total=None, desc=None, enabled=None):
    """A tqdm bar on stderr, quiet (disabled) when stderr is not a terminal.

    ``enabled=None`` decides from ``sys.stderr.isatty()``; ``True``/``False`` force it.
    """
    if enabled is None:
        enabled = bool(getattr(sys.stderr, "isatty", lambda: False)())
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, leave=False)

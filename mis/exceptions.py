"""Errors and warnings raised by mis.

Every invalid-input error is a :class:`ValueError` subclass so callers can
catch the standard exception; the message names the parameter, what was
expected and what was received.

Two families, which the command line maps to its exit statuses:

* usage errors (exit status 2): :class:`MisValueError` and its subclasses
  :class:`ConfigMismatchError` and :class:`ResourceLimitError` — the input,
  the configuration or an option is wrong; change it and run again;
* runtime errors (exit status 1): :class:`StoreCorruptError` (a run-store file
  is damaged: ``mis verify OUT --repair``, then re-run) and
  :class:`OutputLockedError` (another run holds the output directory), plus
  the operating system's ``OSError`` (disk full, read-only file system, ...).

All of them derive from :class:`MisError`.
"""


class MisError(Exception):
    """Base class of every error raised by mis itself."""


class MisValueError(MisError, ValueError):
    """Invalid input: the message names the parameter, the expectation and the value."""


class StoreCorruptError(MisValueError):
    """A run-store file is missing, truncated, does not match its checksum, or its manifest
    is unreadable or names a file outside the store."""


class ConfigMismatchError(MisValueError):
    """An output directory holds results of another configuration (or another mis version)."""


class ResourceLimitError(MisValueError):
    """A request exceeds a documented ceiling or the machine's memory or disk; the message
    says how much would be needed."""


class OutputLockedError(MisError, RuntimeError):
    """Another process holds the lock of the output directory (the message names its PID)."""


class UndefinedMetricWarning(UserWarning):
    """A metric is not defined for the data given (the result is NaN)."""


class DegenerateStatisticWarning(UserWarning):
    """A statistic hit a degenerate case (e.g. zero variance); see the docstring for the rule."""

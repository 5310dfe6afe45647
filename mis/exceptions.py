"""Errors and warnings raised by mis.

Every invalid-input error is a :class:`ValueError` subclass so callers can
catch the standard exception; the message names the parameter, what was
expected and what was received.
"""


class MisValueError(ValueError):
    """Invalid input: the message names the parameter, the expectation and the value."""


class StoreCorruptError(MisValueError):
    """A run-store file is missing, truncated, or does not match its checksum."""


class UndefinedMetricWarning(UserWarning):
    """A metric is not defined for the data given (the result is NaN)."""


class DegenerateStatisticWarning(UserWarning):
    """A statistic hit a degenerate case (e.g. zero variance); see the docstring for the rule."""

"""Shared pytest configuration: hypothesis profiles.

``HYPOTHESIS_PROFILE=thorough`` runs more examples; the default keeps the
suite fast on a 2-core CI machine. Deadlines are off because the first call
of a numba kernel includes its compilation.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

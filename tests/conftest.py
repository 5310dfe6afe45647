"""Shared pytest configuration: hypothesis profiles and a one-torch-thread fixture.

``HYPOTHESIS_PROFILE=thorough`` runs more examples; the default keeps the
suite fast on a 2-core CI machine. Deadlines are off because the first call
of a numba kernel includes its compilation.
"""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one torch thread avoids OpenMP barrier stalls on a busy 2-core machine.

    Modules with small models use it for every test via
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    from mis.studies._common import torch_threads

    with torch_threads(1):
        yield

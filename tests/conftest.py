"""Shared fixtures for the test suite."""

import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """Return a NumPy Generator seeded from the test's node id.

    Each test, and each parametrized case, gets its own stream that does not
    change when other tests are added or run in another order.
    """
    seed = zlib.crc32(request.node.nodeid.encode())
    return np.random.default_rng(seed)

"""Shared fixtures: every backend-facing test is parametrized over backend names.

Names are plain strings, so collecting the tests imports no framework; a
backend that is not installed is skipped with the reason and the install line.
"""

from __future__ import annotations

import numpy as np
import pytest

import backends

BACKEND_NAMES = list(backends.NAMES)


def require(name: str) -> None:
    reason = backends.why_unavailable(name)
    if reason:
        pytest.skip(reason)


@pytest.fixture(params=BACKEND_NAMES, scope="session")
def backend_name(request) -> str:
    require(request.param)
    return request.param


@pytest.fixture(scope="session")
def backend(backend_name):
    """A float32 backend with seeded random weights (fast, no files needed)."""
    return backends.get_backend(backend_name, weights="random", device="cpu")


@pytest.fixture(scope="session")
def bundled_backend(backend_name):
    return backends.get_backend(backend_name, weights="bundled", device="cpu")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)

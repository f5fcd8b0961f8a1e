"""Fixtures for the output tests."""

from __future__ import annotations

import pytest
from output_records import make_total, make_window

try:  # logfire's own testing fixture, for the LOGFIRE output tests
    from logfire.testing import capfire  # noqa: F401
except ImportError:  # pragma: no cover - logfire is an optional extra
    pass


@pytest.fixture
def total_factory():
    return make_total


@pytest.fixture
def window_factory():
    return make_window

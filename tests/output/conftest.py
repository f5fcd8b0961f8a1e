"""Fixtures for the output tests."""

from __future__ import annotations

import pytest

from output_records import make_total, make_window


@pytest.fixture
def total_factory():
    return make_total


@pytest.fixture
def window_factory():
    return make_window

"""warn_once: logged once per logger (or per ``seen`` set), and with a category, issued through
Python's warnings once per process, attributed to the caller outside the package, never raising."""

from __future__ import annotations

import logging
import warnings

import pytest
from codecarbon_callbacks_core import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core._shared import warn_once

LOG = logging.getLogger("codecarbon_callbacks_core.test_shared")


def test_a_category_is_issued_once_per_process_whatever_the_seen_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        caplog.at_level(logging.DEBUG, logger=LOG.name),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        for _ in range(3):  # three objects, each with its own seen set: each logs at WARNING
            warn_once(
                "k",
                "CPU counted at %d W",
                42,
                log=LOG,
                seen=set(),
                category=CodeCarbonCallbacksWarning,
            )
    assert [(w.category, str(w.message)) for w in caught] == [
        (CodeCarbonCallbacksWarning, "CPU counted at 42 W")
    ]
    assert caught[0].filename == __file__  # the first frame outside the package: this test
    assert [r.levelno for r in caplog.records] == [logging.WARNING] * 3


def test_without_a_category_it_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.DEBUG, logger=LOG.name),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        warn_once("quiet", "rank 1: %s", "logged only", log=LOG)
        warn_once("quiet", "rank 1: %s", "logged only", log=LOG)
    assert caught == []
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG]


def test_a_rank_that_only_logs_does_not_use_up_the_warning() -> None:
    warn_once("shared", "message", log=LOG)  # a non-writing tracker of this process
    with pytest.warns(CodeCarbonCallbacksWarning, match="message"):
        warn_once("shared", "message", log=LOG, category=CodeCarbonCallbacksWarning)


def test_an_error_filter_never_raises_into_training(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger=LOG.name), warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_once("strict", "output failed", log=LOG, category=CodeCarbonCallbacksWarning)
    assert "output failed" in caplog.text


def test_the_category_is_a_filterable_user_warning() -> None:
    assert issubclass(CodeCarbonCallbacksWarning, UserWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", CodeCarbonCallbacksWarning)
        warn_once("filtered", "world average", log=LOG, category=CodeCarbonCallbacksWarning)
    assert caught == []

"""Checks of BoAmps reports against the official schema (reference copy; see ``reference_dir``)."""

from __future__ import annotations

from typing import Any


def schema_errors(validator: Any, report: dict[str, Any]) -> list[str]:
    """The official schema's complaints about ``report``, one ``path: message`` each."""
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(report)]

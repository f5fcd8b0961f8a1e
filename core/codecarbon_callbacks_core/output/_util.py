"""Helpers shared by the output methods: scrub secrets, JSON-safe records (and ``warn_once``,
re-exported from :mod:`codecarbon_callbacks_core._shared`)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from codecarbon_callbacks_core._shared import warn_once

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData

logger = logging.getLogger(__name__)

#: Environment variables whose values are secrets and are scrubbed from every message we log.
SECRET_ENV_VARS: tuple[str, ...] = (
    "PROMETHEUS_PASSWORD",
    "CODECARBON_API_KEY",
    "LOGFIRE_TOKEN",
    "CODECARBON_ELECTRICITYMAPS_API_TOKEN",
)


def known_secrets(extra: Iterable[str | None] = ()) -> list[str]:
    """The secret strings to scrub: the given ones plus those found in the environment."""
    values = [v for v in extra if v]
    values += [os.environ[name] for name in SECRET_ENV_VARS if os.environ.get(name)]
    # Very short values would blank out ordinary words; secrets are longer than this.
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every known secret (and URL credentials) replaced by ``***``."""
    for secret in known_secrets(secrets):
        text = text.replace(secret, "***")
    return text


def describe_error(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """A one-line, secret-free description of ``exc`` for a log message."""
    return scrub(f"{type(exc).__name__}: {exc}", secrets)[:500]


def sanitize_url(url: str) -> str:
    """``url`` without user:password and without its query (which may carry a token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # a port that is no number or out of range: keep its text, never fail
        host = parts.netloc.rpartition("@")[2]
    else:
        if port:
            host = f"{host}:{port}"
    query = "***" if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may be secret: password and query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found = [parts.password or "", parts.username or ""]
    found += [value for _, value in parse_qsl(parts.query)]
    return [s for s in found if s]


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def record_to_dict(record: EmissionsData) -> dict[str, Any]:
    """The record's fields as a JSON-safe dict (NaN/inf become None, odd objects strings)."""
    if dataclasses.is_dataclass(record):
        data = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    else:  # a CodeCarbon-like object with .values
        data = dict(getattr(record, "values", {}))
    return _json_safe(data)


def dumps(data: Any) -> str:
    """Compact, deterministic JSON."""
    return json.dumps(data, sort_keys=False, separators=(",", ":"), default=str, allow_nan=False)


def core_install_hint(extra: str) -> str:
    """How to install the core with an extra: ``pip install "codecarbon-callbacks-core[extra]"``
    (quoted, for zsh) and, from a clone, at its root, ``pip install -e "./core[extra]"``."""
    return (
        f'pip install "codecarbon-callbacks-core[{extra}]" '
        f'(from a clone, at its root: pip install -e "./core[{extra}]")'
    )


def require_module(module: str, extra: str, what: str) -> None:
    """Raise ImportError naming the pip extra when ``module`` is not installed (no import)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ImportError(f"{what} needs the {module!r} package: {core_install_hint(extra)}")


__all__ = [
    "core_install_hint",
    "describe_error",
    "dumps",
    "known_secrets",
    "record_to_dict",
    "require_module",
    "sanitize_url",
    "scrub",
    "url_secrets",
    "warn_once",
]

"""A callback's arguments: checks, what a checkpoint may keep of them, the configuration key.

Pure functions over the arguments as given (a mapping by name); none holds a session. Secrets
(``api_key``, tokens, URLs carrying credentials, a query or a fragment) never leave them: not
into a checkpoint, not into the configuration key.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from typing import Any

#: tracker parameters holding a URL, which may carry a user:password or a token in its query
URL_PARAMETERS = ("emissions_endpoint", "api_endpoint", "prometheus_url")


def _json_able(value: Any) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def _url_carries_secret(url: str) -> bool:
    """Whether a URL may hold a secret: credentials (``user:password@``), a query, a fragment."""
    return any(mark in url for mark in ("@", "?", "#"))


def _url_without_secrets(url: str) -> str:
    """``url`` without ``user:password@``, query and fragment: scheme, host, port and path."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        scheme, rest = "", url
    rest = rest.split("#", 1)[0].split("?", 1)[0]
    authority, slash, path = rest.partition("/")
    return f"{scheme}{separator}{authority.rpartition('@')[2]}{slash}{path}"


def checkpoint_arguments(
    arguments: Mapping[str, Any], *, log: logging.Logger | None = None
) -> dict[str, Any]:
    """The callback arguments a checkpoint may keep, to rebuild the callback on resume.

    Only given (not None), JSON-able arguments, and never a secret: the secret parameters
    (``api_key``, ``electricitymaps_api_token``, ``co2_signal_api_token``) are left out, and so
    is a URL parameter (``emissions_endpoint``, ``api_endpoint``, ``prometheus_url``) that carries
    credentials, a query or a fragment. A callback rebuilt from these takes those from its own
    environment (``CODECARBON_*``, ``.codecarbon.config``).

    Args:
        arguments: the callback's arguments by name.
        log: where the names left out are logged at debug level (names only, never values).

    Returns:
        A new dict, JSON-able.
    """
    from codecarbon_callbacks_core.config import SECRET_PARAMETERS

    kept: dict[str, Any] = {}
    for name, value in arguments.items():
        if value is None or name in SECRET_PARAMETERS or not _json_able(value):
            continue
        if name in URL_PARAMETERS and isinstance(value, str) and _url_carries_secret(value):
            continue
        kept[name] = value
    left_out = sorted(k for k, v in arguments.items() if v is not None and k not in kept)
    if log is not None and left_out:
        log.debug("not saved in checkpoints (secret or not JSON): %s", ", ".join(left_out))
    return json.loads(json.dumps(kept))


def configuration_key(arguments: Mapping[str, Any]) -> str:
    """A short digest that names a callback's configuration, the same in every process.

    Computed from :func:`checkpoint_arguments` plus, for a URL parameter left out because it
    carries a secret, that URL without its credentials, query and fragment (so two callbacks that
    differ only in the host they report to differ). No secret goes into it. Arguments that are
    not JSON-able (``output_handlers``, a logger object) do not count.

    Args:
        arguments: the callback's arguments by name.

    Returns:
        12 hexadecimal digits.
    """
    import hashlib

    named = checkpoint_arguments(arguments)
    for name in URL_PARAMETERS:
        value = arguments.get(name)
        if name not in named and isinstance(value, str):
            named[name] = _url_without_secrets(value)
    text = json.dumps(named, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def check_positive(name: str, value: Any, *, integer: bool = False) -> Any:
    """``value`` when it is None or a positive finite number (an int with ``integer``).

    Raises:
        ValueError: naming ``name`` and what it accepts.
    """
    if value is None:
        return None
    kind = "a positive integer" if integer else "a positive number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be {kind} or None, got {value!r}")
    if integer and not isinstance(value, int):
        raise ValueError(f"{name} must be {kind} or None, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be {kind} or None, got {value!r}")
    return value


def as_dict(value: Any, name: str) -> dict[str, Any]:
    """A user-given task or dataset as a plain dict (dict, dataclass or object with to_dict())."""
    if isinstance(value, Mapping):
        return dict(value)
    for method in ("to_dict", "model_dump", "dict"):
        fn = getattr(value, method, None)
        if callable(fn):
            out = fn()
            if isinstance(out, Mapping):
                return {k: v for k, v in out.items() if v is not None}
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
    raise ValueError(
        f"{name} must be a dict (BoAmps camelCase keys) or a BoAmps object, got {value!r}"
    )


__all__ = [
    "URL_PARAMETERS",
    "as_dict",
    "check_positive",
    "checkpoint_arguments",
    "configuration_key",
]

"""Parsers of the tracker's parameter values: each takes (name, raw value, source) and returns
the typed value, or raises :class:`ConfigError` naming the parameter, where it came from and what
would be accepted. Sources: ``"argument"``, ``"environment variable X"``, ``"<file> [codecarbon]
<key>"``. Used by :mod:`codecarbon_callbacks_core.config`."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from codecarbon_callbacks_core.errors import ConfigError
from codecarbon_callbacks_core.output._util import sanitize_url
from codecarbon_callbacks_core.output.base import OutputMethod

logger = logging.getLogger(__name__)

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

#: The accepted range of each numeric parameter: ``(lowest, highest, lowest_included, unit)``.
#: The upper bounds are far beyond any real use; they keep a typo (``1e10``) from reaching a
#: thread timer or a spreadsheet as an absurd figure.
NUMBER_RANGES: dict[str, tuple[float, float, bool, str]] = {
    "measure_power_secs": (0.01, 86_400.0, True, "seconds"),
    "api_call_interval": (1, 1_000_000, True, "measurements"),
    "pue": (1.0, 10.0, True, "power usage effectiveness"),
    "wue": (0.0, 100.0, True, "litres per kWh"),
    "force_cpu_power": (0.0, 100_000.0, True, "W"),
    "force_ram_power": (0.0, 100_000.0, True, "W"),
    "force_carbon_intensity_g_co2e_kwh": (0.0, 5_000.0, True, "gCO2eq/kWh"),
    "spool_max_bytes": (1, 2**40, True, "bytes"),
    "spool_max_age_s": (0.0, 3650 * 86_400.0, False, "seconds"),
}


def public_url(url: str) -> str:
    """``url`` without user:password and query; a ``host:port`` (no scheme) stays in that form."""
    if "://" in url:
        return sanitize_url(url)
    return sanitize_url("http://" + url).removeprefix("http://")


# --- values --------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def describe_source(source: str) -> str:
    return "" if source == "argument" else f" (from {source})"


def parse_bool(name: str, value: Any, source: str = "argument") -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(
        f"{name}{describe_source(source)} must be a boolean (true/false, yes/no, 1/0), "
        f"got {value!r}"
    )


def parse_float(name: str, value: Any, source: str = "argument") -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}{describe_source(source)} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(
            f"{name}{describe_source(source)} must be a number, got {value!r}"
        ) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}{describe_source(source)} must be a finite number, got {value!r}")
    return number


def parse_int(name: str, value: Any, source: str = "argument") -> int:
    number = parse_float(name, value, source)
    if number != int(number):
        raise ConfigError(f"{name}{describe_source(source)} must be a whole number, got {value!r}")
    return int(number)


def parse_str(name: str, value: Any, source: str = "argument") -> str:
    """Text, without a NUL byte (no file, CSV cell or HTTP header can hold one)."""
    if not isinstance(value, str):
        raise ConfigError(
            f"{name}{describe_source(source)} must be a string, got {type(value).__name__}"
        )
    if "\x00" in value:
        raise ConfigError(f"{name}{describe_source(source)} must not contain a NUL byte (\\x00)")
    return value


def parse_path(name: str, value: Any, source: str = "argument") -> str:
    """A path (text or ``os.PathLike``) without a NUL byte."""
    if isinstance(value, os.PathLike):
        try:
            value = os.fspath(value)
        except TypeError as e:
            raise ConfigError(f"{name}{describe_source(source)} must be a path, got {e}") from None
        if isinstance(value, bytes):
            raise ConfigError(f"{name}{describe_source(source)} must be a text path, got bytes")
    return parse_str(name, value, source)


#: values outside the range with a meaning of their own: CodeCarbon's api_call_interval=-1,
#: "live outputs never; only flush() and stop()"
SPECIAL_VALUES: dict[str, tuple[float, ...]] = {"api_call_interval": (-1,)}


def in_range(name: str, number: float, source: str) -> None:
    low, high, low_included, unit = NUMBER_RANGES[name]
    if number in SPECIAL_VALUES.get(name, ()):
        return
    if (number < low if low_included else number <= low) or number > high:
        lower = ">=" if low_included else ">"
        raise ConfigError(
            f"{name}{describe_source(source)} must be {lower} {low:g} and <= {high:g} ({unit}), "
            f"got {number:g}"
        )


def ranged(parser: Callable[[str, Any, str], Any]) -> Callable[[str, Any, str], Any]:
    """``parser`` followed by the parameter's :data:`NUMBER_RANGES` check."""

    def parse(name: str, value: Any, source: str = "argument") -> Any:
        number = parser(name, value, source)
        in_range(name, number, source)
        return number

    return parse


def parse_url(name: str, value: Any, source: str = "argument", *, host_port: bool = False) -> str:
    """An ``http://`` or ``https://`` URL with a host and, if any, a port from 1 to 65535.

    With ``host_port`` (``prometheus_url``, as CodeCarbon and the Pushgateway client take it),
    ``host`` or ``host:port`` without a scheme is accepted too, and kept as given. The value is
    never shown with its user:password or query in a message.
    """
    text = parse_str(name, value, source)
    shown = public_url(text) if text else text
    what = "an http(s) URL or host:port" if host_port else "an http:// or https:// URL"

    def bad(reason: str) -> ConfigError:
        return ConfigError(
            f"{name}{describe_source(source)} must be {what}, got {shown!r}: {reason}"
        )

    if not text:
        raise bad("it is empty")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text):
        raise bad("it contains a space or a control character")
    candidate = text if ("://" in text or not host_port) else "http://" + text
    try:
        parts = urlsplit(candidate)
        port = parts.port
    except ValueError as e:
        raise bad(f"the port must be a whole number from 1 to 65535 ({e})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise bad(
            f"the scheme {parts.scheme + '://' if parts.scheme else '(none)'} is not "
            "http:// or https://"
        )
    host = parts.hostname or ""
    if not host:
        raise bad("it has no host")
    if not (host.startswith("[") or ":" in host or all(c.isalnum() or c in "-._~%" for c in host)):
        raise bad(f"the host {host!r} has characters a host name cannot hold")
    if port == 0:
        raise bad("the port must be a whole number from 1 to 65535")
    return text


def parse_logging_logger(name: str, value: Any, source: str = "argument") -> Any:
    """A :class:`logging.Logger`, a ``LoggerOutput`` (anything with a ``logger``) or a logger
    name (text, from every source); the logger is looked up when the output is built."""
    if isinstance(value, str):
        text = parse_str(name, value, source).strip()
        if not text:
            raise ConfigError(
                f"{name}{describe_source(source)} must be a logger name, got {value!r}"
            )
        return text
    if isinstance(value, (logging.Logger, logging.LoggerAdapter)) or hasattr(value, "logger"):
        return value
    raise ConfigError(
        f"{name}{describe_source(source)} must be a logging.Logger, a LoggerOutput "
        f"or a logger name, got {type(value).__name__}"
    )


def parse_output_methods(value: Any, source: str = "argument") -> list[OutputMethod]:
    """Enum members, their string values, or a comma-separated string -> list of OutputMethod."""
    if value is None:
        return []
    if isinstance(value, (str, OutputMethod)):
        items: list[Any] = [
            v
            for v in str(value.value if isinstance(value, OutputMethod) else value).split(",")
            if v.strip()
        ]
    elif isinstance(value, (list, tuple, set)):
        items = list(value)
    else:
        raise ConfigError(
            f"output_methods{describe_source(source)} must be a list of OutputMethod or names, "
            f"got {value!r}"
        )
    accepted = ", ".join(m.value for m in OutputMethod)
    methods: list[OutputMethod] = []
    for item in items:
        if isinstance(item, OutputMethod):
            method = item
        elif isinstance(item, str):
            key = item.strip().lower()
            if key.startswith("outputmethod."):
                key = key.split(".", 1)[1]
            try:
                method = OutputMethod(key)
            except ValueError:
                raise ConfigError(
                    f"output_methods{describe_source(source)}: unknown output method {item!r}; "
                    f"accepted: {accepted}"
                ) from None
        else:
            raise ConfigError(
                f"output_methods{describe_source(source)}: unknown output method {item!r}; "
                f"accepted: {accepted}"
            )
        if method not in methods:
            methods.append(method)
    return methods


def parse_gpu_ids(value: Any, source: str = "argument") -> list[int | str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items: list[Any] = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        raise ConfigError(
            f"gpu_ids{describe_source(source)} must be a list of GPU indexes or UUIDs, "
            f"got {value!r}"
        )
    ids: list[int | str] = []
    for item in items:
        if isinstance(item, bool):
            raise ConfigError(
                f"gpu_ids{describe_source(source)}: {item!r} is not a GPU index or UUID"
            )
        if isinstance(item, int):
            if item < 0:
                raise ConfigError(f"gpu_ids{describe_source(source)}: index {item} is negative")
            ids.append(item)
        elif isinstance(item, str) and item.strip().isdigit():
            ids.append(int(item))
        elif isinstance(item, str) and item.strip().upper().startswith(("GPU-", "MIG-")):
            ids.append(item.strip())
        else:
            raise ConfigError(
                f"gpu_ids{describe_source(source)}: {item!r} is neither a GPU index "
                "nor a UUID (GPU-...)"
            )
    return ids


def parse_metadata(value: Any, source: str = "argument") -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(
                f"metadata{describe_source(source)} must be a dict or a JSON object string"
            ) from None
        if isinstance(parsed, dict):
            return parsed
    raise ConfigError(
        f"metadata{describe_source(source)} must be a dict or a JSON object string, got {value!r}"
    )


def choice(name: str, accepted: tuple[str, ...]) -> Callable[[str, Any, str], str]:
    def parse(_: str, value: Any, source: str = "argument") -> str:
        text = str(value).strip().lower() if isinstance(value, str) else value
        if text not in accepted:
            raise ConfigError(
                f"{name}{describe_source(source)} must be one of {', '.join(accepted)}, "
                f"got {value!r}"
            )
        return text

    return parse


def parse_log_level(name: str, value: Any, source: str = "argument") -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        level = logging.getLevelName(value)
        if isinstance(level, str) and level.lower() in LOG_LEVELS:
            return level.lower()
    return choice("log_level", LOG_LEVELS)(name, value, source)


def optional(parser: Callable[[str, Any, str], Any]) -> Callable[[str, Any, str], Any]:
    def parse(name: str, value: Any, source: str = "argument") -> Any:
        if value is None or (
            isinstance(value, str) and value.strip() == "" and source != "argument"
        ):
            return None
        return parser(name, value, source)

    return parse


def parse_prometheus_url(name: str, value: Any, source: str = "argument") -> str | None:
    """The Pushgateway, as :func:`parse_url` with ``host_port``; None or empty text: none (the
    PROMETHEUS output then needs ``prometheus_scrape_address``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return parse_url(name, value, source, host_port=True)


def parse_scrape_address_value(name: str, value: Any, source: str = "argument") -> str:
    """A scrape endpoint's address: ``"host:port"``, ``":port"``, ``"port"`` or an int (port
    0-65535), returned as text.

    Raises:
        ConfigError: anything else, naming the parameter and its source.
    """
    from codecarbon_callbacks_core.output.prometheus_scrape import parse_scrape_address

    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ConfigError(
            f"{name}{describe_source(source)} must be 'host:port', ':port' or a port number, "
            f"got {type(value).__name__}"
        )
    text = parse_str(name, str(value).strip(), source)
    try:
        parse_scrape_address(text)
    except ValueError:
        raise ConfigError(
            f"{name}{describe_source(source)} must be 'host:port', ':port' or a port number "
            f"(0-65535), got {text!r}"
        ) from None
    return text


def url_parser(host_port: bool = False) -> Callable[[str, Any, str], str]:
    def parse(name: str, value: Any, source: str = "argument") -> str:
        return parse_url(name, value, source, host_port=host_port)

    return parse

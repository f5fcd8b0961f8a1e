"""Tracker configuration: argument > ``CODECARBON_*`` environment > ./.codecarbon.config > ~/.codecarbon.config.

Every value is typed and validated here, at construction, so a bad one fails before any training
starts with a message that names the parameter, where it came from and what would be accepted:
URLs are parsed (http(s), a host, a port from 1 to 65535), text and paths hold no NUL byte,
numbers are finite and within :data:`NUMBER_RANGES`, ``output_dir``'s nearest existing folder is
writable (nothing is created) and ``boamps_context_file`` is read. A misspelt keyword argument is
refused with a "did you mean"; unknown ``CODECARBON_*`` variables and config-file keys are
ignored with one warning each per process. URLs are shown without their credentials or query.

The config files are INI files with a ``[codecarbon]`` section whose keys are the parameter names,
e.g.::

    [codecarbon]
    project_name = my-project
    output_methods = csv,logger
    measure_power_secs = 5

Environment variables are the upper-cased names with a ``CODECARBON_`` prefix
(``CODECARBON_PROJECT_NAME``, ``CODECARBON_OUTPUT_METHODS=csv,api``).
"""

from __future__ import annotations

import configparser
import dataclasses
import difflib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning, ConfigError
from codecarbon_callbacks_core.output._util import sanitize_url
from codecarbon_callbacks_core.output.base import BaseOutput, OutputMethod

logger = logging.getLogger(__name__)

#: Marks "not given" (``None`` can be a meaningful value).
_UNSET: Any = object()

ENV_PREFIX = "CODECARBON_"
CONFIG_SECTION = "codecarbon"
CONFIG_FILE_NAME = ".codecarbon.config"

TRACKING_MODES = ("machine", "process")
CSV_WRITE_MODES = ("append", "update")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DEPRECATED_SAVE_FLAGS = {
    "save_to_file": OutputMethod.CSV,
    "save_to_api": OutputMethod.API,
    "save_to_logger": OutputMethod.LOGGER,
    "save_to_prometheus": OutputMethod.PROMETHEUS,
    "save_to_logfire": OutputMethod.LOGFIRE,
}
#: Parameters that hold secrets: never logged, never written, never in an error message.
SECRET_PARAMETERS = frozenset({"api_key", "electricitymaps_api_token", "co2_signal_api_token"})
#: Parameters that hold a URL, which may carry a user:password or a token in its query: shown
#: (repr, public_dict, error messages) without them.
URL_PARAMETERS = ("api_endpoint", "emissions_endpoint", "prometheus_url")
#: Parameters that hold a path.
PATH_PARAMETERS = ("output_dir", "output_file", "windows_output_file", "boamps_context_file")

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


@dataclass(repr=False)
class TrackerConfig:
    """The resolved, validated configuration of one tracker (parameter names as CodeCarbon's).

    Its ``repr`` and :meth:`public_dict` leave out the secrets and show every URL without its
    user:password and query.
    """

    project_name: str = "codecarbon"
    measure_power_secs: float = 15.0
    api_call_interval: int = 8
    api_endpoint: str = "https://api.codecarbon.io"
    api_key: str | None = field(default=None, repr=False)
    output_dir: str = "."
    output_file: str = "emissions.csv"
    output_methods: list[OutputMethod] = field(default_factory=lambda: [OutputMethod.CSV])
    output_handlers: list[BaseOutput] = field(default_factory=list)
    logging_logger: Any = None  # a Logger, a LoggerOutput or a logger name
    prometheus_url: str = "localhost:9091"
    gpu_ids: list[int | str] | None = None
    emissions_endpoint: str | None = None  # may carry a token: shown through public_url
    experiment_id: str = ""
    experiment_name: str = "base"
    electricitymaps_api_token: str | None = field(default=None, repr=False)
    tracking_mode: str = "machine"
    log_level: str = "info"
    on_csv_write: str = "append"
    logger_preamble: str = ""
    force_cpu_power: float | None = None
    force_ram_power: float | None = None
    force_carbon_intensity_g_co2e_kwh: float | None = None
    pue: float = 1.0
    wue: float = 0.0
    force_mode_cpu_load: bool = False
    allow_multiple_runs: bool = True
    rapl_include_dram: bool = False
    rapl_prefer_psys: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    # offline location (OfflineEmissionsTracker; also honoured by EmissionsTracker when given)
    country_iso_code: str | None = None
    region: str | None = None
    cloud_provider: str | None = None
    cloud_region: str | None = None
    country_2letter_iso_code: str | None = None
    # ours
    offline: bool = False
    windows_output_file: str = "emissions_windows.csv"
    webhook_windows: bool = False
    spool_max_bytes: int = 10 * 1024 * 1024
    spool_max_age_s: float = 7 * 24 * 3600.0
    prometheus_delete_on_exit: bool = False
    boamps_context_file: str | None = None

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            if not f.repr or f.name in SECRET_PARAMETERS:
                continue
            value = getattr(self, f.name)
            if f.name in URL_PARAMETERS and isinstance(value, str):
                value = public_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def public_dict(self) -> dict[str, Any]:
        """The configuration without secrets (safe to log or write): no API key or token, and
        each URL without its user:password and query."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in SECRET_PARAMETERS or f.name in ("output_handlers", "logging_logger"):
                continue
            value = getattr(self, f.name)
            if f.name == "output_methods":
                value = [m.value for m in value]
            elif f.name in URL_PARAMETERS and value:
                value = public_url(value)
            out[f.name] = value
        return out


def public_url(url: str) -> str:
    """``url`` without user:password and query; a ``host:port`` (no scheme) stays in that form."""
    if "://" in url:
        return sanitize_url(url)
    return sanitize_url("http://" + url).removeprefix("http://")


# --- parsing -------------------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


def _where(source: str) -> str:
    return "" if source == "argument" else f" (from {source})"


def parse_bool(name: str, value: Any, source: str = "argument") -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigError(
        f"{name}{_where(source)} must be a boolean (true/false, yes/no, 1/0), got {value!r}"
    )


def parse_float(name: str, value: Any, source: str = "argument") -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}{_where(source)} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{name}{_where(source)} must be a number, got {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ConfigError(f"{name}{_where(source)} must be a finite number, got {value!r}")
    return number


def parse_int(name: str, value: Any, source: str = "argument") -> int:
    number = parse_float(name, value, source)
    if number != int(number):
        raise ConfigError(f"{name}{_where(source)} must be a whole number, got {value!r}")
    return int(number)


def parse_str(name: str, value: Any, source: str = "argument") -> str:
    """Text, without a NUL byte (no file, CSV cell or HTTP header can hold one)."""
    if not isinstance(value, str):
        raise ConfigError(f"{name}{_where(source)} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ConfigError(f"{name}{_where(source)} must not contain a NUL byte (\\x00)")
    return value


def parse_path(name: str, value: Any, source: str = "argument") -> str:
    """A path (text or ``os.PathLike``) without a NUL byte."""
    if isinstance(value, os.PathLike):
        try:
            value = os.fspath(value)
        except TypeError as e:
            raise ConfigError(f"{name}{_where(source)} must be a path, got {e}") from None
        if isinstance(value, bytes):
            raise ConfigError(f"{name}{_where(source)} must be a text path, got bytes")
    return parse_str(name, value, source)


def _in_range(name: str, number: float, source: str) -> None:
    low, high, low_included, unit = NUMBER_RANGES[name]
    if (number < low if low_included else number <= low) or number > high:
        lower = ">=" if low_included else ">"
        raise ConfigError(
            f"{name}{_where(source)} must be {lower} {low:g} and <= {high:g} ({unit}), "
            f"got {number:g}"
        )


def _ranged(parser: Callable[[str, Any, str], Any]) -> Callable[[str, Any, str], Any]:
    """``parser`` followed by the parameter's :data:`NUMBER_RANGES` check."""

    def parse(name: str, value: Any, source: str = "argument") -> Any:
        number = parser(name, value, source)
        _in_range(name, number, source)
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
        return ConfigError(f"{name}{_where(source)} must be {what}, got {shown!r}: {reason}")

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
            raise ConfigError(f"{name}{_where(source)} must be a logger name, got {value!r}")
        return text
    if isinstance(value, (logging.Logger, logging.LoggerAdapter)) or hasattr(value, "logger"):
        return value
    raise ConfigError(
        f"{name}{_where(source)} must be a logging.Logger, a LoggerOutput or a logger name, "
        f"got {type(value).__name__}"
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
            f"output_methods{_where(source)} must be a list of OutputMethod or names, got {value!r}"
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
                    f"output_methods{_where(source)}: unknown output method {item!r}; "
                    f"accepted: {accepted}"
                ) from None
        else:
            raise ConfigError(
                f"output_methods{_where(source)}: unknown output method {item!r}; accepted: {accepted}"
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
            f"gpu_ids{_where(source)} must be a list of GPU indexes or UUIDs, got {value!r}"
        )
    ids: list[int | str] = []
    for item in items:
        if isinstance(item, bool):
            raise ConfigError(f"gpu_ids{_where(source)}: {item!r} is not a GPU index or UUID")
        if isinstance(item, int):
            if item < 0:
                raise ConfigError(f"gpu_ids{_where(source)}: index {item} is negative")
            ids.append(item)
        elif isinstance(item, str) and item.strip().isdigit():
            ids.append(int(item))
        elif isinstance(item, str) and item.strip().upper().startswith(("GPU-", "MIG-")):
            ids.append(item.strip())
        else:
            raise ConfigError(
                f"gpu_ids{_where(source)}: {item!r} is neither a GPU index nor a UUID (GPU-...)"
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
                f"metadata{_where(source)} must be a dict or a JSON object string"
            ) from None
        if isinstance(parsed, dict):
            return parsed
    raise ConfigError(
        f"metadata{_where(source)} must be a dict or a JSON object string, got {value!r}"
    )


def _choice(name: str, accepted: tuple[str, ...]) -> Callable[[str, Any, str], str]:
    def parse(_: str, value: Any, source: str = "argument") -> str:
        text = str(value).strip().lower() if isinstance(value, str) else value
        if text not in accepted:
            raise ConfigError(
                f"{name}{_where(source)} must be one of {', '.join(accepted)}, got {value!r}"
            )
        return text

    return parse


def _log_level(name: str, value: Any, source: str = "argument") -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        level = logging.getLevelName(value)
        if isinstance(level, str) and level.lower() in LOG_LEVELS:
            return level.lower()
    return _choice("log_level", LOG_LEVELS)(name, value, source)


def _optional(parser: Callable[[str, Any, str], Any]) -> Callable[[str, Any, str], Any]:
    def parse(name: str, value: Any, source: str = "argument") -> Any:
        if value is None or (
            isinstance(value, str) and value.strip() == "" and source != "argument"
        ):
            return None
        return parser(name, value, source)

    return parse


def _url(host_port: bool = False) -> Callable[[str, Any, str], str]:
    def parse(name: str, value: Any, source: str = "argument") -> str:
        return parse_url(name, value, source, host_port=host_port)

    return parse


# name -> parser(name, raw value, source)
_PARSERS: dict[str, Callable[[str, Any, str], Any]] = {
    "project_name": parse_str,
    "measure_power_secs": _ranged(parse_float),
    "api_call_interval": _ranged(parse_int),
    "api_endpoint": _url(),
    "api_key": _optional(parse_str),
    "output_dir": parse_path,
    "output_file": parse_path,
    "output_methods": lambda n, v, s: parse_output_methods(v, s),
    "logging_logger": _optional(parse_logging_logger),
    "prometheus_url": _url(host_port=True),
    "gpu_ids": lambda n, v, s: parse_gpu_ids(v, s),
    "emissions_endpoint": _optional(_url()),
    "experiment_id": lambda n, v, s: "" if v is None else parse_str(n, v, s),
    "experiment_name": parse_str,
    "electricitymaps_api_token": _optional(parse_str),
    "tracking_mode": _choice("tracking_mode", TRACKING_MODES),
    "log_level": _log_level,
    "on_csv_write": _choice("on_csv_write", CSV_WRITE_MODES),
    "logger_preamble": parse_str,
    "force_cpu_power": _optional(_ranged(parse_float)),
    "force_ram_power": _optional(_ranged(parse_float)),
    "force_carbon_intensity_g_co2e_kwh": _optional(_ranged(parse_float)),
    "pue": _ranged(parse_float),
    "wue": _ranged(parse_float),
    "force_mode_cpu_load": parse_bool,
    "allow_multiple_runs": parse_bool,
    "rapl_include_dram": parse_bool,
    "rapl_prefer_psys": parse_bool,
    "metadata": lambda n, v, s: parse_metadata(v, s),
    "country_iso_code": _optional(parse_str),
    "region": _optional(parse_str),
    "cloud_provider": _optional(parse_str),
    "cloud_region": _optional(parse_str),
    "country_2letter_iso_code": _optional(parse_str),
    "windows_output_file": parse_path,
    "webhook_windows": parse_bool,
    "spool_max_bytes": _ranged(parse_int),
    "spool_max_age_s": _ranged(parse_float),
    "prometheus_delete_on_exit": parse_bool,
    "boamps_context_file": _optional(parse_path),
}
#: Parameters only ever taken from arguments (objects, not text).
_ARGUMENT_ONLY = ("output_handlers",)
#: Every name a tracker takes, from any source.
KNOWN_PARAMETERS = frozenset(
    set(_PARSERS) | set(_ARGUMENT_ONLY) | set(DEPRECATED_SAVE_FLAGS) | {"co2_signal_api_token"}
)
#: The package's own variables (``CODECARBON_CALLBACKS_MACHINE_ID``, ...): never parameters.
OWN_ENV_PREFIX = "CODECARBON_CALLBACKS_"
#: Variables that name the process's global rank under common launchers (torchrun, SLURM, MPI).
_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _is_rank_zero(environ: Mapping[str, str]) -> bool:
    for variable in _RANK_VARIABLES:
        value = environ.get(variable, "").strip()
        if value:
            return value == "0"
    return True


def warn_unknown_names(
    environ: Mapping[str, str],
    config_files: list[tuple[str, dict[str, str]]],
    *,
    user_warning: bool = True,
) -> None:
    """Warn, once per process each, about ``CODECARBON_*`` variables and config-file keys that
    are no parameter (they are ignored), with the closest valid name, and about
    ``output_handlers`` (objects: only taken from an argument) given there.

    ``CODECARBON_CALLBACKS_*`` variables (the package's own) are exempt. With ``user_warning``
    the warning is a :class:`CodeCarbonCallbacksWarning`; otherwise (a rank other than zero) it
    is only logged.
    """
    category = CodeCarbonCallbacksWarning if user_warning else None
    env_names = {ENV_PREFIX + name.upper() for name in KNOWN_PARAMETERS}
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable.startswith(OWN_ENV_PREFIX):
            continue
        if variable in env_names:
            if variable[len(ENV_PREFIX) :].lower() in _ARGUMENT_ONLY:
                warn_once(
                    f"argument-only-env:{variable}",
                    "environment variable %s is ignored: %s is only taken from an argument",
                    variable,
                    variable[len(ENV_PREFIX) :].lower(),
                    log=logger,
                    category=category,
                )
            continue
        warn_once(
            f"unknown-env:{variable}",
            "environment variable %s is not a codecarbon parameter and is ignored%s",
            variable,
            _did_you_mean(variable, env_names),
            log=logger,
            category=category,
        )
    for path, section in config_files:
        for key in sorted(section):
            if key in _ARGUMENT_ONLY:
                warn_once(
                    f"argument-only-key:{path}:{key}",
                    "%s [%s] %s is ignored: it is only taken from an argument",
                    path,
                    CONFIG_SECTION,
                    key,
                    log=logger,
                    category=category,
                )
                continue
            if key in KNOWN_PARAMETERS:
                continue
            warn_once(
                f"unknown-key:{path}:{key}",
                "%s [%s] %s is not a codecarbon parameter and is ignored%s",
                path,
                CONFIG_SECTION,
                key,
                _did_you_mean(key, KNOWN_PARAMETERS),
                log=logger,
                category=category,
            )


def read_config_files(
    cwd: Path | None = None, home: Path | None = None
) -> list[tuple[str, dict[str, str]]]:
    """The ``[codecarbon]`` sections of ./.codecarbon.config then ~/.codecarbon.config."""
    found: list[tuple[str, dict[str, str]]] = []
    paths = [(cwd or Path.cwd()) / CONFIG_FILE_NAME, (home or Path.home()) / CONFIG_FILE_NAME]
    seen: set[Path] = set()
    for path in paths:
        try:
            resolved = path.resolve()
        except OSError:
            continue
        if resolved in seen or not path.is_file():
            continue
        seen.add(resolved)
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(path, encoding="utf-8")
        except (configparser.Error, OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot be read as a config file: {e}") from e
        if parser.has_section(CONFIG_SECTION):
            found.append((str(path), dict(parser.items(CONFIG_SECTION))))
    return found


def resolve_config(
    arguments: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    config_files: list[tuple[str, dict[str, str]]] | None = None,
    offline: bool = False,
    user_warning: bool | None = None,
) -> TrackerConfig:
    """Merge arguments, environment and config files into a validated TrackerConfig.

    Args:
        arguments: the tracker's keyword arguments; values equal to ``_UNSET`` count as not given.
        environ: the environment (default ``os.environ``).
        config_files: parsed config files, most important first (default: read them).
        offline: the offline tracker (a location is then required).
        user_warning: whether unknown ``CODECARBON_*`` variables and config-file keys are issued
            as a :class:`CodeCarbonCallbacksWarning` (else only logged); None: on global rank
            zero only, as the launcher's ``RANK`` (or ``SLURM_PROCID``, ...) variable says.

    Raises:
        ConfigError: a value outside its domain, naming the parameter and where it came from;
            an unknown keyword argument, with the closest valid name ("did you mean").
    """
    environ = os.environ if environ is None else environ
    if config_files is None:
        config_files = read_config_files()
    given = {k: v for k, v in arguments.items() if v is not _UNSET}
    unknown = sorted(set(given) - KNOWN_PARAMETERS)
    if unknown:
        raise ConfigError(
            "; ".join(
                f"unknown parameter {name!r}{_did_you_mean(name, KNOWN_PARAMETERS)}"
                for name in unknown
            )
        )
    if user_warning is None:
        user_warning = _is_rank_zero(environ)
    warn_unknown_names(environ, config_files, user_warning=user_warning)

    def lookup(name: str) -> tuple[Any, str]:
        if name in given:
            return given[name], "argument"
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ:
            return environ[env_name], f"environment variable {env_name}"
        for path, section in config_files:
            if name in section:
                return section[name], f"{path} [{CONFIG_SECTION}] {name}"
        return _UNSET, ""

    values: dict[str, Any] = {"offline": offline}
    sources: dict[str, str] = {}
    for name, parser in _PARSERS.items():
        raw, source = lookup(name)
        if raw is _UNSET:
            continue
        values[name] = parser(name, raw, source)
        sources[name] = source

    # co2_signal_api_token: deprecated alias of electricitymaps_api_token
    raw, source = lookup("co2_signal_api_token")
    if raw is not _UNSET and raw is not None:
        warnings.warn(
            "co2_signal_api_token is deprecated; use electricitymaps_api_token",
            DeprecationWarning,
            stacklevel=4,
        )
        values.setdefault(
            "electricitymaps_api_token", parse_str("co2_signal_api_token", raw, source)
        )

    # output methods: explicit output_methods win; otherwise the deprecated save_to_* flags
    flags: dict[str, bool] = {}
    for flag in DEPRECATED_SAVE_FLAGS:
        raw, source = lookup(flag)
        if raw is not _UNSET:
            flags[flag] = parse_bool(flag, raw, source)
    if flags:
        if "output_methods" in values:
            warnings.warn(
                f"{', '.join(sorted(flags))} are deprecated and ignored because output_methods is given",
                DeprecationWarning,
                stacklevel=4,
            )
        else:
            warnings.warn(
                f"{', '.join(sorted(flags))} are deprecated; use output_methods=[OutputMethod...]",
                DeprecationWarning,
                stacklevel=4,
            )
            enabled = {"save_to_file": True, **flags}
            values["output_methods"] = [
                method for flag, method in DEPRECATED_SAVE_FLAGS.items() if enabled.get(flag)
            ]

    for name in _ARGUMENT_ONLY:
        if name in given and given[name] is not None:
            values[name] = given[name]
            sources[name] = "argument"
    config = TrackerConfig(**values)
    validate(config, sources=sources)
    return config


def validate(config: TrackerConfig, *, sources: Mapping[str, str] | None = None) -> None:
    """Range and consistency checks; raises ConfigError naming the parameter.

    Args:
        config: the configuration to check.
        sources: where each value came from (``"argument"``, ``"environment variable X"``,
            ``"<file> [codecarbon] <key>"``), named in the messages; argument by default.
    """
    sources = sources or {}

    def where(name: str) -> str:
        return _where(sources.get(name, "argument"))

    for name in NUMBER_RANGES:
        value = getattr(config, name)
        if value is not None:
            _in_range(name, value, sources.get(name, "argument"))
    if not config.project_name.strip():
        raise ConfigError(f"project_name{where('project_name')} must not be empty")
    for name in ("output_file", "windows_output_file"):
        value = getattr(config, name)
        if not value or os.path.basename(value) != value or value in (".", ".."):
            raise ConfigError(
                f"{name}{where(name)} must be a plain file name (no folders), got {value!r}"
            )
    for name in PATH_PARAMETERS:
        value = getattr(config, name)
        if isinstance(value, str) and "\x00" in value:
            raise ConfigError(f"{name}{where(name)} must not contain a NUL byte (\\x00)")
    for name in URL_PARAMETERS:
        value = getattr(config, name)
        if value is not None:
            parse_url(
                name, value, sources.get(name, "argument"), host_port=name == "prometheus_url"
            )
    handlers = config.output_handlers
    if not isinstance(handlers, (list, tuple)):
        raise ConfigError("output_handlers must be a list of BaseOutput instances")
    for handler in handlers:
        if not isinstance(handler, BaseOutput) and not callable(getattr(handler, "out", None)):
            raise ConfigError(
                f"output_handlers: {handler!r} is not a BaseOutput (it needs an out(total, delta) method)"
            )
    if config.logging_logger is not None:
        parse_logging_logger(
            "logging_logger", config.logging_logger, sources.get("logging_logger", "argument")
        )
    if OutputMethod.API in config.output_methods:
        import uuid

        try:
            uuid.UUID(str(config.experiment_id))
        except ValueError:
            raise ConfigError(
                f"experiment_id{where('experiment_id')} must be the UUID of a CodeCarbon API "
                f"experiment when output_methods includes 'api', got {config.experiment_id!r}"
            ) from None
    if config.cloud_region and not config.cloud_provider:
        raise ConfigError(
            f"cloud_region{where('cloud_region')} needs cloud_provider (aws, azure or gcp)"
        )
    if config.cloud_provider and not config.cloud_region:
        raise ConfigError(
            f"cloud_provider{where('cloud_provider')} needs cloud_region (e.g. us-east-1)"
        )
    _validate_output_dir(config.output_dir, sources.get("output_dir", "argument"))
    if config.boamps_context_file is not None:
        _validate_boamps_context_file(
            config.boamps_context_file, sources.get("boamps_context_file", "argument")
        )


def _validate_output_dir(output_dir: str, source: str = "argument") -> None:
    """A folder we can write in, or one we can create when the first file is written.

    Nothing is created here: resolving a configuration has no side effects. The outputs create
    the folder when they first write.
    """
    name = f"output_dir{_where(source)}"
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{name} {output_dir!r} exists and is not a folder")
    existing = path.absolute()
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"{name} {output_dir!r} cannot be created: {str(existing)!r} is not a folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        what = (
            "is not writable"
            if existing == path.absolute()
            else (f"cannot be created: {str(existing)!r} is not writable")
        )
        raise ConfigError(f"{name} {output_dir!r} {what}")


def _validate_boamps_context_file(context_file: str, source: str = "argument") -> None:
    """A readable file holding a JSON object (read here, so that a wrong path fails before the
    run, not at start())."""
    name = f"boamps_context_file{_where(source)}"
    path = Path(context_file)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"{name} {context_file!r} {what}: it must be a BoAmps context JSON "
            "file (see examples/boamps_context.json)"
        )
    try:
        with open(path, encoding="utf-8") as handle:
            context = json.load(handle)
    except OSError as e:
        raise ConfigError(f"{name} {context_file!r} cannot be read: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{name} {context_file!r} is not valid JSON: {e}") from None
    if not isinstance(context, dict):
        raise ConfigError(
            f"{name} {context_file!r} must hold a JSON object, got {type(context).__name__}"
        )

"""Tracker configuration: argument > ``CODECARBON_*`` environment > ./.codecarbon.config > ~/.codecarbon.config.

Every value is typed and validated here, at construction, so a bad one fails before any training
starts with a message that names the parameter, where it came from and what would be accepted.

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
import json
import logging
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codecarbon_callbacks_core.errors import ConfigError
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


@dataclass
class TrackerConfig:
    """The resolved, validated configuration of one tracker (parameter names as CodeCarbon's)."""

    project_name: str = "codecarbon"
    measure_power_secs: float = 15.0
    api_call_interval: int = 8
    api_endpoint: str = "https://api.codecarbon.io"
    api_key: str | None = field(default=None, repr=False)
    output_dir: str = "."
    output_file: str = "emissions.csv"
    output_methods: list[OutputMethod] = field(default_factory=lambda: [OutputMethod.CSV])
    output_handlers: list[BaseOutput] = field(default_factory=list)
    logging_logger: Any = None
    prometheus_url: str = "localhost:9091"
    gpu_ids: list[int | str] | None = None
    emissions_endpoint: str | None = field(default=None, repr=False)  # may carry a token
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

    def public_dict(self) -> dict[str, Any]:
        """The configuration without secrets (safe to log or write)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in SECRET_PARAMETERS or f.name in ("output_handlers", "logging_logger"):
                continue
            value = getattr(self, f.name)
            if f.name == "output_methods":
                value = [m.value for m in value]
            elif f.name == "emissions_endpoint" and value:
                value = sanitize_url(value)
            out[f.name] = value
        return out


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
    except (TypeError, ValueError):
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
    if not isinstance(value, str):
        raise ConfigError(f"{name}{_where(source)} must be a string, got {type(value).__name__}")
    return value


def parse_output_methods(value: Any, source: str = "argument") -> list[OutputMethod]:
    """Enum members, their string values, or a comma-separated string -> list of OutputMethod."""
    if value is None:
        return []
    if isinstance(value, (str, OutputMethod)):
        items: list[Any] = [v for v in str(value.value if isinstance(value, OutputMethod) else value).split(",") if v.strip()]
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
            raise ConfigError(f"metadata{_where(source)} must be a dict or a JSON object string") from None
        if isinstance(parsed, dict):
            return parsed
    raise ConfigError(f"metadata{_where(source)} must be a dict or a JSON object string, got {value!r}")


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
        if value is None or (isinstance(value, str) and value.strip() == "" and source != "argument"):
            return None
        return parser(name, value, source)

    return parse


# name -> parser(name, raw value, source)
_PARSERS: dict[str, Callable[[str, Any, str], Any]] = {
    "project_name": parse_str,
    "measure_power_secs": parse_float,
    "api_call_interval": parse_int,
    "api_endpoint": parse_str,
    "api_key": _optional(parse_str),
    "output_dir": lambda n, v, s: os.fspath(v) if isinstance(v, os.PathLike) else parse_str(n, v, s),
    "output_file": parse_str,
    "output_methods": lambda n, v, s: parse_output_methods(v, s),
    "prometheus_url": parse_str,
    "gpu_ids": lambda n, v, s: parse_gpu_ids(v, s),
    "emissions_endpoint": _optional(parse_str),
    "experiment_id": lambda n, v, s: "" if v is None else parse_str(n, v, s),
    "experiment_name": parse_str,
    "electricitymaps_api_token": _optional(parse_str),
    "tracking_mode": _choice("tracking_mode", TRACKING_MODES),
    "log_level": _log_level,
    "on_csv_write": _choice("on_csv_write", CSV_WRITE_MODES),
    "logger_preamble": parse_str,
    "force_cpu_power": _optional(parse_float),
    "force_ram_power": _optional(parse_float),
    "force_carbon_intensity_g_co2e_kwh": _optional(parse_float),
    "pue": parse_float,
    "wue": parse_float,
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
    "windows_output_file": parse_str,
    "webhook_windows": parse_bool,
    "spool_max_bytes": parse_int,
    "spool_max_age_s": parse_float,
    "prometheus_delete_on_exit": parse_bool,
    "boamps_context_file": _optional(lambda n, v, s: os.fspath(v) if isinstance(v, os.PathLike) else parse_str(n, v, s)),
}
#: Parameters only ever taken from arguments (objects, not text).
_ARGUMENT_ONLY = ("output_handlers", "logging_logger")


def read_config_files(cwd: Path | None = None, home: Path | None = None) -> list[tuple[str, dict[str, str]]]:
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
) -> TrackerConfig:
    """Merge arguments, environment and config files into a validated TrackerConfig.

    Args:
        arguments: the tracker's keyword arguments; values equal to ``_UNSET`` count as not given.
        environ: the environment (default ``os.environ``).
        config_files: parsed config files, most important first (default: read them).
        offline: the offline tracker (a location is then required).
    """
    environ = os.environ if environ is None else environ
    if config_files is None:
        config_files = read_config_files()
    given = {k: v for k, v in arguments.items() if v is not _UNSET}
    unknown = set(given) - set(_PARSERS) - set(_ARGUMENT_ONLY) - set(DEPRECATED_SAVE_FLAGS) - {
        "co2_signal_api_token"
    }
    if unknown:
        raise ConfigError(f"unknown parameter(s): {', '.join(sorted(unknown))}")

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
    for name, parser in _PARSERS.items():
        raw, source = lookup(name)
        if raw is _UNSET:
            continue
        values[name] = parser(name, raw, source)

    # co2_signal_api_token: deprecated alias of electricitymaps_api_token
    raw, source = lookup("co2_signal_api_token")
    if raw is not _UNSET and raw is not None:
        warnings.warn(
            "co2_signal_api_token is deprecated; use electricitymaps_api_token",
            DeprecationWarning,
            stacklevel=4,
        )
        values.setdefault("electricitymaps_api_token", parse_str("co2_signal_api_token", raw, source))

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
    config = TrackerConfig(**values)
    validate(config)
    return config


def validate(config: TrackerConfig) -> None:
    """Range and consistency checks; raises ConfigError naming the parameter."""
    if config.measure_power_secs <= 0:
        raise ConfigError(f"measure_power_secs must be > 0 seconds, got {config.measure_power_secs}")
    if config.api_call_interval < 1:
        raise ConfigError(f"api_call_interval must be >= 1 (measurements), got {config.api_call_interval}")
    if config.pue < 1:
        raise ConfigError(f"pue must be >= 1.0 (power usage effectiveness), got {config.pue}")
    if config.wue < 0:
        raise ConfigError(f"wue must be >= 0 (litres per kWh), got {config.wue}")
    for name in ("force_cpu_power", "force_ram_power", "force_carbon_intensity_g_co2e_kwh"):
        value = getattr(config, name)
        if value is not None and value < 0:
            raise ConfigError(f"{name} must be >= 0, got {value}")
    if config.spool_max_bytes <= 0:
        raise ConfigError(f"spool_max_bytes must be > 0, got {config.spool_max_bytes}")
    if config.spool_max_age_s <= 0:
        raise ConfigError(f"spool_max_age_s must be > 0 seconds, got {config.spool_max_age_s}")
    if not config.project_name.strip():
        raise ConfigError("project_name must not be empty")
    for name in ("output_file", "windows_output_file"):
        value = getattr(config, name)
        if not value or os.path.basename(value) != value or value in (".", ".."):
            raise ConfigError(f"{name} must be a plain file name (no folders), got {value!r}")
    for name in ("api_endpoint", "emissions_endpoint"):
        value = getattr(config, name)
        if value is not None and not value.startswith(("http://", "https://")):
            raise ConfigError(f"{name} must be an http:// or https:// URL, got {value!r}")
    url = config.prometheus_url
    if not url or " " in url:
        raise ConfigError(f"prometheus_url must be host:port or an http(s) URL, got {url!r}")
    handlers = config.output_handlers
    if not isinstance(handlers, (list, tuple)):
        raise ConfigError("output_handlers must be a list of BaseOutput instances")
    for handler in handlers:
        if not isinstance(handler, BaseOutput) and not callable(getattr(handler, "out", None)):
            raise ConfigError(
                f"output_handlers: {handler!r} is not a BaseOutput (it needs an out(total, delta) method)"
            )
    if config.logging_logger is not None:
        lg = config.logging_logger
        if not isinstance(lg, logging.Logger) and not hasattr(lg, "logger"):
            raise ConfigError(
                "logging_logger must be a logging.Logger or a LoggerOutput, "
                f"got {type(lg).__name__}"
            )
    if OutputMethod.API in config.output_methods:
        import uuid

        try:
            uuid.UUID(str(config.experiment_id))
        except ValueError:
            raise ConfigError(
                "experiment_id must be the UUID of a CodeCarbon API experiment when "
                f"output_methods includes 'api', got {config.experiment_id!r}"
            ) from None
    if config.cloud_region and not config.cloud_provider:
        raise ConfigError("cloud_region needs cloud_provider (aws, azure or gcp)")
    if config.cloud_provider and not config.cloud_region:
        raise ConfigError("cloud_provider needs cloud_region (e.g. us-east-1)")
    _validate_output_dir(config.output_dir)


def _validate_output_dir(output_dir: str) -> None:
    """A folder we can write in, or one we can create when the first file is written.

    Nothing is created here: resolving a configuration has no side effects. The outputs create
    the folder when they first write.
    """
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output_dir {output_dir!r} exists and is not a folder")
    existing = path.absolute()
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"output_dir {output_dir!r} cannot be created: {str(existing)!r} is not a folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path.absolute() else (
            f"cannot be created: {str(existing)!r} is not writable")
        raise ConfigError(f"output_dir {output_dir!r} {what}")

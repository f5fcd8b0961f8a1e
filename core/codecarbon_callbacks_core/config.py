"""Tracker configuration: argument > ``CODECARBON_*`` environment > ./.codecarbon.config >
~/.codecarbon.config.

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
import functools
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core.config_values import (
    NUMBER_RANGES,
    choice,
    describe_source,
    in_range,
    optional,
    parse_bool,
    parse_float,
    parse_gpu_ids,
    parse_int,
    parse_log_level,
    parse_logging_logger,
    parse_metadata,
    parse_output_methods,
    parse_path,
    parse_prometheus_url,
    parse_scrape_address_value,
    parse_str,
    parse_url,
    public_url,
    ranged,
    url_parser,
)
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning, ConfigError
from codecarbon_callbacks_core.output.base import BaseOutput, OutputMethod

logger = logging.getLogger(__name__)

#: Marks "not given" (``None`` can be a meaningful value).
_UNSET: Any = object()

ENV_PREFIX = "CODECARBON_"
CONFIG_SECTION = "codecarbon"
CONFIG_FILE_NAME = ".codecarbon.config"

TRACKING_MODES = ("machine", "process")
CSV_WRITE_MODES = ("append", "update")
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
    prometheus_url: str | None = "localhost:9091"  # None: no Pushgateway (scrape only)
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
    prometheus_scrape_address: str | None = None
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


# name -> parser(name, raw value, source)
_PARSERS: dict[str, Callable[[str, Any, str], Any]] = {
    "project_name": parse_str,
    "measure_power_secs": ranged(parse_float),
    "api_call_interval": ranged(parse_int),
    "api_endpoint": url_parser(),
    "api_key": optional(parse_str),
    "output_dir": parse_path,
    "output_file": parse_path,
    "output_methods": lambda n, v, s: parse_output_methods(v, s),
    "logging_logger": optional(parse_logging_logger),
    "prometheus_url": parse_prometheus_url,
    "gpu_ids": lambda n, v, s: parse_gpu_ids(v, s),
    "emissions_endpoint": optional(url_parser()),
    "experiment_id": lambda n, v, s: "" if v is None else parse_str(n, v, s),
    "experiment_name": parse_str,
    "electricitymaps_api_token": optional(parse_str),
    "tracking_mode": choice("tracking_mode", TRACKING_MODES),
    "log_level": parse_log_level,
    "on_csv_write": choice("on_csv_write", CSV_WRITE_MODES),
    "logger_preamble": parse_str,
    "force_cpu_power": optional(ranged(parse_float)),
    "force_ram_power": optional(ranged(parse_float)),
    "force_carbon_intensity_g_co2e_kwh": optional(ranged(parse_float)),
    "pue": ranged(parse_float),
    "wue": ranged(parse_float),
    "force_mode_cpu_load": parse_bool,
    "allow_multiple_runs": parse_bool,
    "rapl_include_dram": parse_bool,
    "rapl_prefer_psys": parse_bool,
    "metadata": lambda n, v, s: parse_metadata(v, s),
    "country_iso_code": optional(parse_str),
    "region": optional(parse_str),
    "cloud_provider": optional(parse_str),
    "cloud_region": optional(parse_str),
    "country_2letter_iso_code": optional(parse_str),
    "windows_output_file": parse_path,
    "webhook_windows": parse_bool,
    "spool_max_bytes": ranged(parse_int),
    "spool_max_age_s": ranged(parse_float),
    "prometheus_delete_on_exit": parse_bool,
    "prometheus_scrape_address": optional(parse_scrape_address_value),
    "boamps_context_file": optional(parse_path),
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
    _reject_unknown(given)
    if user_warning is None:
        user_warning = _is_rank_zero(environ)
    warn_unknown_names(environ, config_files, user_warning=user_warning)
    lookup = functools.partial(
        _lookup_value, given=given, environ=environ, config_files=config_files
    )
    values: dict[str, Any] = {"offline": offline}
    sources: dict[str, str] = {}
    for name, parser in _PARSERS.items():
        raw, source = lookup(name)
        if raw is _UNSET:
            continue
        values[name] = parser(name, raw, source)
        sources[name] = source
    _apply_deprecated_token(values, lookup)
    _apply_deprecated_save_flags(values, lookup)
    if values.get("prometheus_scrape_address") is not None and "prometheus_url" not in sources:
        # a scrape endpoint and no Pushgateway named: scrape only, no pushes to localhost:9091
        values["prometheus_url"] = None
    for name in _ARGUMENT_ONLY:
        if name in given and given[name] is not None:
            values[name] = given[name]
            sources[name] = "argument"
    config = TrackerConfig(**values)
    validate(config, sources=sources)
    return config


#: looks a parameter up: (raw value or ``_UNSET``, its source)
_Lookup = Callable[[str], tuple[Any, str]]


def _reject_unknown(given: Mapping[str, Any]) -> None:
    """Raise ConfigError for keyword arguments that are no parameter, with a "did you mean"."""
    unknown = sorted(set(given) - KNOWN_PARAMETERS)
    if unknown:
        raise ConfigError(
            "; ".join(
                f"unknown parameter {name!r}{_did_you_mean(name, KNOWN_PARAMETERS)}"
                for name in unknown
            )
        )


def _lookup_value(
    name: str,
    *,
    given: Mapping[str, Any],
    environ: Mapping[str, str],
    config_files: list[tuple[str, dict[str, str]]],
) -> tuple[Any, str]:
    """``name``'s raw value and its source: argument > environment > config files, else
    (``_UNSET``, "")."""
    if name in given:
        return given[name], "argument"
    env_name = ENV_PREFIX + name.upper()
    if env_name in environ:
        return environ[env_name], f"environment variable {env_name}"
    for path, section in config_files:
        if name in section:
            return section[name], f"{path} [{CONFIG_SECTION}] {name}"
    return _UNSET, ""


def _apply_deprecated_token(values: dict[str, Any], lookup: _Lookup) -> None:
    """co2_signal_api_token: deprecated alias of electricitymaps_api_token."""
    raw, source = lookup("co2_signal_api_token")
    if raw is not _UNSET and raw is not None:
        warnings.warn(
            "co2_signal_api_token is deprecated; use electricitymaps_api_token",
            DeprecationWarning,
            stacklevel=5,  # resolve_config's caller's caller, as before this helper
        )
        values.setdefault(
            "electricitymaps_api_token", parse_str("co2_signal_api_token", raw, source)
        )


def _apply_deprecated_save_flags(values: dict[str, Any], lookup: _Lookup) -> None:
    """Output methods: explicit output_methods win; otherwise the deprecated save_to_* flags."""
    flags: dict[str, bool] = {}
    for flag in DEPRECATED_SAVE_FLAGS:
        raw, source = lookup(flag)
        if raw is not _UNSET:
            flags[flag] = parse_bool(flag, raw, source)
    if not flags:
        return
    if "output_methods" in values:
        warnings.warn(
            f"{', '.join(sorted(flags))} are deprecated and ignored "
            "because output_methods is given",
            DeprecationWarning,
            stacklevel=5,  # resolve_config's caller's caller, as before this helper
        )
        return
    warnings.warn(
        f"{', '.join(sorted(flags))} are deprecated; use output_methods=[OutputMethod...]",
        DeprecationWarning,
        stacklevel=5,
    )
    enabled = {"save_to_file": True, **flags}
    values["output_methods"] = [
        method for flag, method in DEPRECATED_SAVE_FLAGS.items() if enabled.get(flag)
    ]


def validate(config: TrackerConfig, *, sources: Mapping[str, str] | None = None) -> None:
    """Range and consistency checks; raises ConfigError naming the parameter.

    Args:
        config: the configuration to check.
        sources: where each value came from (``"argument"``, ``"environment variable X"``,
            ``"<file> [codecarbon] <key>"``), named in the messages; argument by default.
    """
    sources = sources or {}
    for name in NUMBER_RANGES:
        value = getattr(config, name)
        if value is not None:
            in_range(name, value, sources.get(name, "argument"))
    _validate_texts(config, sources)
    _validate_objects(config, sources)
    _validate_location_and_api(config, sources)
    _validate_prometheus(config, sources)
    _validate_output_dir(config.output_dir, sources.get("output_dir", "argument"))
    if config.boamps_context_file is not None:
        _validate_boamps_context_file(
            config.boamps_context_file, sources.get("boamps_context_file", "argument")
        )


def _where(sources: Mapping[str, str], name: str) -> str:
    return describe_source(sources.get(name, "argument"))


def _validate_texts(config: TrackerConfig, sources: Mapping[str, str]) -> None:
    """project_name, the file names, the paths and the URLs."""
    if not config.project_name.strip():
        raise ConfigError(f"project_name{_where(sources, 'project_name')} must not be empty")
    # output_file may hold folders, as CodeCarbon's: joined to output_dir (an absolute path is
    # used as it is) and created when missing
    if os.path.basename(config.output_file) in ("", ".", ".."):
        raise ConfigError(
            f"output_file{_where(sources, 'output_file')} must name a file (a name, or a path "
            f"ending in one), got {config.output_file!r}"
        )
    value = config.windows_output_file
    if not value or os.path.basename(value) != value or value in (".", ".."):
        raise ConfigError(
            f"windows_output_file{_where(sources, 'windows_output_file')} must be a plain file "
            f"name (no folders), got {value!r}"
        )
    for name in PATH_PARAMETERS:
        value = getattr(config, name)
        if isinstance(value, str) and "\x00" in value:
            raise ConfigError(f"{name}{_where(sources, name)} must not contain a NUL byte (\\x00)")
    for name in URL_PARAMETERS:
        value = getattr(config, name)
        if value is not None:
            parse_url(
                name, value, sources.get(name, "argument"), host_port=name == "prometheus_url"
            )


def _validate_objects(config: TrackerConfig, sources: Mapping[str, str]) -> None:
    """output_handlers and logging_logger (objects, not text)."""
    handlers = config.output_handlers
    if not isinstance(handlers, (list, tuple)):
        raise ConfigError("output_handlers must be a list of BaseOutput instances")
    for handler in handlers:
        if not isinstance(handler, BaseOutput) and not callable(getattr(handler, "out", None)):
            raise ConfigError(
                f"output_handlers: {handler!r} is not a BaseOutput "
                "(it needs an out(total, delta) method)"
            )
    if config.logging_logger is not None:
        parse_logging_logger(
            "logging_logger", config.logging_logger, sources.get("logging_logger", "argument")
        )


def _validate_location_and_api(config: TrackerConfig, sources: Mapping[str, str]) -> None:
    """experiment_id (a UUID when the API output is on) and the cloud provider/region pair."""
    if OutputMethod.API in config.output_methods:
        import uuid

        try:
            uuid.UUID(str(config.experiment_id))
        except ValueError:
            raise ConfigError(
                f"experiment_id{_where(sources, 'experiment_id')} must be the UUID of a "
                "CodeCarbon API experiment when output_methods includes 'api', "
                f"got {config.experiment_id!r}"
            ) from None
    if config.cloud_region and not config.cloud_provider:
        raise ConfigError(
            f"cloud_region{_where(sources, 'cloud_region')} needs cloud_provider "
            "(aws, azure or gcp)"
        )
    if config.cloud_provider and not config.cloud_region:
        raise ConfigError(
            f"cloud_provider{_where(sources, 'cloud_provider')} needs cloud_region (e.g. us-east-1)"
        )


def _validate_prometheus(config: TrackerConfig, sources: Mapping[str, str]) -> None:
    """A scrape address the endpoint can use; the PROMETHEUS output needs somewhere to send to:
    a Pushgateway or a scrape address."""
    if config.prometheus_scrape_address is not None:
        parse_scrape_address_value(
            "prometheus_scrape_address",
            config.prometheus_scrape_address,
            sources.get("prometheus_scrape_address", "argument"),
        )
    if (
        OutputMethod.PROMETHEUS in config.output_methods
        and config.prometheus_url is None
        and config.prometheus_scrape_address is None
    ):
        raise ConfigError(
            f"prometheus_url{_where(sources, 'prometheus_url')} is empty and no "
            "prometheus_scrape_address is given: the PROMETHEUS output needs a Pushgateway "
            "(e.g. 'localhost:9091') or a scrape address (e.g. ':9464')"
        )


def _validate_output_dir(output_dir: str, source: str = "argument") -> None:
    """A folder we can write in, or one we can create when the first file is written.

    Nothing is created here: resolving a configuration has no side effects. The outputs create
    the folder when they first write.
    """
    name = f"output_dir{describe_source(source)}"
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
    name = f"boamps_context_file{describe_source(source)}"
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

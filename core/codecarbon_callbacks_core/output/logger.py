"""LOGGER output: each record as one JSON line on a ``logging.Logger``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core.output._util import describe_error, dumps, record_to_dict, warn_once
from codecarbon_callbacks_core.output.base import BaseOutput

if TYPE_CHECKING:
    from codecarbon_callbacks_core.records import EmissionsData, WindowRecord

logger = logging.getLogger(__name__)

#: The logger records go to when the user gives none.
DEFAULT_RECORD_LOGGER_NAME = "codecarbon_callbacks.emissions"


def _resolve_level(severity: int | str) -> int:
    if isinstance(severity, bool):
        raise ValueError(  # noqa: TRY004 - bad config values are ValueErrors (ConfigError)
            f"severity must be a logging level (int or name), got {severity!r}"
        )
    if isinstance(severity, int):
        return severity
    if isinstance(severity, str):
        level = logging.getLevelName(severity.strip().upper())
        if isinstance(level, int):
            return level
    raise ValueError(
        f"severity must be a logging level: an int or one of DEBUG, INFO, WARNING, ERROR, "
        f"CRITICAL; got {severity!r}"
    )


class LoggerOutput(BaseOutput):
    """Writes every record as one JSON line to a ``logging.Logger``.

    Each line is a JSON object with the record's fields (CodeCarbon's names and units) plus
    ``record_type``: ``"run"`` (flush/stop totals), ``"live"`` (totals while running) or
    ``"window"`` (an epoch, phase, task or flush window).

    Args:
        logger: the logger to write to (a ``logging.Logger``, a ``LoggerAdapter`` or any object
            with a ``log(level, msg)`` method, as CodeCarbon accepts); default the package's
            ``logging.getLogger("codecarbon_callbacks.emissions")``, which then passes every
            record to its handlers (its level, when unset, becomes DEBUG: the root logger's
            level and a tracker's ``log_level`` never filter records).
        severity: the level of the records (int or name), default ``logging.INFO``.
        live: also log the live totals (every ``api_call_interval`` measurements).

    Example:
        >>> import logging
        >>> out = LoggerOutput(logging.getLogger("energy"), logging.INFO)
        >>> # EmissionsTracker(output_methods=["logger"], logging_logger=out)
    """

    def __init__(
        self,
        logger: Any = None,
        severity: int | str = logging.INFO,
        *,
        live: bool = True,
    ) -> None:
        if logger is not None and not callable(getattr(logger, "log", None)):
            raise ValueError(
                "logger must be a logging.Logger or any object with a log(level, msg) method, "
                f"got {type(logger).__name__}"
            )
        if logger is None:
            logger = logging.getLogger(DEFAULT_RECORD_LOGGER_NAME)
            if logger.level == logging.NOTSET:
                # Records are the output, not diagnostics: a handler attached here gets them
                # whatever the root logger's level (WARNING by default would drop INFO lines)
                # and whatever a tracker's log_level. A level set on it by the user is kept.
                logger.setLevel(logging.DEBUG)
        self.logger = logger
        self.logging_severity = _resolve_level(severity)
        self.live = live

    @classmethod
    def from_value(cls, value: Any) -> LoggerOutput:
        """Build from a tracker's ``logging_logger``: None, a Logger or a LoggerOutput."""
        if value is None:
            return cls()
        if isinstance(value, LoggerOutput):
            return value
        if isinstance(value, (logging.Logger, logging.LoggerAdapter)):
            return cls(value)
        if isinstance(value, str):
            return cls(logging.getLogger(value))
        inner = getattr(value, "logger", None)
        if callable(getattr(inner, "log", None)):  # CodeCarbon's LoggerOutput
            return cls(inner, getattr(value, "logging_severity", logging.INFO))
        if callable(getattr(value, "log", None)):
            return cls(value)
        raise ValueError(
            "logging_logger must be a logging.Logger, an object with a log(level, msg) method, "
            f"a LoggerOutput(logger, severity) or a logger name; got {type(value).__name__}"
        )

    def _send(self, payload: dict[str, Any]) -> None:
        self.logger.log(self.logging_severity, dumps(payload))

    def _emit(self, record: EmissionsData, record_type: str) -> None:
        try:
            self._send({"record_type": record_type, **record_to_dict(record)})
        except Exception as exc:  # noqa: BLE001 - never raise into training
            warn_once(
                "logger-output-failed",
                "LOGGER output could not write a %s record: %s",
                record_type,
                describe_error(exc),
                log=logger,
            )

    def out(self, total: EmissionsData, delta: EmissionsData) -> None:
        self._emit(total, "run")

    def live_out(self, total: EmissionsData, delta: EmissionsData) -> None:
        if self.live:
            self._emit(total, "live")

    def window_out(self, record: WindowRecord) -> None:
        self._emit(record, "window")


class GoogleCloudLoggerOutput(LoggerOutput):
    """Writes every record as a structured entry to Google Cloud Logging
    (CodeCarbon's ``GoogleCloudLoggerOutput``): ``logger.log_struct(payload, severity=...)``.

    Args:
        logger: a ``google.cloud.logging`` Logger (any object with ``log_struct``); default
            ``google.cloud.logging.Client().logger("codecarbon")``, which needs the
            ``google-cloud-logging`` package and Google Cloud credentials.
        severity: the entries' severity (int or level name), default ``logging.INFO``.
        live: also send the live totals.

    Raises:
        ImportError: no logger is given and ``google-cloud-logging`` is not installed (the
            message names the package to install).
        ValueError: ``logger`` has no ``log_struct`` method.

    Example:
        >>> from google.cloud import logging as gcl  # doctest: +SKIP
        >>> out = GoogleCloudLoggerOutput(gcl.Client().logger("energy"))  # doctest: +SKIP
    """

    def __init__(
        self, logger: Any = None, severity: int | str = logging.INFO, *, live: bool = True
    ) -> None:
        if logger is None:
            logger = _default_cloud_logger()
        if not callable(getattr(logger, "log_struct", None)):
            raise ValueError(
                "logger must be a google.cloud.logging Logger (an object with log_struct), "
                f"got {type(logger).__name__}"
            )
        self.logger = logger
        self.logging_severity = _resolve_level(severity)
        self.live = live

    def _send(self, payload: dict[str, Any]) -> None:
        self.logger.log_struct(payload, severity=self.logging_severity)


def _default_cloud_logger() -> Any:
    try:
        from google.cloud import logging as cloud_logging  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ImportError(
            "GoogleCloudLoggerOutput without a logger needs google-cloud-logging: "
            'pip install "google-cloud-logging" (or pass a google.cloud.logging Logger)'
        ) from exc
    return cloud_logging.Client().logger("codecarbon")

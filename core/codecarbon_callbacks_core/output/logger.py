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
        logger: the logger to write to; default the package's
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
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        severity: int | str = logging.INFO,
        *,
        live: bool = True,
    ) -> None:
        if logger is not None and not isinstance(logger, (logging.Logger, logging.LoggerAdapter)):
            raise ValueError(
                f"logger must be a logging.Logger (or LoggerAdapter), got {type(logger).__name__}"
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
        if isinstance(inner, (logging.Logger, logging.LoggerAdapter)):  # CodeCarbon's LoggerOutput
            return cls(inner, getattr(value, "logging_severity", logging.INFO))
        raise ValueError(
            "logging_logger must be a logging.Logger, a LoggerOutput(logger, severity) or a "
            f"logger name; got {type(value).__name__}"
        )

    def _emit(self, record: EmissionsData, record_type: str) -> None:
        try:
            payload = {"record_type": record_type, **record_to_dict(record)}
            self.logger.log(self.logging_severity, dumps(payload))
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

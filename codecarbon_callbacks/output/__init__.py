"""Output methods, by the names CodeCarbon's ``codecarbon.output`` module exports.

``from codecarbon_callbacks.output import LoggerOutput, PrometheusOutput, HTTPOutput`` works as
``from codecarbon.output import ...`` does: every name ``codecarbon.output`` exports is here
(``GoogleCloudLoggerOutput`` imports ``google-cloud-logging`` only when it builds its own
client). Names are resolved lazily (PEP 562): importing this
package loads no network or metrics library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, tuple[str, str]] = {
    "BaseOutput": ("codecarbon_callbacks_core.output.base", "BaseOutput"),
    "OutputMethod": ("codecarbon_callbacks_core.output.base", "OutputMethod"),
    "EmissionsData": ("codecarbon_callbacks_core.records", "EmissionsData"),
    "WindowRecord": ("codecarbon_callbacks_core.records", "WindowRecord"),
    "TaskEmissionsData": ("codecarbon_callbacks_core.records", "TaskEmissionsData"),
    "GoogleCloudLoggerOutput": (
        "codecarbon_callbacks_core.output.logger",
        "GoogleCloudLoggerOutput",
    ),
    "FileOutput": ("codecarbon_callbacks_core.output.file", "FileOutput"),
    "LoggerOutput": ("codecarbon_callbacks_core.output.logger", "LoggerOutput"),
    "PrometheusOutput": ("codecarbon_callbacks_core.output.prometheus", "PrometheusOutput"),
    "LogfireOutput": ("codecarbon_callbacks_core.output.logfire_output", "LogfireOutput"),
    "BoAmpsOutput": ("codecarbon_callbacks_core.output.boamps", "BoAmpsOutput"),
    "WebhookOutput": ("codecarbon_callbacks_core.output.webhook", "WebhookOutput"),
    # CodeCarbon's name for the webhook output
    "HTTPOutput": ("codecarbon_callbacks_core.output.webhook", "WebhookOutput"),
    "CodeCarbonAPIOutput": ("codecarbon_callbacks_core.output.api", "CodeCarbonAPIOutput"),
    "resend_spool": ("codecarbon_callbacks_core.output.resend", "resend_spool"),
    "create_output": ("codecarbon_callbacks_core.output.registry", "create_output"),
}

__all__ = [
    "BaseOutput",
    "BoAmpsOutput",
    "CodeCarbonAPIOutput",
    "EmissionsData",
    "FileOutput",
    "GoogleCloudLoggerOutput",
    "HTTPOutput",
    "LogfireOutput",
    "LoggerOutput",
    "OutputMethod",
    "PrometheusOutput",
    "TaskEmissionsData",
    "WebhookOutput",
    "WindowRecord",
    "create_output",
    "resend_spool",
]

if TYPE_CHECKING:  # pragma: no cover
    from codecarbon_callbacks_core.output.api import CodeCarbonAPIOutput
    from codecarbon_callbacks_core.output.base import BaseOutput, OutputMethod
    from codecarbon_callbacks_core.output.boamps import BoAmpsOutput
    from codecarbon_callbacks_core.output.file import FileOutput
    from codecarbon_callbacks_core.output.logfire_output import LogfireOutput
    from codecarbon_callbacks_core.output.logger import GoogleCloudLoggerOutput, LoggerOutput
    from codecarbon_callbacks_core.output.prometheus import PrometheusOutput
    from codecarbon_callbacks_core.output.registry import create_output
    from codecarbon_callbacks_core.output.resend import resend_spool
    from codecarbon_callbacks_core.output.webhook import WebhookOutput
    from codecarbon_callbacks_core.output.webhook import WebhookOutput as HTTPOutput
    from codecarbon_callbacks_core.records import EmissionsData, TaskEmissionsData, WindowRecord


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'codecarbon_callbacks.output' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0]), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return list(__all__)

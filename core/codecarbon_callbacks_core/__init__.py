"""codecarbon_callbacks_core: energy and carbon emissions of any Python code, CodeCarbon-compatible.

The framework-free measurement core of codecarbon-callbacks: the trackers, the meter and its
hardware backends, carbon intensity, records and every output method. Importing this package
loads no ML framework, no pynvml, pandas, requests, prometheus_client or logfire: every public
name is resolved lazily on first use (PEP 562).

Example:
    >>> from codecarbon_callbacks_core import OfflineEmissionsTracker
    >>> with OfflineEmissionsTracker(country_iso_code="FRA", output_methods=[]) as tracker:
    ...     pass
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core._version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "EmissionsTracker": "codecarbon_callbacks_core.tracker",
    "OfflineEmissionsTracker": "codecarbon_callbacks_core.tracker",
    "BaseEmissionsTracker": "codecarbon_callbacks_core.tracker",
    "track_emissions": "codecarbon_callbacks_core.tracker",
    "EmissionsData": "codecarbon_callbacks_core.records",
    "WindowRecord": "codecarbon_callbacks_core.records",
    "BaseOutput": "codecarbon_callbacks_core.output.base",
    "OutputMethod": "codecarbon_callbacks_core.output.base",
    "read_emissions": "codecarbon_callbacks_core.output.file",
    "LoggerOutput": "codecarbon_callbacks_core.output.logger",
    "BoAmpsOutput": "codecarbon_callbacks_core.output.boamps",
    "BoAmpsTask": "codecarbon_callbacks_core.output.boamps",
    "BoAmpsAlgorithm": "codecarbon_callbacks_core.output.boamps",
    "BoAmpsDataset": "codecarbon_callbacks_core.output.boamps",
    "BoAmpsPublisher": "codecarbon_callbacks_core.output.boamps",
    "BoAmpsHeader": "codecarbon_callbacks_core.output.boamps",
    "resend_spool": "codecarbon_callbacks_core.output.resend",
    "WebhookOutput": "codecarbon_callbacks_core.output.webhook",
    "PrometheusOutput": "codecarbon_callbacks_core.output.prometheus",
    "LogfireOutput": "codecarbon_callbacks_core.output.logfire_output",
    "CodeCarbonAPIOutput": "codecarbon_callbacks_core.output.api",
    "FileOutput": "codecarbon_callbacks_core.output.file",
    "CodeCarbonCallbacksError": "codecarbon_callbacks_core.errors",
    "ConfigError": "codecarbon_callbacks_core.errors",
    "CodeCarbonCallbacksWarning": "codecarbon_callbacks_core.errors",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover
    from codecarbon_callbacks_core.errors import (
        CodeCarbonCallbacksError,
        CodeCarbonCallbacksWarning,
        ConfigError,
    )
    from codecarbon_callbacks_core.output.api import CodeCarbonAPIOutput
    from codecarbon_callbacks_core.output.base import BaseOutput, OutputMethod
    from codecarbon_callbacks_core.output.boamps import (
        BoAmpsAlgorithm,
        BoAmpsDataset,
        BoAmpsHeader,
        BoAmpsOutput,
        BoAmpsPublisher,
        BoAmpsTask,
    )
    from codecarbon_callbacks_core.output.file import FileOutput, read_emissions
    from codecarbon_callbacks_core.output.logfire_output import LogfireOutput
    from codecarbon_callbacks_core.output.logger import LoggerOutput
    from codecarbon_callbacks_core.output.prometheus import PrometheusOutput
    from codecarbon_callbacks_core.output.resend import resend_spool
    from codecarbon_callbacks_core.output.webhook import WebhookOutput
    from codecarbon_callbacks_core.records import EmissionsData, WindowRecord
    from codecarbon_callbacks_core.tracker import (
        BaseEmissionsTracker,
        EmissionsTracker,
        OfflineEmissionsTracker,
        track_emissions,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'codecarbon_callbacks_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

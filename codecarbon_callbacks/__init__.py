"""codecarbon_callbacks: energy and carbon emissions of ML training, CodeCarbon-compatible.

Importing this package loads no ML framework, no pynvml, pandas, requests, prometheus_client or
logfire: every public name is resolved lazily on first use (PEP 562), so ``import
codecarbon_callbacks`` stays fast.

Example:
    >>> from codecarbon_callbacks import OfflineEmissionsTracker
    >>> with OfflineEmissionsTracker(country_iso_code="FRA", output_methods=[]) as tracker:
    ...     pass
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks._version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "EmissionsTracker": "codecarbon_callbacks.core.tracker",
    "OfflineEmissionsTracker": "codecarbon_callbacks.core.tracker",
    "BaseEmissionsTracker": "codecarbon_callbacks.core.tracker",
    "track_emissions": "codecarbon_callbacks.core.tracker",
    "EmissionsData": "codecarbon_callbacks.core.records",
    "WindowRecord": "codecarbon_callbacks.core.records",
    "BaseOutput": "codecarbon_callbacks.output.base",
    "OutputMethod": "codecarbon_callbacks.output.base",
    "read_emissions": "codecarbon_callbacks.output.file",
    "LoggerOutput": "codecarbon_callbacks.output.logger",
    "BoAmpsOutput": "codecarbon_callbacks.output.boamps",
    "BoAmpsTask": "codecarbon_callbacks.output.boamps",
    "BoAmpsAlgorithm": "codecarbon_callbacks.output.boamps",
    "BoAmpsDataset": "codecarbon_callbacks.output.boamps",
    "BoAmpsPublisher": "codecarbon_callbacks.output.boamps",
    "BoAmpsHeader": "codecarbon_callbacks.output.boamps",
    "resend_spool": "codecarbon_callbacks.output.spool",
    "WebhookOutput": "codecarbon_callbacks.output.webhook",
    "PrometheusOutput": "codecarbon_callbacks.output.prometheus",
    "LogfireOutput": "codecarbon_callbacks.output.logfire_output",
    "CodeCarbonAPIOutput": "codecarbon_callbacks.output.api",
    "FileOutput": "codecarbon_callbacks.output.file",
    "ConfigError": "codecarbon_callbacks.core.config",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover
    from codecarbon_callbacks.core.config import ConfigError
    from codecarbon_callbacks.core.records import EmissionsData, WindowRecord
    from codecarbon_callbacks.core.tracker import (
        BaseEmissionsTracker,
        EmissionsTracker,
        OfflineEmissionsTracker,
        track_emissions,
    )
    from codecarbon_callbacks.output.api import CodeCarbonAPIOutput
    from codecarbon_callbacks.output.base import BaseOutput, OutputMethod
    from codecarbon_callbacks.output.boamps import (
        BoAmpsAlgorithm,
        BoAmpsDataset,
        BoAmpsHeader,
        BoAmpsOutput,
        BoAmpsPublisher,
        BoAmpsTask,
    )
    from codecarbon_callbacks.output.file import FileOutput, read_emissions
    from codecarbon_callbacks.output.logfire_output import LogfireOutput
    from codecarbon_callbacks.output.logger import LoggerOutput
    from codecarbon_callbacks.output.prometheus import PrometheusOutput
    from codecarbon_callbacks.output.spool import resend_spool
    from codecarbon_callbacks.output.webhook import WebhookOutput


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'codecarbon_callbacks' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

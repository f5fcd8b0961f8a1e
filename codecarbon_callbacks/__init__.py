"""codecarbon_callbacks: energy and carbon emissions of ML training, CodeCarbon-compatible.

The callbacks for PyTorch Lightning (``codecarbon_callbacks.lightning``), the Hugging Face
``Trainer`` (``codecarbon_callbacks.transformers``) and Keras (``codecarbon_callbacks.keras``) sit
on the measurement core, ``codecarbon_callbacks_core``, whose public API this package re-exports:
``from codecarbon_callbacks import OfflineEmissionsTracker`` is the core's class.

Importing this package loads no ML framework, no pynvml, pandas, requests, prometheus_client or
logfire: every public name is resolved lazily on first use (PEP 562), so ``import
codecarbon_callbacks`` stays fast.

Example:
    >>> from codecarbon_callbacks import OfflineEmissionsTracker
    >>> with OfflineEmissionsTracker(country_iso_code="FRA", output_methods=[]) as tracker:
    ...     pass
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import codecarbon_callbacks_core as _core

from codecarbon_callbacks._version import __version__

logging.getLogger(__name__).addHandler(logging.NullHandler())

#: the core's public names, re-exported as they are
__all__ = list(_core.__all__)

if TYPE_CHECKING:  # pragma: no cover
    from codecarbon_callbacks_core import (
        BaseEmissionsTracker,
        BaseOutput,
        BoAmpsAlgorithm,
        BoAmpsDataset,
        BoAmpsHeader,
        BoAmpsOutput,
        BoAmpsPublisher,
        BoAmpsTask,
        CodeCarbonAPIOutput,
        CodeCarbonCallbacksError,
        CodeCarbonCallbacksWarning,
        ConfigError,
        EmissionsData,
        EmissionsTracker,
        FileOutput,
        LogfireOutput,
        LoggerOutput,
        OfflineEmissionsTracker,
        OutputMethod,
        PrometheusOutput,
        WebhookOutput,
        WindowRecord,
        read_emissions,
        resend_spool,
        track_emissions,
    )


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'codecarbon_callbacks' has no attribute {name!r}")
    value = getattr(_core, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

"""The one exception tree of codecarbon-callbacks (a leaf: imports nothing of the package).

Every error the package raises on purpose derives from :class:`CodeCarbonCallbacksError`, and
from the built-in exception a caller would expect (``ValueError`` for a bad value), so both
``except CodeCarbonCallbacksError`` and ``except ValueError`` catch a bad argument::

    CodeCarbonCallbacksError
    ├── ConfigError (ValueError)            a parameter or configuration value is invalid
    │   └── UnknownLocationError            a country, region or cloud region the tables lack
    ├── HardwareError                       a backend could not be used (missing, refused, broken)
    └── IntensityLookupError (RuntimeError) a geo-IP or Electricity Maps request failed

The CLI's one-line failures (``codecarbon_callbacks.cli.CliError``) derive from the root too.
"""

from __future__ import annotations

from typing import Any


class CodeCarbonCallbacksError(Exception):
    """The root of every error codecarbon-callbacks raises on purpose."""


class ConfigError(CodeCarbonCallbacksError, ValueError):
    """A parameter or configuration value is invalid. The message names it and its source."""


class UnknownLocationError(ConfigError):
    """A country, region, cloud provider or cloud region that the bundled tables do not know.

    Attributes:
        parameter: the argument's name, e.g. ``"country_iso_code"``.
        value: what was given.
        suggestions: close known values, possibly empty.
    """

    def __init__(self, parameter: str, value: Any, message: str,
                 suggestions: list[str] | None = None) -> None:
        self.parameter = parameter
        self.value = value
        self.suggestions = list(suggestions or [])
        text = f"{parameter}={value!r}: {message}"
        if self.suggestions:
            text += f" Did you mean: {', '.join(self.suggestions)}?"
        super().__init__(text)


class HardwareError(CodeCarbonCallbacksError):
    """A backend could not be used (missing, refused, broken)."""


class IntensityLookupError(CodeCarbonCallbacksError, RuntimeError):
    """A geo-IP or Electricity Maps request failed; the message says which and why."""


__all__ = [
    "CodeCarbonCallbacksError",
    "ConfigError",
    "HardwareError",
    "IntensityLookupError",
    "UnknownLocationError",
]

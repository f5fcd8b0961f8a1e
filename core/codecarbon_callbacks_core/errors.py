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

What a user must act on but that does not stop anything (a fallback to the world-average carbon
intensity, an estimated or constant component, a record left in the spool, an output failing) is
issued once per process as a :class:`CodeCarbonCallbacksWarning` through :mod:`warnings`, so it
shows by default and can be filtered::

    import warnings
    from codecarbon_callbacks_core import CodeCarbonCallbacksWarning
    warnings.simplefilter("ignore", CodeCarbonCallbacksWarning)
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

    def __init__(
        self, parameter: str, value: Any, message: str, suggestions: list[str] | None = None
    ) -> None:
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


class CodeCarbonCallbacksWarning(UserWarning):
    """Something the user should act on, issued once per process through :mod:`warnings`.

    Issued (on a distributed run's global rank zero only) for a fallback to the world-average
    carbon intensity, a component that is estimated or counted at a constant, a record left in
    the spool for a later delivery, and an output that failed. The same message also goes to the
    package's loggers (under a ``NullHandler``). Filter it like any warning category, e.g.
    ``warnings.simplefilter("ignore", CodeCarbonCallbacksWarning)``.
    """


__all__ = [
    "CodeCarbonCallbacksError",
    "CodeCarbonCallbacksWarning",
    "ConfigError",
    "HardwareError",
    "IntensityLookupError",
    "UnknownLocationError",
]

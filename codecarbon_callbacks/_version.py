"""The version of codecarbon-callbacks: always the core's (the two distributions move together)."""

from codecarbon_callbacks_core._version import __version__

__all__ = ["__version__"]

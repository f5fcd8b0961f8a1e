"""Build hook of codecarbon-callbacks: its version is the core's, and it depends on that very
version.

The version is written once, in ``core/codecarbon_callbacks_core/_version.py``; both distributions
read it there (the core through its pyproject's ``attr:``), so the two always move together.
Everything else about the distribution is in ``pyproject.toml``.
"""

import re
from pathlib import Path

from setuptools import setup

_VERSION_FILE = (
    Path(__file__).resolve().parent / "core" / "codecarbon_callbacks_core" / "_version.py"
)
_VERSION = re.search(r'^__version__ = "([^"]+)"$', _VERSION_FILE.read_text("utf-8"), re.M)
if _VERSION is None:  # pragma: no cover - a broken checkout
    raise RuntimeError(f"no __version__ line in {_VERSION_FILE}")

setup(
    version=_VERSION.group(1),
    install_requires=[f"codecarbon-callbacks-core=={_VERSION.group(1)}"],
)

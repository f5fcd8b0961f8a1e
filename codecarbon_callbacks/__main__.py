"""``python -m codecarbon_callbacks``: the ``codecarbon-callbacks`` command."""

from __future__ import annotations

import sys

from codecarbon_callbacks.cli import main

if __name__ == "__main__":
    sys.exit(main())

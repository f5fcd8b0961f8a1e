"""``python -m codecarbon_callbacks.cli``: the ``codecarbon-callbacks`` command."""

from __future__ import annotations

import sys

from codecarbon_callbacks.cli.app import main

if __name__ == "__main__":
    sys.exit(main())

"""Installs the fake pynvml in a subprocess when CODECARBON_CALLBACKS_FAKE_NVML is set.

Tests start a subprocess with ``env=fake_nvml.subprocess_env(spec)``, which puts this folder first
on PYTHONPATH; Python imports ``sitecustomize`` at start-up. Tests only: never installed.
"""

import os
import sys

if os.environ.get("CODECARBON_CALLBACKS_FAKE_NVML"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import fake_nvml

    fake_nvml.install_from_env()

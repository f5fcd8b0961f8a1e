"""Adapters fail clearly without their framework; the package itself never imports one."""

from __future__ import annotations

import subprocess
import sys

import pytest

CASES = [
    ("codecarbon_callbacks.lightning", "lightning", "lightning"),
    ("codecarbon_callbacks.pytorch_lightning", "pytorch_lightning", "pytorch-lightning"),
    ("codecarbon_callbacks.transformers", "transformers", "transformers"),
    ("codecarbon_callbacks.keras", "keras", "keras"),
]


@pytest.mark.parametrize("adapter,framework,extra", CASES)
def test_adapter_without_its_framework_names_the_pip_command(adapter, framework, extra):
    code = (
        "import sys\n"
        f"sys.modules[{framework!r}] = None  # as if it were not installed\n"
        "try:\n"
        f"    import {adapter}\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"pip install codecarbon-callbacks[{extra}]" in result.stdout


def test_importing_the_package_and_session_loads_no_framework():
    code = (
        "import sys, codecarbon_callbacks, codecarbon_callbacks.session\n"
        "import codecarbon_callbacks._lightning_impl\n"
        "heavy = [m for m in ('torch', 'lightning', 'pytorch_lightning', 'transformers', 'keras',"
        " 'tensorflow',"
        " 'jax', 'pandas', 'pynvml') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr

"""Adapters fail clearly without their framework; the package itself never imports one."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

CASES = [
    ("codecarbon_callbacks.lightning", "lightning", "lightning"),
    ("codecarbon_callbacks.pytorch_lightning", "pytorch_lightning", "pytorch-lightning"),
    ("codecarbon_callbacks.transformers", "transformers", "transformers"),
    ("codecarbon_callbacks.keras", "keras", "keras"),
]


def import_error(adapter: str, *, missing: str | None = None, env: dict | None = None) -> str:
    """The ImportError's message when a fresh interpreter imports ``adapter``."""
    code = "import sys\n"
    if missing:
        code += f"sys.modules[{missing!r}] = None  # as if it were not installed\n"
    code += (
        "try:\n"
        f"    import {adapter}\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("adapter,framework,extra", CASES)
def test_adapter_without_its_framework_names_the_pip_command(adapter, framework, extra):
    message = import_error(adapter, missing=framework)
    assert f"needs the {framework!r} package" in message
    # quoted (zsh expands unquoted brackets), and the form that works from a clone's root
    assert f'pip install "codecarbon-callbacks[{extra}]"' in message
    assert f'pip install -e ./core -e ".[{extra}]"' in message


def test_transformers_adapter_without_accelerate_names_it():
    pytest.importorskip("transformers")
    message = import_error("codecarbon_callbacks.transformers", missing="accelerate")
    assert "needs the 'accelerate' package (the Hugging Face Trainer needs it)" in message
    assert 'pip install "codecarbon-callbacks[transformers]"' in message


@pytest.mark.parametrize("backend", ["jax", "not-a-backend"])
def test_keras_adapter_without_a_usable_backend_names_keras_backend(backend):
    """keras is installed but KERAS_BACKEND names a backend that cannot be imported: the error
    says so, instead of asking to install keras (which would not help)."""
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed")
    if importlib.util.find_spec(backend.replace("-", "_")) is not None:
        pytest.skip(f"{backend} is installed")
    message = import_error("codecarbon_callbacks.keras", env={"KERAS_BACKEND": backend})
    assert "keras is installed, but its backend could not be imported" in message
    assert f"(KERAS_BACKEND={backend!r}" in message
    assert "KERAS_BACKEND=torch" in message
    assert "could not be imported (" in message and "pip install \"codecarbon" not in message


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

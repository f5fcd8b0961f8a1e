"""Adapters fail clearly without their framework; the package itself never imports one."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.parametrize("backend", ["tensorflow", "not-a-backend"])  # jax: a dev dependency
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
    assert "could not be imported (" in message and 'pip install "codecarbon' not in message


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


REPO = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {"codecarbon-callbacks": REPO, "codecarbon-callbacks-core": REPO / "core"}
REQUIREMENT = re.compile(r"^(?P<target>[^\[\]]+?)(\[(?P<extras>[^\]]*)\])?$")


def install_commands() -> list[tuple[str, str]]:
    """Every ``pip install ...`` in the README, the core's README and docs/, with its file."""
    found = []
    for path in [REPO / "README.md", REPO / "core" / "README.md", *sorted(REPO.glob("docs/*.md"))]:
        for line in path.read_text("utf-8").splitlines():
            for match in re.finditer(r"pip install ([^`#\n]*)", line):
                if match.group(1).strip():
                    command = match.group(0).split("&&")[0]  # what follows is another command
                    found.append((path.name, command.strip().rstrip(")")))
    return found


def test_every_install_command_in_the_docs_works_from_the_repository_root():
    """Brackets quoted (zsh), local paths that exist from the root, extras that exist."""
    tomllib = pytest.importorskip("tomllib")
    commands = install_commands()
    assert len(commands) >= 8
    for where, command in commands:
        words = shlex.split(command)[2:]
        for i, word in enumerate(words):
            if word.startswith("-") or (i and words[i - 1] == "--index-url"):
                continue
            if "[" in word:
                assert f'"{word}"' in command, f"{where}: {command}: quote {word}"
            target, extras = REQUIREMENT.match(word).group("target", "extras")
            if target.startswith("."):
                folder = (REPO / target).resolve()
                assert (folder / "pyproject.toml").is_file(), f"{where}: {command}: {target}"
            elif target in DISTRIBUTIONS:
                folder = DISTRIBUTIONS[target]
            else:
                continue  # another package (torch, ...)
            declared = tomllib.loads((folder / "pyproject.toml").read_text())["project"].get(
                "optional-dependencies", {}
            )
            for extra in filter(None, (extras or "").split(",")):
                assert extra in declared, f"{where}: {command}: no extra {extra!r}"

"""Run every example once per test session, all at once (they are independent subprocesses).

Each example is a real (tiny) training on CPU; together they cost the import time of each
framework once. ``EXAMPLE_ARGS`` are the fast settings.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "examples"
EXAMPLES = (
    "plain_loop_example.py",
    "lightning_example.py",
    "transformers_example.py",
    "keras_example.py",
    "boamps_example.py",
    "prometheus_example.py",
    "migrate_from_codecarbon.py",
)
EPOCHS = 2
TIMEOUT_S = 240.0
WORKERS = max(1, min(4, os.cpu_count() or 1))


@dataclass
class ExampleRun:
    name: str
    output_dir: Path
    returncode: int
    stdout: str
    stderr: str
    wall_s: float


@pytest.fixture(scope="session")
def example_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExampleRun]:
    base = tmp_path_factory.mktemp("examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECARBON_")}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        KERAS_BACKEND="torch",
        HOME=str(base),
        PYTHONWARNINGS="ignore",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )

    def run(name: str) -> ExampleRun:
        output = base / name.removesuffix(".py") / "reports"
        output.parent.mkdir(parents=True)
        t0 = time.monotonic()
        try:
            done = subprocess.run(
                [
                    sys.executable,
                    str(EXAMPLES_DIR / name),
                    "--epochs",
                    str(EPOCHS),
                    "--output-dir",
                    str(output),
                    "--country-iso-code",
                    "FRA",
                ],
                cwd=output.parent,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                check=False,
            )
            code, stdout, stderr = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as e:
            code, stdout = (
                -9,
                (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""),
            )
            stderr = f"[killed after {TIMEOUT_S} s]"
        return ExampleRun(name, output, code, stdout, stderr, time.monotonic() - t0)

    # as many at once as there are cores (each example then uses one thread: no oversubscription)
    with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
        runs = dict(zip(EXAMPLES, pool.map(run, EXAMPLES)))
    return runs

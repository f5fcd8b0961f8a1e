"""Helpers shared by the benchmarks: fresh-process runs, statistics, the results table.

Every figure is measured side by side with CodeCarbon 3.3.2 (a benchmark-only dependency) in the
same run. Fresh-process figures run a small snippet with ``sys.executable`` in a clean temporary
working directory and ``HOME`` (no ``.codecarbon.config`` and no ``CODECARBON_*`` variable leaks
in) and read one JSON line back.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
#: ../shared beside the clone (the reference traces live there)
SHARED_DIR = REPO_ROOT.parent / "shared"
TRACES_DIR = SHARED_DIR / "reference" / "traces"

#: where fresh benchmark processes cache bytecode (outside the repository)
PYCACHE_PREFIX = os.path.join(tempfile.gettempdir(), "codecarbon-callbacks-bench-pycache")

#: printed before the JSON result of a snippet run in a fresh process
JSON_MARK = "BENCH_JSON "

#: modules `import codecarbon_callbacks` must not load (DESIGN.md, "Rules of the house")
HEAVY_MODULES = (
    "torch",
    "lightning",
    "pytorch_lightning",
    "transformers",
    "keras",
    "tensorflow",
    "jax",
    "pynvml",
    "pandas",
    "requests",
    "prometheus_client",
    "logfire",
    "opentelemetry",
)

#: arguments both trackers get: offline, France, nothing written, quiet
CODECARBON_KWARGS: dict[str, Any] = {
    "country_iso_code": "FRA",
    "save_to_file": False,
    "log_level": "error",
}


def clean_env(home: str | None = None) -> dict[str, str]:
    """The environment for a fresh benchmark process: no CODECARBON_*, offline, torch Keras."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODECARBON_")}
    # An installed package runs from cached bytecode. Where PYTHONDONTWRITEBYTECODE is set (it is
    # on the machines these figures come from), every fresh process would compile the package
    # from source (tens of ms): let both packages cache their bytecode in a private folder.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = PYCACHE_PREFIX
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "KERAS_BACKEND": "torch",
            "WANDB_DISABLED": "true",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    if home is not None:
        env["HOME"] = home
    # the benchmark helpers are importable from a snippet
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(BENCH_DIR), env.get("PYTHONPATH", "")) if p)
    return env


def run_fresh(
    code: str,
    *,
    timeout_s: float = 300.0,
    args: Sequence[str] = (),
    env_extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``code`` with a fresh interpreter in a clean directory; return the JSON it printed.

    The snippet prints its result as one line ``BENCH_JSON {...}``. Anything else it prints
    (warnings, logs) is ignored unless the snippet fails, in which case it is raised.
    """
    with tempfile.TemporaryDirectory(prefix="ccb-bench-") as tmp:
        env = clean_env(home=tmp)
        for key, value in (env_extra or {}).items():
            if key == "PYTHONPATH":  # prepended: a sitecustomize there must win
                value = os.pathsep.join(p for p in (value, env.get("PYTHONPATH", "")) if p)
            env[key] = value
        proc = subprocess.run(  # noqa: PLW1510 - the exit status is checked below
            [sys.executable, "-c", code, *args],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(JSON_MARK):
            return json.loads(line[len(JSON_MARK) :])
    raise RuntimeError(
        f"benchmark snippet failed (exit {proc.returncode}):\n"
        f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
    )


def fake_nvml_env(devices: list[dict[str, Any]]) -> dict[str, str]:
    """Environment that makes ``import pynvml`` give the fake NVML of tests/fakes (real clock)."""
    return {
        "PYTHONPATH": str(REPO_ROOT / "tests" / "fakes" / "site"),
        "CODECARBON_CALLBACKS_FAKE_NVML": json.dumps({"devices": devices}),
    }


def run_script(
    script: str,
    args: Sequence[str],
    *,
    timeout_s: float = 600.0,
    env_extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` in a fresh process; return the JSON line it printed."""
    path = BENCH_DIR / script
    code = (
        f"import runpy, sys; sys.argv = [{str(path)!r}, *sys.argv[1:]]; "
        f"runpy.run_path({str(path)!r}, run_name='__main__')"
    )
    return run_fresh(code, timeout_s=timeout_s, args=args, env_extra=env_extra)


def emit(result: dict[str, Any]) -> None:
    """Print a snippet's result where :func:`run_fresh` finds it."""
    sys.stdout.write(JSON_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def cv_percent(values: Sequence[float]) -> float:
    """Coefficient of variation (population standard deviation / mean) in percent."""
    if len(values) < 2:
        return float("nan")
    mean = statistics.fmean(values)
    return 100.0 * statistics.pstdev(values) / mean if mean else float("nan")


def max_dev_percent(values: Sequence[float]) -> float:
    """Largest deviation from the mean, in percent of the mean."""
    if not values:
        return float("nan")
    mean = statistics.fmean(values)
    return 100.0 * max(abs(v - mean) for v in values) / mean if mean else float("nan")


# -- the table -----------------------------------------------------------------------------------


@dataclass
class Row:
    """One figure of the results table, ours beside CodeCarbon's."""

    section: str
    figure: str
    ours: str
    codecarbon: str = "-"
    target: str = ""
    #: True/False when the figure has a target; None when it has none
    ok: bool | None = None
    note: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "figure": self.figure,
            "ours": self.ours,
            "codecarbon": self.codecarbon,
            "target": self.target,
            "ok": self.ok,
            "note": self.note,
            "raw": self.raw,
        }


def fmt_ms(seconds: float | None) -> str:
    if seconds is None or seconds != seconds:
        return "n/a"
    ms = seconds * 1000.0
    return f"{ms:.0f} ms" if ms >= 100 else f"{ms:.1f} ms" if ms >= 1 else f"{ms * 1000:.0f} us"


def fmt_pct(value: float | None, digits: int = 2) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:.{digits}f}%"


def format_table(rows: Sequence[Row], *, markdown: bool = False) -> str:
    """One table, ours beside CodeCarbon 3.3.2 for each figure."""
    header = ["section", "figure", "codecarbon_callbacks", "CodeCarbon 3.3.2", "target", "ok"]
    body = []
    for row in rows:
        ok = "" if row.ok is None else ("yes" if row.ok else "NO")
        body.append([row.section, row.figure, row.ours, row.codecarbon, row.target, ok])
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        notes = [f"- {row.section}, {row.figure}: {row.note}" for row in rows if row.note]
        return "\n".join(lines + ([""] + notes if notes else []))
    widths = [
        max(len(header[i]), *(len(r[i]) for r in body)) if body else len(header[i])
        for i in range(len(header))
    ]
    sep = "  "
    lines = [sep.join(h.ljust(w) for h, w in zip(header, widths))]
    lines.append(sep.join("-" * w for w in widths))
    lines += [sep.join(c.ljust(w) for c, w in zip(cells, widths)) for cells in body]
    notes = [f"  * {row.section}, {row.figure}: {row.note}" for row in rows if row.note]
    return "\n".join(lines + (["", "notes:"] + notes if notes else []))


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    try:  # a shared machine: other work running at the same time slows every figure
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        from importlib.metadata import version

        info["codecarbon"] = version("codecarbon")
        info["codecarbon_callbacks"] = version("codecarbon-callbacks")
    except Exception:  # pragma: no cover - informative only
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        if commit:
            info["commit"] = commit
    except Exception:  # pragma: no cover - informative only
        pass
    return info

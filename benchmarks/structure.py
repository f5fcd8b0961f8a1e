"""Issue 12's structure figures for both packages: modules over 800 lines, functions over 80 lines,
functions over complexity 15 (ruff C901).

Lines are physical lines, docstrings included: a module's line count, and
``end_lineno - lineno + 1`` of each function (decorators excluded). Complexity is ruff's McCabe
count, run as a subprocess.

    python benchmarks/structure.py            # the three figures and every offender
    python benchmarks/structure.py --quiet    # the three figures only
    python benchmarks/structure.py --check    # exit 1 unless all three are 0 (CI)
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (ROOT / "codecarbon_callbacks", ROOT / "core" / "codecarbon_callbacks_core")
MODULE_LIMIT = 800
FUNCTION_LIMIT = 80
COMPLEXITY_LIMIT = 15


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in package.rglob("*.py"))


def long_modules() -> list[tuple[str, int]]:
    found = []
    for path in _sources():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MODULE_LIMIT:
            found.append((str(path.relative_to(ROOT)), lines))
    return found


def long_functions() -> list[tuple[str, int]]:
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > FUNCTION_LIMIT:
                    found.append((f"{path.relative_to(ROOT)}::{node.name}", length))
    return found


def complex_functions() -> list[tuple[str, str]]:
    cmd = [
        sys.executable,
        "-m",
        "ruff",
        "check",
        "--select",
        "C901",
        "--config",
        f"lint.mccabe.max-complexity={COMPLEXITY_LIMIT}",
        "--output-format",
        "json",
        "--no-cache",
        *(str(p) for p in PACKAGES),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout
    return [
        (str(Path(item["filename"]).relative_to(ROOT)), item["message"])
        for item in json.loads(out or "[]")
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="print the three figures only")
    parser.add_argument("--check", action="store_true", help="exit 1 unless all three are 0")
    args = parser.parse_args()
    modules, functions, complex_ = long_modules(), long_functions(), complex_functions()
    print(f"modules over {MODULE_LIMIT} lines:       {len(modules)}")
    print(f"functions over {FUNCTION_LIMIT} lines:      {len(functions)}")
    print(f"functions over complexity {COMPLEXITY_LIMIT}: {len(complex_)}")
    if not args.quiet:
        for name, size in modules + functions:
            print(f"  {name}: {size} lines")
        for name, message in complex_:
            print(f"  {name}: {message}")
    return 1 if args.check and (modules or functions or complex_) else 0


if __name__ == "__main__":
    raise SystemExit(main())

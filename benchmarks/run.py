"""Run every CPU benchmark and print one table, ours beside CodeCarbon 3.3.2 in the same run.

Usage (from the repository root)::

    python benchmarks/run.py                 # everything, about 5 minutes on 2 cores
    python benchmarks/run.py --quick         # a fast pass (< 60 s, sections overlapped, figures
                                             # not meaningful): the smoke test runs this
    python benchmarks/run.py --only core replay --markdown --json results.json

Sections:

- ``core``: import time, construction + ``start()`` and ``stop()`` in a fresh process, the cost of
  one window boundary, the sampler's CPU, memory over 10,000 windows (``core_bench.py``);
- ``frameworks``: training overhead with many short epochs for Lightning, the Hugging Face Trainer
  and Keras: the callback's own cost and the wall-time ratio against no callback
  (``framework_bench.py``);
- ``epochs``: issue 13's per-epoch cost: 25 Lightning epochs of about 40 ms, the time in the
  callback's hooks plus the other threads' CPU, minus the same without a callback, over the fit's
  wall time; median of 5 rounds with its spread (``epoch_cost_bench.py``);
- ``csv``: 10,000 windows with the CSV output: stop()'s time, the rows on disk when it returned,
  the memory retained per window (tracemalloc), the fsync calls (``csv_bench.py``);
- ``replay``: the GPU validation figures on CPU, from the H200 traces replayed through the fake
  NVML (``trace_replay.py``). The same figures on a real GPU: ``gpu_validation.py``.

Every figure runs in its own fresh process. The exit status is 0 even when a figure misses its
target (the table says ``NO``); it is 1 only when a benchmark could not run, or with ``--strict``
when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import core_bench
import csv_bench
import epoch_cost_bench
import framework_bench
import trace_replay
from _common import Row, format_table, machine_info

SECTIONS = ("core", "csv", "frameworks", "epochs", "replay")


def run(
    *, quick: bool, sections: tuple[str, ...], frameworks: tuple[str, ...]
) -> tuple[list[Row], dict[str, Any]]:
    raw: dict[str, Any] = {"machine": machine_info(), "quick": quick, "seconds": {}}

    def one(section: str) -> tuple[list[Row], Any]:
        t0 = time.perf_counter()
        print(f"[benchmarks] {section} ...", file=sys.stderr, flush=True)
        try:
            if section == "core":
                new_rows, data = core_bench.collect(quick=quick)
            elif section == "csv":
                new_rows, data = csv_bench.collect(quick=quick)
            elif section == "frameworks":
                new_rows, data = framework_bench.collect(quick=quick, frameworks=frameworks)
            elif section == "epochs":
                new_rows, data = epoch_cost_bench.collect(quick=quick)
            else:
                new_rows, data = trace_replay.collect(quick=quick)
        except Exception as e:  # one section failing must not hide the others
            message = str(e).strip().splitlines()
            new_rows = [
                Row(
                    section,
                    "could not run",
                    "failed",
                    "failed",
                    "",
                    note=(message[-1] if message else type(e).__name__)[:200],
                )
            ]
            data = {"error": str(e)}
        raw["seconds"][section] = round(time.perf_counter() - t0, 1)
        return new_rows, data

    if quick:  # a quick pass checks that everything runs; its figures mean nothing: overlap
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(sections) or 1) as pool:
            outcomes = dict(zip(sections, pool.map(one, sections)))
    else:  # one section at a time: the figures are the point
        outcomes = {section: one(section) for section in sections}
    rows: list[Row] = []
    for section in sections:
        new_rows, data = outcomes[section]
        rows.extend(new_rows)
        raw[section] = data
    return rows, raw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a fast pass (< 60 s), for the smoke test"
    )
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument(
        "--frameworks",
        nargs="+",
        choices=framework_bench.FRAMEWORKS,
        default=list(framework_bench.DEFAULT_FRAMEWORKS),
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", metavar="PATH", help="also write every raw figure to PATH")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    sections = tuple(args.only or SECTIONS)
    t0 = time.perf_counter()
    rows, raw = run(quick=args.quick, sections=sections, frameworks=tuple(args.frameworks))
    raw["total_seconds"] = round(time.perf_counter() - t0, 1)
    machine = raw["machine"]
    print(
        f"codecarbon_callbacks {machine.get('codecarbon_callbacks', '?')} "
        f"(commit {machine.get('commit', '?')}) "
        f"vs CodeCarbon {machine.get('codecarbon', '?')} | {machine['date_utc']} | "
        f"{machine.get('cpu_model', '?')}, {machine['cpu_count']} cores | "
        f"Python {machine['python']}"
        f" | load average at start {machine.get('load_average_1min', '?')}"
        f"{' | --quick' if args.quick else ''} | {raw['total_seconds']:.0f} s"
    )
    print(format_table(rows, markdown=args.markdown))
    if args.json:
        raw["rows"] = [row.as_dict() for row in rows]
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(raw, f, indent=2, default=str)
    failed = any(row.ours == "failed" for row in rows)
    missed = any(row.ok is False for row in rows)
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())

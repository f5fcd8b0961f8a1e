"""The CSV output over many windows, ours beside CodeCarbon 3.3.2: stop(), rows on disk, memory.

``python benchmarks/csv_bench.py windows --tool ours --n 10000`` prints one JSON line;
:func:`collect` runs both tools, each in a fresh process, and returns the table rows.

- Ours: one tracker with the CSV output (``save_to_file=True``), ``n`` window edges
  (``switch_window``, each closing an epoch window that becomes a row of
  ``emissions_windows.csv``), then ``stop()``.
- CodeCarbon: ``save_to_file=True`` and a task per window (``stop_task()`` + ``start_task()``, what
  a CodeCarbon user writes today); its ``stop()`` writes every task's row to
  ``emissions_<experiment>_<run_id>.csv`` and the run's row to ``emissions.csv``.

Figures:

- ``stop()``'s wall time (target: under 1 s), and the rows on disk at the moment it returned,
  counted from the files' bytes (target: every row);
- the Python memory retained per window, with ``tracemalloc`` after ``gc.collect()``: at the end
  of the loop (rows not yet written included) and once the rows are written (target: flat, under
  100 B a window);
- ours: how many ``fsync`` calls the rows took (one per batch, not one per row).
"""

from __future__ import annotations

import argparse
import csv
import gc
import glob
import os
import sys
import tempfile
import time
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import CODECARBON_KWARGS, Row, emit, fmt_ms, run_script

TOOLS = ("ours", "codecarbon")
STOP_TARGET_S = 1.0
BYTES_PER_WINDOW_TARGET = 100.0


def _count_rows(pattern: str) -> int:
    total = 0
    for path in glob.glob(pattern):
        with open(path, newline="", encoding="utf-8") as f:
            total += sum(1 for _ in csv.DictReader(f))
    return total


def measure_windows(tool: str, n_windows: int) -> dict[str, Any]:
    """``n_windows`` window edges with the CSV output, then stop(); see the module's notes."""
    import tracemalloc

    fsyncs = [0]
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        fsyncs[0] += 1
        real_fsync(fd)

    os.fsync = counting_fsync  # type: ignore[assignment]  # a counter, the real call still made
    with tempfile.TemporaryDirectory(prefix="ccb-csv-") as out:
        kwargs = {**CODECARBON_KWARGS, "save_to_file": True, "output_dir": out}
        if tool == "ours":
            from codecarbon_callbacks import OfflineEmissionsTracker

            tracker = OfflineEmissionsTracker(**kwargs)
            tracker.start()
            state = {"id": tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")}

            def edge(i: int) -> None:
                _, state["id"] = tracker.switch_window(
                    state["id"], "epoch", f"epoch {i}", epoch=i, phase="train"
                )

            def settle() -> None:
                for output in tracker._outputs.outputs:
                    flush = getattr(output, "flush_windows", None)
                    if flush is not None:
                        flush(30.0)

            windows_pattern = os.path.join(out, "emissions_windows.csv")
        else:
            import logging

            import codecarbon

            logging.getLogger("codecarbon").setLevel(logging.ERROR)
            tracker = codecarbon.OfflineEmissionsTracker(**kwargs)
            tracker.start()
            tracker.start_task("epoch 0")

            def edge(i: int) -> None:
                tracker.stop_task()
                tracker.start_task(f"epoch {i}")

            def settle() -> None:
                return None

            windows_pattern = os.path.join(out, "emissions_*_*.csv")
        for i in range(1, 51):  # warm-up: first-call imports and caches
            edge(i)
        settle()
        gc.collect()
        tracemalloc.start()
        traced0 = tracemalloc.get_traced_memory()[0]
        t0 = time.perf_counter()
        for i in range(51, 51 + n_windows):
            edge(i)
        loop_s = time.perf_counter() - t0
        gc.collect()
        traced_loop_end = tracemalloc.get_traced_memory()[0]
        settle()
        gc.collect()
        traced_settled = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        t0 = time.perf_counter()
        tracker.stop()
        stop_s = time.perf_counter() - t0
        # counted right after stop() returned, from what the files hold
        window_rows = _count_rows(windows_pattern)
        run_rows = _count_rows(os.path.join(out, "emissions.csv"))
    os.fsync = real_fsync  # type: ignore[assignment]
    import threading

    return {
        "tool": tool,
        "n_windows": n_windows,
        # ours: the 50 warm-up windows, the timed ones and the one stop() closes
        "expected_window_rows": n_windows + 51,
        "window_rows_on_disk": window_rows,
        "run_rows_on_disk": run_rows,
        "stop_s": stop_s,
        "loop_s": loop_s,
        "edge_mean_s": loop_s / n_windows,
        "bytes_per_window_loop_end": (traced_loop_end - traced0) / n_windows,
        "bytes_per_window_written": (traced_settled - traced0) / n_windows,
        "fsyncs": fsyncs[0],
        "csv_threads_after_stop": sum(
            t.name == "codecarbon-callbacks-csv" for t in threading.enumerate()
        ),
    }


def collect(*, quick: bool = False) -> tuple[list[Row], dict[str, Any]]:
    """Both tools, each in a fresh process; the table rows and the raw results."""
    n = 1_000 if quick else 10_000
    raw = {
        tool: run_script("csv_bench.py", ["windows", "--tool", tool, "--n", str(n)])
        for tool in TOOLS
    }
    ours, cc = raw["ours"], raw["codecarbon"]

    def on_disk(r: dict[str, Any]) -> str:
        return (
            f"{r['window_rows_on_disk']:,} of {r['expected_window_rows']:,} "
            f"(+{r['run_rows_on_disk']} run)"
        )

    rows = [
        Row(
            "csv",
            f"stop() after {n:,} windows with the CSV output",
            fmt_ms(ours["stop_s"]),
            fmt_ms(cc["stop_s"]),
            "< 1 s",
            ours["stop_s"] < STOP_TARGET_S,
            note="CodeCarbon: a task per window; its stop() writes every task's row with pandas",
        ),
        Row(
            "csv",
            "window rows on disk when stop() returned",
            on_disk(ours),
            on_disk(cc),
            "every row",
            ours["window_rows_on_disk"] == ours["expected_window_rows"]
            and ours["run_rows_on_disk"] == 1,
            note="counted from the files right after stop() returned",
        ),
        Row(
            "csv",
            f"memory retained per window over {n:,} windows, rows written (loop end)",
            f"{ours['bytes_per_window_written']:.1f} B ({ours['bytes_per_window_loop_end']:.0f} B)",
            f"{cc['bytes_per_window_written']:.0f} B ({cc['bytes_per_window_loop_end']:.0f} B)",
            "flat (< 100 B)",
            ours["bytes_per_window_written"] < BYTES_PER_WINDOW_TARGET,
            note="tracemalloc after gc.collect(); "
            "loop end includes rows still queued for the writer; "
            "CodeCarbon keeps every task's record until stop()",
        ),
        Row(
            "csv",
            f"fsync calls for {n:,} window rows",
            f"{ours['fsyncs']:,}",
            "0 (no fsync)",
            "",
            note="ours: one per batch; "
            f"window edge with the CSV output {fmt_ms(ours['edge_mean_s'])} "
            f"mean (CodeCarbon's task edge {fmt_ms(cc['edge_mean_s'])}), under tracemalloc",
        ),
    ]
    return rows, raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["windows"])
    parser.add_argument("--tool", choices=TOOLS, default="ours")
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args(argv)
    emit(measure_windows(args.tool, args.n))


if __name__ == "__main__":
    main()

"""Per-epoch cost of the Lightning callback, ours beside CodeCarbon 3.3.2 (issue 13's measure).

``python benchmarks/epoch_cost_bench.py --epochs 25 --epoch-ms 40 --rounds 5`` trains the tiny
model of ``framework_bench.py`` for ``--epochs`` epochs of about ``--epoch-ms`` ms each (the
number of batches is calibrated once, without a callback) with three variants rotated in each
round: no callback, our ``EmissionsCallback``, and CodeCarbon with a task per epoch.

For each run, the **cost** is:

- the time inside all of the callback's hooks (fit start and end included), wall time on the
  training thread, plus
- the CPU time of every thread other than the training thread during ``fit`` (the process's CPU
  time minus the training thread's: threads that ended during fit are counted too),

and the figure is ``(cost(variant) - cost(no callback)) / wall time of the fit``, in percent,
pairing each run with the no-callback run of the same round. It prints one JSON line: per
variant the median over the rounds and the spread (min, max), and each run's parts.

Both trackers run offline for France and write no file (``save_to_file=False``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import framework_bench
from _common import emit, median
from framework_bench import ACCOUNT, VARIANTS


def _fit(run: Any, make_callback: Any, variant: str, epochs: int) -> dict[str, float]:
    callbacks = [] if variant == "none" else [ACCOUNT.wrap_hooks(make_callback(variant))]
    ACCOUNT.reset()
    p0, t0 = time.process_time(), time.thread_time()
    wall, _ = run(callbacks, epochs)
    other_cpu = (time.process_time() - p0) - (time.thread_time() - t0)
    cost = ACCOUNT.hook_s + other_cpu
    return {
        "wall_s": wall,
        "hook_s": ACCOUNT.hook_s,
        "other_threads_cpu_s": other_cpu,
        "cost_s": cost,
    }


def _calibrate(epoch_ms: float) -> float:
    """Set the training set's size so that one epoch takes about ``epoch_ms``; returns the
    measured epoch time (ms) at that size."""
    run, make_callback = framework_bench._runner("lightning")
    probe_epochs = 5
    run([], probe_epochs)  # warm-up
    per_epoch_ms = 1000 * _fit(run, make_callback, "none", probe_epochs)["wall_s"] / probe_epochs
    scale = max(0.25, epoch_ms / per_epoch_ms)
    framework_bench.N_TRAIN = max(
        framework_bench.BATCH,
        int(round(framework_bench.N_TRAIN * scale / framework_bench.BATCH)) * framework_bench.BATCH,
    )
    run, make_callback = framework_bench._runner("lightning")
    return 1000 * _fit(run, make_callback, "none", probe_epochs)["wall_s"] / probe_epochs


def measure(epochs: int, epoch_ms: float, rounds: int) -> dict[str, Any]:
    """Rotate the three variants for ``rounds`` rounds (after a warm-up of each)."""
    import torch

    torch.set_num_threads(1)
    for name in ("codecarbon", "codecarbon_callbacks", "codecarbon_callbacks_core", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ACCOUNT.install()
    measured_epoch_ms = _calibrate(epoch_ms)
    run, make_callback = framework_bench._runner("lightning")
    variants = list(VARIANTS)
    for variant in variants:
        _fit(run, make_callback, variant, epochs)  # warm-up: first-use imports, caches
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for r in range(rounds):
        order = variants[r % len(variants) :] + variants[: r % len(variants)]
        for variant in order:
            runs[variant].append(_fit(run, make_callback, variant, epochs))
    summary: dict[str, Any] = {}
    for variant in ("ours", "codecarbon"):
        percents = [
            100.0 * (mine["cost_s"] - base["cost_s"]) / mine["wall_s"]
            for mine, base in zip(runs[variant], runs["none"])
        ]
        summary[variant] = {
            "cost_percent_median": median(percents),
            "cost_percent_min": min(percents),
            "cost_percent_max": max(percents),
            "cost_percents": percents,
        }
    return {
        "epochs": epochs,
        "epoch_ms_target": epoch_ms,
        "epoch_ms": measured_epoch_ms,
        "n_train": framework_bench.N_TRAIN,
        "rounds": rounds,
        "summary": summary,
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--epoch-ms", type=float, default=40.0)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    emit(measure(args.epochs, args.epoch_ms, args.rounds))


if __name__ == "__main__":
    main()

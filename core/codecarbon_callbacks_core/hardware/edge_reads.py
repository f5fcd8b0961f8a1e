"""Window edges read every component's energy, the slow GPU counters in parallel threads.

One process-wide pool (at most 8 threads, started on first use) serves every tracker: a counter
read takes milliseconds (2.4-3.6 ms on an H200, up to 26 ms), and reading 8 GPUs one after the
other would hold an edge for 20-200 ms. The same pool runs the short bursts of counter reads with
which a GPU finds its counter's step (:func:`submit_counter_job`): no thread of its own per GPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from codecarbon_callbacks_core.hardware.base import SLOW_COUNTER_METHODS, Component

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

logger = logging.getLogger(__name__)

_edge_pool: ThreadPoolExecutor | None = None
_edge_pool_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """The process-wide pool, started on first use."""
    global _edge_pool
    with _edge_pool_lock:
        if _edge_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            _edge_pool = ThreadPoolExecutor(
                max_workers=8, thread_name_prefix="codecarbon-callbacks-gpu-edge"
            )
        return _edge_pool


def submit_counter_job(job: Callable[[], None]) -> Future[None] | None:
    """Run a short burst of counter reads (a GPU finding its step) on the same pool, off the
    sampler thread; None when the pool takes no work (interpreter shutdown)."""
    try:
        return _pool().submit(job)
    except RuntimeError as error:
        logger.debug("counter job not run: %s", error)
        return None


def read_energy_concurrently(components: Sequence[Component], now_s: float) -> list[float]:
    """``energy_j(now_s)`` of each component, GPU counters read in parallel threads.

    A counter read takes milliseconds (2.4-3.6 ms on an H200, up to 26 ms); reading 8 GPUs one
    after the other would hold an edge for 20-200 ms. Components without a slow counter are read
    on the calling thread. Never raises: a component that raises (ours never do) gives NaN.
    """

    def read(component: Component) -> float:
        try:
            return float(component.energy_j(now_s))
        except Exception as error:  # noqa: BLE001 - components must not raise; be safe anyway
            logger.debug("%s: energy_j raised %s", component.name, error)
            return float("nan")

    slow = [i for i, c in enumerate(components) if c.method in SLOW_COUNTER_METHODS]
    results = [0.0] * len(components)
    futures = {}
    if len(slow) > 1:
        pool = _pool()
        try:
            for i in slow:
                futures[i] = pool.submit(read, components[i])
        except RuntimeError as error:
            # Interpreter shutdown (the atexit stop of a run still open): the pool takes no new
            # work; the remaining counters are read here, one after the other.
            logger.debug("parallel counter reads unavailable (%s): reading them in turn", error)
    for i, component in enumerate(components):
        if i not in futures:
            results[i] = read(component)
    for i, future in futures.items():
        results[i] = future.result()
    return results

"""The meter: cumulative energy per component, and the one sampler thread.

A :class:`Snapshot` is the meter's state at an instant: the energy in joules each component has
used since the meter started, plus the CPU-time counters used for utilisation. Every window (an
epoch, a phase, a task, a flush, the whole run) is the difference of two snapshots, so windows
nest and overlap freely and opening or closing one never restarts anything.

The sampler is one daemon thread, named after its tracker's run. It calls each component's
``sample()`` at the component's own pace (instant GPU power every few tens of ms, RAPL often
enough never to miss a wraparound, power-only models about once a second) and calls ``on_live``
every ``live_interval_s``. It is
safe across ``fork``: a forked child (a DataLoader worker) gets a meter whose thread is marked
gone, with fresh locks, and never waits on the parent's thread.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from codecarbon_callbacks_core._shared import imported_torch, warn_once
from codecarbon_callbacks_core.hardware.base import (
    SLOW_COUNTER_METHODS,
    Component,
    EdgeReading,
    UncertaintyTerm,
)
from codecarbon_callbacks_core.system import cpu_busy_total_s

logger = logging.getLogger(__name__)

_LIVE_METERS: weakref.WeakSet[Meter] = weakref.WeakSet()
#: how long stop() waits for the sampler by default (seconds)
SAMPLER_JOIN_TIMEOUT_S = 5.0
#: the sampler wakes at least this often (s) for its ``on_tick``
TICK_INTERVAL_S = 0.5
#: the machine's CPU times are read again at a snapshot only this long after the last read (s):
#: the kernel counts them in ticks of 1/USER_HZ = 10 ms, so a shorter span measures nothing, and
#: the read costs tens of microseconds where a window edge comes right after a training step
CPU_TIMES_MIN_INTERVAL_S = 0.01


@dataclass(frozen=True)
class Snapshot:
    """The meter's state at one instant."""

    monotonic_s: float
    wall_time: datetime
    energy_j: dict[str, float] = field(default_factory=dict)
    #: (busy, total) CPU seconds of the machine, for utilisation between two snapshots: read
    #: at most every CPU_TIMES_MIN_INTERVAL_S (a snapshot sooner carries the last reading)
    cpu_times_s: tuple[float, float] = (0.0, 0.0)
    #: per component, the 95 % half-width of its reading's placement error, J
    edge_half_width_j: dict[str, float] = field(default_factory=dict)
    #: per component, its power estimate at the reading, W
    power_w: dict[str, float] = field(default_factory=dict)
    #: the readings built so far (reading()): a snapshot ends one window and starts the next
    _readings: dict[str, EdgeReading] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def reading(self, name: str) -> EdgeReading:
        """Component ``name``'s reading in this snapshot (zeros where it has none)."""
        reading = self._readings.get(name)
        if reading is None:
            reading = self._readings[name] = EdgeReading(
                self.monotonic_s,
                self.energy_j.get(name, 0.0),
                self.edge_half_width_j.get(name, 0.0),
                self.power_w.get(name, 0.0),
            )
        return reading


def window_uncertainty(
    components: Sequence[Component], start: Snapshot, end: Snapshot
) -> dict[str, list[UncertaintyTerm]]:
    """Each component's uncertainty terms for the window ``start``..``end`` (95 % half-widths,
    J), by component name. A backend that raises gets a single ``constant_bound`` term of its
    whole window energy, logged at debug level."""
    out: dict[str, list[UncertaintyTerm]] = {}
    for c in components:
        a, b = start.reading(c.name), end.reading(c.name)
        try:
            out[c.name] = list(c.uncertainty_terms(a, b))
        except Exception as e:  # a backend's bug must not cost the record
            logger.debug("%s: uncertainty_terms raised %s", c.name, e)
            out[c.name] = [
                UncertaintyTerm(
                    "constant_bound", max(0.0, b.energy_j - a.energy_j), f"no terms: {e}"
                )
            ]
    return out


def synchronize_cuda() -> None:
    """Wait for queued GPU work, so that it lands in the window that launched it.

    The core never imports torch: it only acts when the user's process already has, and CUDA is
    initialised there.
    """
    torch = imported_torch()
    if torch is None:
        return
    try:
        cuda = torch.cuda
        if cuda.is_initialized():
            cuda.synchronize()
    except Exception as e:  # a broken CUDA context must not stop the measurement
        logger.debug("torch.cuda.synchronize() failed: %s", e)


class Meter:
    """Cumulative energy per component since ``start()``, and the sampler thread.

    Args:
        components: what to measure.
        live_interval_s: how often ``on_live`` is called from the sampler (None: never).
        on_live: called on the sampler thread with a fresh snapshot (no CUDA sync).
        on_tick: called on the sampler thread at every wake-up, at least every
            ``TICK_INTERVAL_S`` (the tracker writes the windows closed later that are due).
        clock: monotonic clock in seconds (injectable for tests).
        thread_name: the sampler thread's name (the tracker puts its run in it, so that the
            threads of one tracker can be told from another's).
    """

    def __init__(
        self,
        components: Sequence[Component],
        *,
        live_interval_s: float | None = None,
        on_live: Callable[[Snapshot], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        thread_name: str = "codecarbon-callbacks-sampler",
    ) -> None:
        self.components = list(components)
        self.live_interval_s = live_interval_s
        self.on_live = on_live
        self.on_tick = on_tick
        self.clock = clock
        self.thread_name = thread_name
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._owner_pid = os.getpid()
        self._running = False
        self._last_energy_j: dict[str, float] = {}
        # GPUs with a slow energy counter are read concurrently at an edge
        self._counter_components = [c for c in self.components if c.method in SLOW_COUNTER_METHODS]
        self.sampler_cpu_s = 0.0  # CPU time the sampler thread used (for benchmarks)
        #: the latest window edge's snapshot: totals "as of the last edge" without a new read
        self.last_edge: Snapshot | None = None
        #: the last reading of the machine's CPU times, and when it was taken (meter clock)
        self._cpu_times: tuple[float, float] = (0.0, 0.0)
        self._cpu_times_at = float("-inf")
        _LIVE_METERS.add(self)

    # -- life cycle --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running and self._owner_pid == os.getpid()

    def start(self) -> Snapshot:
        """Set every component's origin and start the sampler. Returns the origin snapshot."""
        now = self.clock()
        for component in self.components:
            try:
                component.start(now)
            except Exception as e:  # start() failures are the backend's to report; never raise
                component.failure = f"start failed: {e}"
                logger.warning("%s: could not start measuring: %s", component.name, e)
        self._running = True
        self._stop_event.clear()
        if any(c.sample_interval_s for c in self.components) or self.on_live or self.on_tick:
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        return self.snapshot(sync_cuda=False)

    def stop(self, timeout_s: float = SAMPLER_JOIN_TIMEOUT_S) -> Snapshot:
        """Take the final snapshot, stop and join the sampler, release the components.

        Waits at most ``timeout_s`` seconds for the sampler. A sampler still busy after that
        (stuck in a hardware call, which Python cannot interrupt) is reported once per process
        and left behind: it is a daemon, it stops at its next check and never delays exit.
        The caller must not hold a lock the sampler's ``on_live`` takes.
        """
        final = self.snapshot()
        if self._owner_pid != os.getpid():  # a forked child: the thread is not ours
            self._running = False
            return final
        self._running = False
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(0.0, timeout_s))
            if thread.is_alive():
                warn_once(
                    "sampler-not-stopped",
                    "the sampler thread %s did not stop within %.1f s (a hardware call that "
                    "does not return?); leaving it behind (daemon)",
                    thread.name,
                    timeout_s,
                    log=logger,
                )
        self._thread = None
        for component in self.components:
            try:
                component.close()
            except Exception as e:
                logger.debug("%s: close failed: %s", component.name, e)
        return final

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot(self, *, sync_cuda: bool = True) -> Snapshot:
        """Read every component now. At window edges on the training thread, sync CUDA first."""
        if sync_cuda:
            synchronize_cuda()
        now = self.clock()
        wall = datetime.now(timezone.utc)
        readings: list[float] | None = None
        if len(self._counter_components) > 1:
            # counter reads take milliseconds each: the backend reads several GPUs at once
            from codecarbon_callbacks_core.hardware import read_energy_concurrently

            readings = read_energy_concurrently(self.components, now)
        energies: dict[str, float] = {}
        half_widths: dict[str, float] = {}
        powers: dict[str, float] = {}
        # One pass, each call guarded in place: this runs at every window edge, where each
        # function called costs most (the training step has just evicted the caches).
        for i, c in enumerate(self.components):
            name = c.name
            try:
                value = float(c.energy_j(now)) if readings is None else readings[i]
            except Exception as e:  # backends must not raise; _checked freezes this one's energy
                logger.debug("%s: energy_j raised %s", name, e)
                value = float("nan")
            if value == value:  # not NaN
                self._last_energy_j[name] = energies[name] = value
            else:
                energies[name] = self._checked(c, value)  # frozen at its last good reading
            try:
                half_width = float(c.edge_uncertainty_j(now))
            except Exception as e:  # never raise at an edge
                logger.debug("%s: edge_uncertainty_j raised %s", name, e)
                half_width = 0.0
            half_widths[name] = half_width if half_width >= 0.0 else 0.0  # NaN: nothing known
            try:
                powers[name] = float(c.power_w())
            except Exception:
                powers[name] = 0.0
        if now - self._cpu_times_at >= CPU_TIMES_MIN_INTERVAL_S:
            self._cpu_times, self._cpu_times_at = cpu_busy_total_s(), now
        snapshot = Snapshot(now, wall, energies, self._cpu_times, half_widths, powers)
        if sync_cuda:  # a window edge on the training thread (live snapshots do not count)
            self.last_edge = snapshot
        return snapshot

    def _checked(self, component: Component, value: float) -> float:
        """A reading, or the component's last good one if this read failed (energy frozen)."""
        if value == value:  # not NaN
            self._last_energy_j[component.name] = value
            return value
        if component.failure is None:
            component.failure = "energy read failed"
            logger.warning("%s: energy read failed, its energy is frozen", component.name)
        return self._last_energy_j.get(component.name, 0.0)

    # -- sampler -----------------------------------------------------------------------------

    def _run(self) -> None:
        start_cpu = time.thread_time()
        now = self.clock()
        due = {c.name: now + c.sample_interval_s for c in self.components if c.sample_interval_s}
        by_name = {c.name: c for c in self.components}
        next_live = now + self.live_interval_s if self.live_interval_s and self.on_live else None
        try:
            while not self._stop_event.is_set():
                now = self.clock()
                for name, when in due.items():
                    if now >= when:
                        component = by_name[name]
                        try:
                            component.sample(now)
                        except Exception as e:
                            if component.failure is None:
                                component.failure = f"sampling failed: {e}"
                                logger.warning("%s: sampling failed: %s", name, e)
                        interval = component.sample_interval_s or 1.0
                        # skip missed ticks rather than bursting to catch up
                        due[name] = max(when + interval, now + interval / 2)
                if next_live is not None and now >= next_live:
                    try:
                        self.on_live(self.snapshot(sync_cuda=False))  # type: ignore[misc]
                    except Exception as e:
                        logger.warning("live output failed: %s", e)
                    next_live = max(next_live + self.live_interval_s, now)  # type: ignore[operator]
                if self.on_tick is not None:
                    try:
                        self.on_tick()
                    except Exception as e:  # never lose the sampler
                        logger.warning("the sampler's periodic work failed: %s", e)
                wakeups = list(due.values()) + ([next_live] if next_live is not None else [])
                timeout = max(0.0, min(wakeups) - self.clock()) if wakeups else 1.0
                if self.on_tick is not None:
                    timeout = min(timeout, TICK_INTERVAL_S)
                self._stop_event.wait(timeout)
        finally:
            self.sampler_cpu_s += time.thread_time() - start_cpu

    def _after_fork_in_child(self) -> None:
        # Threads do not survive fork. The child must not wait on the parent's sampler or locks.
        self._thread = None
        self._stop_event = threading.Event()


def _reinit_after_fork() -> None:
    for meter in list(_LIVE_METERS):
        meter._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)

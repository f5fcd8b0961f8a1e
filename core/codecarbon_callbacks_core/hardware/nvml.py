"""NVIDIA GPUs through NVML (``pynvml`` from nvidia-ml-py), with window edges placed to the ms.

Methods:
- ``nvml_energy``: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded), with the
  edge placement described below;
- ``nvml_power``: where the counter is not supported, power integrated over time: the instant
  power field (186, ``NVML_FI_DEV_POWER_INSTANT``) when the driver has it, else
  ``nvmlDeviceGetPowerUsage`` (a 1-second average on recent GPUs, see ``POWER_USAGE_LAG_S``).
  An unsupported counter is never read as 0 (CodeCarbon's bug).

Edge placement, and the evidence for it (``tests/data/h200_*``, 34 s on an H200, driver 580):

1. The energy counter moves in steps on a fixed clock: 340 steps, period 100.001 ms, residuals
   of 1.65 ms (standard deviation), which is the resolution of the back-to-back reads that
   located them (a read takes 2.4-3.6 ms). So a counter read at an edge is stale by the time
   since the last step, uniform in [0, 100 ms): plain counter deltas of identical 1-s windows
   at full load (~700 W) vary by up to 70 J (10 %).
2. Instant power (field 186) updates on its own ~102 ms cadence, drifting against the counter's:
   its updates do not tell where the counter's step lies. It shows what the counter counts about
   70 ms later (the per-step counter increments match the instant-power integral best shifted by
   60-80 ms: rms 10 J a step against 17 J unshifted, ``INSTANT_POWER_LAG_S``). It is a good
   estimate of the power during the counter's current step.

So the component locks onto the counter's phase. The sampler thread (``sample()``, every
``sample_interval_s`` = 25 ms) only reads instant power (microseconds) and integrates it. The
counter reads that find the phase run on a watcher thread of this GPU's own (``watch_thread``;
NVML calls release the GIL), which sleeps between them: first it reads back to back until it
has seen 4 steps (~0.35 s, ~110 reads), which gives the period and the phase (least squares,
outliers from slow reads dropped); then it watches one step every ``watch_interval_s`` (0.3 s
while young, then 1 s) with 2-4 reads started just before the predicted step, and every
``anchor_interval_s`` (0.2 s) reads the counter once in the middle of a step, where the reading
is unambiguous: an anchor (a counter value at a known step). Cost: ~8 counter reads a second
(~25 ms of NVML time a second, off the training and sampler threads). With a virtual clock
(tests) the same work is done inside ``sample()``, on the sampler's timeline.

At an edge, ``energy_j(now)`` reads instant power and the counter once (on the caller's thread),
finds the step the counter value belongs to and returns::

    counter + instant_power x (now - time_of_that_step)

(with the lag: the instant readings of the last ``age - 70 ms`` stand for the start of the step,
the latest reading for its last 70 ms).

A reading within a few ms of a predicted step could be from either side of it. Which one is
decided, in order, by the anchor (the counter changes at every step: the anchor's value means
the anchor's step, another value the next step), by the timing (when the reading is clearly on
one side of the predicted step), and last by the integral of instant power since the anchor.
The result is clamped to be non-decreasing, so windows that tile a run sum exactly to the run;
the run's origin is placed within its step the same way. Without a phase (a counter that does
not step regularly) the edge adds half a period of instant power: unbiased, no better than plain
deltas.

Measured on the trace (fake NVML in virtual time, 1-s windows at random phase, 20 seeds; error
per window against the counter interpolated between its steps; ``tests/core/hardware``):
steady full load: rms 0.3-0.4 % (max 0.7-1.2 %) against 4.1 % (max 9 %) for plain counter
deltas at the same edges; idle: 0.2 % against 3.9 %. Loads that switch about as fast as the
counter steps gain less: 0.5 s on/off: 3.0 % against 4.8 %; 0.15 s on/off: 6.0 % against 6.3 %.
Edges exactly on an idle -> full transition remain the hard case (the counter's interpolated
"truth" itself is unreliable there).

Errors mid-run: the last good energy is kept, power integration continues where power still
reads, ``failure`` says why, one warning is logged; nothing raises.

GPU selection: ``gpu_ids`` (ints or UUIDs) and ``CUDA_VISIBLE_DEVICES`` (indexes or UUIDs,
prefixes allowed); CUDA ordinals are mapped to NVML devices by UUID. When the process has
already initialised CUDA through torch, torch's per-ordinal UUIDs give the mapping exactly.
Otherwise integers in ``CUDA_VISIBLE_DEVICES`` are taken as NVML (PCI bus) indexes, which is
CUDA's numbering with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and on nodes of identical GPUs. Integer
``gpu_ids`` are CUDA ordinals (positions in the CUDA view) when CUDA_VISIBLE_DEVICES is set or
torch gave the view, NVML indexes otherwise.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

from codecarbon_callbacks_core._shared import imported_torch, warn_once
from codecarbon_callbacks_core.hardware import _forksafe
from codecarbon_callbacks_core.hardware.base import Component, MeasurementMethod

logger = logging.getLogger(__name__)

#: NVML_FI_DEV_POWER_INSTANT
FIELD_POWER_INSTANT = 186
#: instant power (field 186) shows what the energy counter counts about this much later: on the
#: H200 trace the per-step counter increments match the instant-power integral best shifted by
#: 60-80 ms (rms 10 J a step, against 17 J unshifted)
INSTANT_POWER_LAG_S = 0.07
#: how often the sampler reads instant power, s
GPU_SAMPLE_INTERVAL_S = 0.025
#: how often the sampler re-watches one counter step, s
WATCH_INTERVAL_S = 1.0
#: how often the sampler reads the counter once mid-step for a fresh anchor, s (None: never)
ANCHOR_INTERVAL_S = 0.2
#: the longest the sampler sleeps to start a watch just before a step, s
MAX_WATCH_WAIT_S = 0.012
#: the counter period assumed until measured, s
NOMINAL_COUNTER_PERIOD_S = 0.1
#: nvmlDeviceGetPowerUsage is a trailing 1-s average on recent GPUs: half of it is lag. On the
#: H200 trace, windows of 0.5-3 s integrated from it: rms error 32 % uncorrected, 12.6 % with
#: 0.5 s (0.4 s: 12.6 %, 0.6 s: 15.7 %)
POWER_USAGE_LAG_S = 0.5
#: the first watch gives up after this long, s
FIRST_WATCH_LIMIT_S = 0.5
#: a step observed farther than this from its prediction counts as a miss, s
PHASE_TOLERANCE_S = 0.015
#: steps the first watch observes (3 periods measured: about 1 ms of period uncertainty)
FIRST_WATCH_STEPS = 4
#: a step located less precisely than this (a slow read) is not used for the phase, s
MAX_STEP_RESOLUTION_S = 0.006


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


_VALUE_FIELDS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}


def _nvml_error_name(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class _PhaseModel:
    """Step times of a periodic counter: t_k = phase_s + k x period_s (k integer).

    Observed steps get integer indexes from the gaps between them (rounded with the current
    period), then a least-squares line through (k, t) gives the period and the phase. Three
    observations in a row far from their prediction mean the counter is not on this clock any
    more: the model starts again from them.
    """

    #: observations kept for the fit
    MAX_STEPS = 64

    def __init__(self) -> None:
        self.period_s: float | None = None
        self.phase_s: float | None = None
        self.uncertainty_s = 0.005
        self.period_sigma_s = 0.002
        self.misses = 0
        self._steps: deque[tuple[int, float]] = deque(maxlen=self.MAX_STEPS)
        self._pending: list[float] = []  # far-off observations, kept in case the clock moved

    @property
    def locked(self) -> bool:
        return self.period_s is not None and self.phase_s is not None

    def step_index(self, t: float) -> int:
        assert self.period_s is not None and self.phase_s is not None
        return math.floor((t - self.phase_s) / self.period_s)

    def step_time(self, k: int) -> float:
        assert self.period_s is not None and self.phase_s is not None
        return self.phase_s + k * self.period_s

    def observe_run(self, steps: Sequence[tuple[int, float]]) -> None:
        """Steps seen by one back-to-back burst, as (ordinal in the burst, time).

        A burst reads every few ms, so its n-th change is the n-th step: ordinals are step
        indexes even where a slow read made some step times too vague to use.
        """
        if not steps:
            return
        if self.period_s is None:
            if len({k for k, _ in steps}) < 2:
                return
            self._steps.clear()
            self._steps.extend(steps)
            self._fit()
            return
        for _, t in steps:
            self.observe(t)

    def observe(self, step_s: float) -> None:
        """One step seen at ``step_s``."""
        if self.period_s is None or self.phase_s is None or not self._steps:
            return
        k_last, t_last = self._steps[-1]
        periods = round((step_s - t_last) / self.period_s)
        k = k_last + periods
        residual = step_s - self.step_time(k)
        # the prediction's error grows with the distance from the fitted steps
        tolerance = min(
            0.4 * self.period_s, PHASE_TOLERANCE_S + 3 * abs(periods) * self.period_sigma_s
        )
        if abs(residual) > tolerance:
            self._pending.append(step_s)
            self.misses += 1
            if self.misses >= 3:  # the counter is on another clock: refit from what we saw
                pending = self._pending[-3:]
                self._steps.clear()
                self._pending.clear()
                self.misses = 0
                self.period_s = None
                self.phase_s = None
                logger.debug("counter phase lost; refitting")
                del pending
            return
        self.misses = 0
        self._pending.clear()
        if k != k_last:
            self._steps.append((k, step_s))
            self._fit()

    @staticmethod
    def _line(steps: Sequence[tuple[int, float]]) -> tuple[float, float, float] | None:
        """Least squares t = phase + k x period: (period, phase, sum of squared k deviations)."""
        n = len(steps)
        mean_k = sum(k for k, _ in steps) / n
        mean_t = sum(t for _, t in steps) / n
        var_k = sum((k - mean_k) ** 2 for k, _ in steps)
        if var_k <= 0:
            return None
        slope = sum((k - mean_k) * (t - mean_t) for k, t in steps) / var_k
        return slope, mean_t - mean_k * slope, var_k

    def _fit(self) -> None:
        steps = list(self._steps)
        line = self._line(steps)
        if line is None:
            return
        # a step located through a slow read can be 10+ ms off: drop outliers, one at a time
        while len(steps) >= 4:
            slope, phase, _ = line
            residuals = [abs(t - (phase + k * slope)) for k, t in steps]
            median = sorted(residuals)[len(residuals) // 2]
            worst = max(range(len(steps)), key=residuals.__getitem__)
            if residuals[worst] <= max(0.004, 4 * 1.4826 * median):
                break
            del steps[worst]
            refit = self._line(steps)
            if refit is None:
                break
            line = refit
        slope, phase, var_k = line
        if not 0.001 < slope < 10.0:
            return
        if len(steps) < len(self._steps):
            self._steps = deque(steps, maxlen=self.MAX_STEPS)
        self.period_s = slope
        self.phase_s = phase  # t at k = 0
        n = len(steps)
        # how far one step may fall from the line (the steps' scatter, not the line's error)
        residuals = [t - (phase + k * slope) for k, t in steps]
        spread = math.sqrt(sum(r * r for r in residuals) / (n - 2)) if n > 2 else 0.002
        self.uncertainty_s = min(0.015, max(0.001, spread))
        self.period_sigma_s = max(spread, 0.001) / math.sqrt(var_k)

    @property
    def observations(self) -> int:
        return len(self._steps)


class NvmlGpu(Component):
    """One NVIDIA GPU (see the module docstring for how its energy is measured).

    Args:
        nvml: the ``pynvml`` module (or a fake with the same names), already initialised.
        index: the NVML index of the device.
        cuda_index: the CUDA ordinal of the device in this process, where known.
        clock: the meter's monotonic clock, s (``time.monotonic``); the fake NVML's in tests.
        sleep: sleeps ``s`` seconds (``time.sleep``); the fake clock's in tests.
        sample_interval_s: how often the sampler reads instant power.
        watch_interval_s: how often the sampler re-watches a counter step.
        anchor_interval_s: how often the sampler reads the counter once mid-step (None: never).
        watch_thread: do the counter reads (first watch, watches, anchors) on a thread of this
            GPU's own, which sleeps until just before the step it watches, so that the sampler
            only reads instant power (microseconds) and several GPUs lock on at once. Default:
            when ``clock`` is ``time.monotonic``; with a virtual clock (tests) the sampler's
            ``sample()`` calls do them, on the sampler's timeline, deterministically.

    Attributes:
        uuid, index, cuda_index, model (the GPU name), memory_total_bytes, power_source
        ("instant", "usage" or None), has_energy_counter.
    """

    def __init__(
        self,
        nvml: Any,
        index: int,
        *,
        cuda_index: int | None = None,
        handle: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        sample_interval_s: float = GPU_SAMPLE_INTERVAL_S,
        watch_interval_s: float = WATCH_INTERVAL_S,
        anchor_interval_s: float | None = ANCHOR_INTERVAL_S,
        watch_thread: bool | None = None,
    ) -> None:
        self._nvml = nvml
        self.index = index
        self.cuda_index = cuda_index
        self._handle = handle if handle is not None else nvml.nvmlDeviceGetHandleByIndex(index)
        self._clock = clock
        self._sleep = sleep
        self.kind = "gpu"
        self.name = f"gpu:{index}"
        self.uuid = _text(nvml.nvmlDeviceGetUUID(self._handle))
        self.model = _text(nvml.nvmlDeviceGetName(self._handle))
        try:
            self.memory_total_bytes: int | None = int(
                nvml.nvmlDeviceGetMemoryInfo(self._handle).total
            )
        except nvml.NVMLError:
            self.memory_total_bytes = None
        self.sample_interval_s = sample_interval_s
        self.watch_interval_s = watch_interval_s
        self.anchor_interval_s = anchor_interval_s
        self.watch_thread = clock is time.monotonic if watch_thread is None else watch_thread
        self._watcher: threading.Thread | None = None
        self._watcher_stop = threading.Event()
        self._lock = threading.Lock()
        _forksafe.track(self)
        self.counter_reads = 0  # counter reads so far (each costs milliseconds)
        # power source
        self.power_source: str | None = None
        if self._read_instant_power_w() is not None:
            self.power_source = "instant"
        else:
            try:
                nvml.nvmlDeviceGetPowerUsage(self._handle)
                self.power_source = "usage"
            except nvml.NVMLError:
                self.power_source = None
        # energy counter: one probe read (an unsupported counter is never taken as 0)
        self.has_energy_counter = False
        self._probe: tuple[float, float, float] | None = None
        try:
            self._probe = self._read_counter()
            self.has_energy_counter = True
        except nvml.NVMLError as error:
            logger.debug("gpu %d: no energy counter (%s)", index, _nvml_error_name(error))
        if self.has_energy_counter:
            self.method = MeasurementMethod.NVML_ENERGY
        else:
            self.method = MeasurementMethod.NVML_POWER
            if self.power_source is None:
                self.failure = "NVML reports neither energy nor power for this GPU"
        self._reset_state()

    # -- state ---------------------------------------------------------------------------------

    def _reset_state(self) -> None:
        self._phase = _PhaseModel()
        self._started = False
        self._start_s = 0.0
        self._start_power_w = 0.0
        # the first counter read at or after start; the origin is derived from it
        self._origin_read: tuple[float, float, float] | None = None
        self._origin_j: float | None = None  # counter-scale energy at start, J
        self._origin_provisional = False  # fixed before the phase was known: refine it once
        self._returned_j = 0.0  # the largest energy since start returned, J
        # power as the sampler sees it, and its integral since start
        self._power_w = 0.0
        self._power_t: float | None = None
        self._integral_j = 0.0
        self._integral_history: deque[tuple[float, float]] = deque(maxlen=1024)
        # counter knowledge: the counter value (J) at a known step index
        self._anchor: tuple[int, float] | None = None
        self._next_watch_s = 0.0
        self._next_anchor_s = 0.0
        self._watch_skips = 0
        self._counter_failed_at: tuple[float, float] | None = None  # (t, energy since start J)
        self._integral_at_failure = 0.0
        self._last_good: tuple[float, float] | None = None  # (t, energy since start J) by counter
        self._power_only_out_j = 0.0
        self._reported: set[tuple[str, str]] = set()

    def _fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = why
        warn_once("failure", "%s (%s): %s", self.name, self.model, why, log=logger,
                  seen=self._reported)

    # -- NVML reads ----------------------------------------------------------------------------

    def _read_instant_power_w(self) -> float | None:
        nvml = self._nvml
        try:
            values = nvml.nvmlDeviceGetFieldValues(self._handle, [FIELD_POWER_INSTANT])
            value = values[0]
        except (nvml.NVMLError, AttributeError, IndexError, TypeError):
            return None
        if getattr(value, "nvmlReturn", 0) != 0:
            return None
        raw = value.value
        field = _VALUE_FIELDS.get(getattr(value, "valueType", 1), "uiVal")
        return float(getattr(raw, field)) / 1000.0

    def _read_power_w(self) -> float | None:
        """Instant power (or the averaged power), W; None when it cannot be read."""
        if self.power_source == "instant":
            return self._read_instant_power_w()
        if self.power_source == "usage":
            try:
                return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) / 1000.0
            except self._nvml.NVMLError:
                return None
        return None

    def _read_counter(self) -> tuple[float, float, float]:
        """(read start s, read end s, counter J). Raises NVMLError."""
        t_a = self._clock()
        value_mj = self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        t_b = self._clock()
        self.counter_reads += 1
        return t_a, t_b, float(value_mj) / 1000.0

    # -- power integration (caller holds the lock) ---------------------------------------------

    def _integrate_to(self, now_s: float, power_w: float | None) -> None:
        if self._power_t is None:
            self._power_t = now_s
        elif now_s > self._power_t:
            self._integral_j += self._power_w * (now_s - self._power_t)
            self._power_t = now_s
            self._integral_history.append((now_s, self._integral_j))
        # a failed read (None): what was read last is not trusted beyond now
        self._power_w = 0.0 if power_w is None else power_w

    def _integral_at(self, t: float) -> float:
        """The integral of power from start to ``t`` (interpolated in the history), J."""
        if self._power_t is None:
            return 0.0
        if t >= self._power_t:
            return self._integral_j + self._power_w * (t - self._power_t)
        if t < self._start_s:  # before start (a step just before it): the power at start
            return -self._start_power_w * (self._start_s - t)
        previous = (self._start_s, 0.0)
        for when, value in self._integral_history:
            if when >= t:
                span = when - previous[0]
                if span <= 0:
                    return value
                return previous[1] + (value - previous[1]) * max(0.0, t - previous[0]) / span
            previous = (when, value)
        return previous[1]

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, now_s: float) -> None:
        """Set the origin. Reads no counter (the sampler's first watch or the first edge does)."""
        with self._lock:
            probe = self._probe
            self._reset_state()
            self._started = True
            self._start_s = now_s
            power_w = self._read_power_w()
            self._start_power_w = power_w or 0.0
            self._integrate_to(now_s, power_w)
            if probe is not None and 0.0 <= now_s - probe[1] < 0.05:
                self._origin_read = probe  # read just before start: good enough as the origin
            self._probe = None
            self._next_watch_s = now_s
        if self.watch_thread and self.has_energy_counter:
            self._watcher_stop.set()  # a previous run's watcher, if any
            self._watcher_stop = threading.Event()
            self._watcher = threading.Thread(
                target=self._watch_loop,
                args=(self._watcher_stop,),
                name=f"codecarbon-callbacks-gpu{self.index}-counter",
                daemon=True,
            )
            self._watcher.start()

    def close(self) -> None:
        self._started = False
        self._watcher_stop.set()

    # -- sampler -------------------------------------------------------------------------------

    def sample(self, now_s: float) -> None:
        """Read power (microseconds); now and then watch one counter step. Never raises."""
        if not self._started:
            return
        power_w = self._read_power_w()
        with self._lock:
            self._integrate_to(now_s, power_w)
            watch_due = (
                self.has_energy_counter
                and self._counter_failed_at is None
                and now_s >= self._next_watch_s
            )
        if power_w is None and self.power_source is not None:
            self._fail("NVML power read failed; power integration paused")
        if self.watch_thread or not (self.has_energy_counter and self._counter_failed_at is None):
            return  # the watcher thread does the counter reads
        try:
            if watch_due:
                self._watch(now_s)
            elif self.anchor_interval_s is not None and now_s >= self._next_anchor_s:
                self._refresh_anchor(now_s)
        except self._nvml.NVMLError as error:
            with self._lock:
                self._counter_broken(self._clock(), error)

    def _refresh_anchor(self, now_s: float) -> None:
        """One counter read in the middle of a step (unambiguous): a fresh anchor, so that an
        edge read next to a step can tell which side of it it saw (sampler thread)."""
        phase = self._phase
        if not phase.locked:
            return
        period = phase.period_s or NOMINAL_COUNTER_PERIOD_S
        into_step = now_s - phase.step_time(phase.step_index(now_s))
        if not 0.3 * period <= into_step <= 0.6 * period:
            return  # a later sample() call lands nearer the middle of a step
        read = self._read_counter()
        with self._lock:
            self._step_of_read(read, update=True)
        self._next_anchor_s = now_s + self.anchor_interval_s  # type: ignore[operator]

    def _watch(self, now_s: float) -> None:
        """Observe counter steps (sampler thread)."""
        phase = self._phase
        if not phase.locked:
            self._first_watch()
            return
        margin = 0.003 + 3 * phase.uncertainty_s
        k = phase.step_index(now_s + margin) + 1
        target = phase.step_time(k)
        wait = target - margin - now_s
        # sleep little on the sampler: wait for a tick that lands just before a step, unless the
        # ticks keep missing (25-ms ticks against a 100-ms counter can stay out of phase)
        limit = (
            MAX_WATCH_WAIT_S if self._watch_skips < 4 else (self.sample_interval_s or 0.025) + 0.005
        )
        if wait > limit:
            self._watch_skips += 1
            return
        self._watch_skips = 0
        if wait > 0:
            self._sleep(wait)
        # read until the step shows; a full period at most (a late step is still found)
        self._burst(until_changes=1, limit_s=target + (phase.period_s or 0.1) + margin)
        # watch often while the period is young, then every watch_interval_s
        young = phase.observations < 8
        self._next_watch_s = now_s + (
            min(0.3, self.watch_interval_s) if young else self.watch_interval_s
        )

    def _first_watch(self) -> None:
        """Read back to back until FIRST_WATCH_STEPS steps (<= FIRST_WATCH_LIMIT_S)."""
        with self._lock:
            self._anchor = None  # step indexes restart with a new fit
        self._burst(until_changes=FIRST_WATCH_STEPS, limit_s=self._clock() + FIRST_WATCH_LIMIT_S)
        self._next_watch_s = self._clock() + (
            min(0.3, self.watch_interval_s) if self._phase.locked else 4 * self.watch_interval_s
        )

    def _watch_loop(self, stop: threading.Event) -> None:
        """The watcher thread (``watch_thread``): all counter reads but the edges' own."""
        try:
            while not stop.is_set() and self._counter_failed_at is None:
                phase = self._phase
                if not phase.locked:
                    self._first_watch()
                    if not phase.locked:
                        stop.wait(4 * self.watch_interval_s)
                    continue
                period = phase.period_s or NOMINAL_COUNTER_PERIOD_S
                now = self._clock()
                if now >= self._next_watch_s:
                    # sleep until just before the next step, then read until it shows
                    margin = 0.003 + 3 * phase.uncertainty_s
                    target = phase.step_time(phase.step_index(now + margin) + 1)
                    if stop.wait(max(0.0, target - margin - self._clock())):
                        return
                    self._burst(until_changes=1, limit_s=target + period + margin)
                    young = phase.observations < 8
                    self._next_watch_s = self._clock() + (
                        min(0.3, self.watch_interval_s) if young else self.watch_interval_s
                    )
                elif self.anchor_interval_s is not None and now >= self._next_anchor_s:
                    # one read in the middle of a step: unambiguous, a fresh anchor
                    middle = phase.step_time(phase.step_index(now)) + 0.45 * period
                    if middle < now:
                        middle += period
                    if stop.wait(max(0.0, middle - self._clock())):
                        return
                    read = self._read_counter()
                    with self._lock:
                        self._step_of_read(read, update=True)
                    self._next_anchor_s = self._clock() + self.anchor_interval_s
                else:
                    wake = self._next_watch_s
                    if self.anchor_interval_s is not None:
                        wake = min(wake, self._next_anchor_s)
                    stop.wait(max(0.001, wake - now))
        except self._nvml.NVMLError as error:
            with self._lock:
                self._counter_broken(self._clock(), error)
        except Exception as error:  # noqa: BLE001 - a background thread must not die loudly
            logger.debug("%s: counter watcher stopped: %s", self.name, error)

    def _burst(self, *, until_changes: int, limit_s: float) -> None:
        """Back-to-back counter reads until ``until_changes`` steps are seen or ``limit_s``."""
        previous = self._read_counter()
        first = previous
        changes: list[tuple[float, float, float]] = []  # (step time, resolution, value J)
        while len(changes) < until_changes and previous[1] < limit_s:
            current = self._read_counter()
            # keep the power integral going meanwhile (microseconds a read): it decides which
            # side of a step an edge reading is on, and a burst can last 0.35 s
            power_w = self._read_power_w()
            with self._lock:
                self._integrate_to(max(current[1], self._power_t or current[1]), power_w)
            if current[2] != previous[2]:
                mid_prev = (previous[0] + previous[1]) / 2
                mid_cur = (current[0] + current[1]) / 2
                changes.append(((mid_prev + mid_cur) / 2, (mid_cur - mid_prev) / 2, current[2]))
            previous = current
        with self._lock:
            phase = self._phase
            # a step bracketed by a slow read (up to 26 ms) says little: leave it out
            phase.observe_run(
                [(k, c[0]) for k, c in enumerate(changes) if c[1] <= MAX_STEP_RESOLUTION_S]
            )
            if changes and phase.locked:
                step_s, _, value_j = changes[-1]
                k = phase.step_index(step_s + phase.period_s / 2)  # type: ignore[operator]
                if self._anchor is None or k >= self._anchor[0]:
                    self._anchor = (k, value_j)
            if self._origin_read is None:
                self._origin_read = first
            self._resolve_origin()
            if self._origin_j is not None and phase.locked:
                # the counter as of the burst's last read: where power takes over if it fails
                mid = (previous[0] + previous[1]) / 2
                step_s = phase.step_time(phase.step_index(mid))
                since_start_j = previous[2] - self._origin_j
                if self._last_good is None or step_s > self._last_good[0]:
                    self._last_good = (step_s, max(0.0, since_start_j))

    # -- edges ---------------------------------------------------------------------------------

    def _expected_counter_j(self, k: int) -> float | None:
        """The counter at step k as the anchor and the power integral predict it."""
        if self._anchor is None or not self._phase.locked:
            return None
        k_anchor, value_j = self._anchor
        if k == k_anchor:
            return value_j
        phase = self._phase
        lag_s = INSTANT_POWER_LAG_S if self.power_source == "instant" else 0.0
        return (
            value_j
            + self._integral_at(phase.step_time(k) + lag_s)
            - self._integral_at(phase.step_time(k_anchor) + lag_s)
        )

    def _step_of_read(self, read: tuple[float, float, float], update: bool) -> float | None:
        """The time of the counter step whose value a read returned; None without a phase."""
        phase = self._phase
        if not phase.locked:
            return None
        t_a, t_b, value_j = read
        mid = (t_a + t_b) / 2
        k = phase.step_index(mid)
        half_read = (t_b - t_a) / 2
        guard = half_read + 3 * phase.uncertainty_s + 0.001
        candidates = [k]
        if mid - phase.step_time(k) < guard:
            candidates = [k - 1, k]
        elif phase.step_time(k + 1) - mid < guard:
            candidates = [k, k + 1]
        anchor = self._anchor
        if len(candidates) > 1:
            predicted_step = phase.step_time(candidates[1])
            if anchor is not None and anchor[0] == candidates[0]:
                # the counter changes at every step: same value, same step; else the next one
                k = candidates[0] if value_j == anchor[1] else candidates[1]
            elif anchor is not None and anchor[0] == candidates[1]:
                # the anchor saw the later step (read concurrently): same value or before it
                k = candidates[1] if value_j == anchor[1] else candidates[0]
            elif anchor is not None and anchor[0] == candidates[0] - 1 and value_j == anchor[1]:
                k = anchor[0]  # the counter is later than predicted
            elif abs(mid - predicted_step) > half_read + phase.uncertainty_s:
                # clearly on one side of the predicted step: the timing decides
                k = candidates[1] if mid > predicted_step else candidates[0]
            else:
                # too close to call by timing: the energy since the anchor decides
                errors = []
                for candidate in candidates:
                    expected = self._expected_counter_j(candidate)
                    errors.append(math.inf if expected is None else abs(value_j - expected))
                if not all(math.isinf(e) for e in errors):
                    k = candidates[errors.index(min(errors))]
        if update and (self._anchor is None or k >= self._anchor[0]):
            self._anchor = (k, value_j)
        return phase.step_time(k)

    def _estimate_at(self, read: tuple[float, float, float], t: float, power_w: float) -> float:
        """Counter-scale energy at ``t`` from one counter read (lock held), J."""
        step_s = self._step_of_read(read, update=True)
        if step_s is None:  # no phase: the read is on average half a period stale
            period = self._phase.period_s or NOMINAL_COUNTER_PERIOD_S
            step_s = (read[0] + read[1]) / 2 - period / 2
        age_s = t - step_s
        lag_s = INSTANT_POWER_LAG_S if self.power_source == "instant" else 0.0
        if age_s <= lag_s:
            return read[2] + power_w * age_s
        # instant power shows what the counter counts ~70 ms later: the readings of the last
        # (age - lag) seconds stand for the start of the step, the latest for its last lag
        return (
            read[2] + (self._integral_at(t) - self._integral_at(step_s + lag_s)) + power_w * lag_s
        )

    def _resolve_origin(self, force: bool = False) -> None:
        """Place the counter-scale energy at start within its step (lock held).

        The meter reads every component right at start, before the sampler has found the
        counter's phase: the origin is then provisional (half a period assumed) and is placed
        again, once, from the same reading when the phase is known. Values returned before stay
        as they were (clamped non-decreasing), so windows still tile the run exactly; the window
        that spans the change absorbs the correction (at most half a period of power).
        """
        if self._origin_read is None:
            return
        if self._origin_j is not None and not (self._origin_provisional and self._phase.locked):
            return
        if not (self._phase.locked or force):
            return
        self._origin_j = self._estimate_at(self._origin_read, self._start_s, self._start_power_w)
        self._origin_provisional = not self._phase.locked

    def energy_j(self, now_s: float) -> float:
        """Joules since start at ``now_s``. Reads the counter at most once. Never raises."""
        if not self._started:
            return 0.0
        if not self.has_energy_counter or self._counter_failed_at is not None:
            return self._power_only_energy_j(now_s)
        power_w = self._read_power_w()  # microseconds: the freshest power for the extrapolation
        try:
            read = self._read_counter()
        except self._nvml.NVMLError as error:
            with self._lock:
                self._counter_broken(now_s, error)
            return self._power_only_energy_j(now_s)
        with self._lock:
            self._integrate_to(max(now_s, self._power_t or now_s), power_w)
            if self._origin_read is None:
                self._origin_read = read
            self._resolve_origin(force=True)
            absolute_j = self._estimate_at(read, now_s, self._power_w)
            assert self._origin_j is not None
            self._returned_j = max(self._returned_j, absolute_j - self._origin_j)
            self._last_good = (now_s, self._returned_j)
            return self._returned_j

    # -- degraded paths ------------------------------------------------------------------------

    def _counter_broken(self, now_s: float, error: BaseException) -> None:
        """The counter failed: keep the last good energy, integrate power from here (lock held)."""
        if self._counter_failed_at is None:
            # continue from the last energy the counter vouched for, with the power integral
            # from that moment on (not from the moment the failure was noticed)
            since_s, energy_j = self._last_good or (self._start_s, 0.0)
            self._counter_failed_at = (since_s, energy_j)
            self._integral_at_failure = self._integral_at(since_s)
        self._fail(
            f"NVML energy counter failed ({_nvml_error_name(error)}); keeping the last good "
            "energy, then integrating power where power still reads"
        )

    def _power_only_energy_j(self, now_s: float) -> float:
        power_w = self._read_power_w()
        with self._lock:
            if power_w is None and self.power_source is not None:
                self._fail("NVML power read failed; energy frozen at its last value")
            self._integrate_to(max(now_s, self._power_t or now_s), power_w)
            integral_j = self._integral_at(now_s)
            if self._counter_failed_at is not None:
                value = self._counter_failed_at[1] + max(
                    0.0, integral_j - self._integral_at_failure
                )
                value = max(value, self._returned_j)  # never below what the counter gave
            else:
                value = integral_j
                if self.power_source == "usage":
                    # a trailing 1-s average lags by half a second: add back what it has not
                    # shown yet (still monotonic: d/dt >= average / 2 >= 0)
                    value += POWER_USAGE_LAG_S * (self._power_w - self._start_power_w)
            self._power_only_out_j = max(self._power_only_out_j, value)
            return self._power_only_out_j

    # -- reporting -----------------------------------------------------------------------------

    def power_w(self) -> float:
        return self._power_w

    def utilization_percent(self) -> float | None:
        try:
            return float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu)
        except (self._nvml.NVMLError, AttributeError):
            return None

    @property
    def counter_period_s(self) -> float | None:
        """The measured period of the energy counter's steps, s (None until measured)."""
        return self._phase.period_s

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(
            uuid=self.uuid,
            index=self.index,
            cuda_index=self.cuda_index,
            memory_total_bytes=self.memory_total_bytes,
            power_source=self.power_source,
            counter_period_s=self._phase.period_s,
        )
        return info


# -- selection and detection -------------------------------------------------------------------


def _parse_id_list(value: str | int | Iterable[int | str] | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, bool):  # a bad configuration value: ValueError, as ConfigError is
        raise ValueError(f"gpu_ids must be GPU indexes (int) or UUIDs (str), got {value!r}")  # noqa: TRY004
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    items: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            # a bad configuration value: ValueError, as ConfigError is
            raise ValueError(  # noqa: TRY004
                f"gpu_ids must be GPU indexes (int) or UUIDs (str), got {item!r} in {value!r}"
            )
        items.append(str(item).strip())
    return items


def _match_uuid(entry: str, uuids: Sequence[str]) -> int | None:
    """The NVML index whose UUID is ``entry`` or starts with it (CUDA accepts prefixes)."""
    wanted = entry.lower()
    if not wanted.startswith("gpu-"):
        wanted = "gpu-" + wanted
    matches = [i for i, uuid in enumerate(uuids) if uuid.lower().startswith(wanted)]
    return matches[0] if len(matches) == 1 else None


def _uuid_key(uuid: str) -> str:
    key = uuid.strip().lower()
    return key.removeprefix("gpu-")


def cuda_device_uuids() -> list[str] | None:
    """The UUID of each CUDA ordinal, from torch, only when the process already initialised CUDA.

    This is the exact CUDA -> NVML mapping, whatever CUDA_DEVICE_ORDER says. The core never
    imports torch nor initialises CUDA: None otherwise.
    """
    torch = imported_torch()
    if torch is None:
        return None
    try:
        if not torch.cuda.is_initialized():
            return None
        return [
            str(torch.cuda.get_device_properties(i).uuid) for i in range(torch.cuda.device_count())
        ]
    except Exception as error:  # noqa: BLE001 - an old torch or a broken context: fall back
        logger.debug("CUDA device UUIDs unavailable: %s", error)
        return None


def select_devices(
    uuids: Sequence[str],
    *,
    gpu_ids: str | int | Iterable[int | str] | None = None,
    cuda_visible_devices: str | None = None,
    cuda_uuids: Sequence[str] | None = None,
    strict: bool = False,
) -> tuple[list[tuple[int, int | None]], list[str]]:
    """Choose the NVML devices to measure.

    Args:
        uuids: the UUID of each NVML device, by NVML index.
        gpu_ids: ints (CUDA ordinals when ``cuda_visible_devices`` is set, else NVML indexes)
            or UUIDs (prefixes allowed); None for all visible GPUs.
        cuda_visible_devices: the value of CUDA_VISIBLE_DEVICES, or None when unset.
        cuda_uuids: the UUID of each CUDA ordinal where known (:func:`cuda_device_uuids`): then
            it defines the CUDA view exactly and CUDA_VISIBLE_DEVICES is not parsed.
        strict: ``gpu_ids`` are the user's: an entry that matches no visible GPU raises
            (else it is ignored with a note).

    Returns:
        ``([(nvml_index, cuda_index or None), ...], notes)``.

    Raises:
        ConfigError: with ``strict``, a ``gpu_ids`` entry matches no visible GPU; the message
            lists the visible GPUs and says that indexes count within CUDA_VISIBLE_DEVICES.
        ValueError: ``gpu_ids`` holds something that is neither an index nor a UUID.
    """
    notes: list[str] = []
    # CUDA's view: ordinal -> NVML index
    by_key = {_uuid_key(u): i for i, u in enumerate(uuids)}
    if cuda_uuids is not None and all(_uuid_key(u) in by_key for u in cuda_uuids):
        visible = [by_key[_uuid_key(u)] for u in cuda_uuids]
    elif cuda_visible_devices is None:
        visible = list(range(len(uuids)))
    else:
        visible = []
        for entry in (e.strip() for e in cuda_visible_devices.split(",")):
            if not entry:
                break
            if entry.lstrip("-").isdigit():
                index = int(entry)
                if not 0 <= index < len(uuids):
                    break  # CUDA ignores this entry and every one after it
            elif entry.upper().startswith("MIG-"):
                notes.append(
                    f"CUDA_VISIBLE_DEVICES entry {entry!r} is a MIG instance: not measured"
                )
                continue
            else:
                found = _match_uuid(entry, uuids)
                if found is None:
                    break
                index = found
            if index not in visible:
                visible.append(index)
    cuda_of = {nvml_index: ordinal for ordinal, nvml_index in enumerate(visible)}
    wanted = _parse_id_list(gpu_ids)
    chosen: list[int]
    missing: list[str] = []
    if wanted is None:
        chosen = list(visible)
    else:
        chosen = []
        for entry in wanted:
            wanted_index: int | None
            if entry.isdigit():
                number = int(entry)
                wanted_index = visible[number] if number < len(visible) else None
            else:
                wanted_index = _match_uuid(entry, uuids)
            if wanted_index is None:
                missing.append(entry)
                notes.append(f"gpu_ids entry {entry!r} matches no visible GPU: ignored")
            elif wanted_index not in chosen:
                chosen.append(wanted_index)
        if strict and missing:
            raise _no_such_gpu(missing, visible, uuids, cuda_visible_devices,
                               from_torch=cuda_uuids is not None)
    return [(i, cuda_of.get(i)) for i in chosen], notes


def _no_such_gpu(missing: Sequence[str], visible: Sequence[int], uuids: Sequence[str],
                 cuda_visible_devices: str | None, *, from_torch: bool) -> Exception:
    """The ConfigError for ``gpu_ids`` entries that match no visible GPU."""
    from codecarbon_callbacks_core.errors import ConfigError

    listed = "; ".join(
        f"{ordinal}: {uuids[index]} (NVML index {index})" for ordinal, index in enumerate(visible)
    ) or "none"
    if cuda_visible_devices is not None:
        view = f"CUDA_VISIBLE_DEVICES={cuda_visible_devices!r}"
    elif from_torch:
        view = "the CUDA devices torch sees"
    else:
        view = "CUDA_VISIBLE_DEVICES (unset here: every GPU NVML lists)"
    return ConfigError(
        f"gpu_ids: {', '.join(repr(m) for m in missing)} matches no visible GPU. "
        f"Visible GPUs (index: UUID): {listed}. Indexes in gpu_ids count within "
        f"CUDA_VISIBLE_DEVICES (0 is its first GPU), here {view}; UUIDs (GPU-...) match any "
        "GPU NVML lists."
    )


def nvidia_driver_present() -> bool:
    """Cheap check (microseconds) before importing pynvml (~10 ms) on machines without GPUs.

    True off Linux (we cannot tell cheaply), and on Linux when the driver's /proc entry, its
    device node or WSL's NVML library exists.
    """
    import os
    import sys

    if not sys.platform.startswith("linux"):
        return True
    return any(
        os.path.exists(path)
        for path in ("/proc/driver/nvidia", "/dev/nvidiactl", "/usr/lib/wsl/lib/libnvidia-ml.so.1")
    )


def _import_nvml() -> Any:
    import pynvml  # nvidia-ml-py

    return pynvml


def detect_nvml(
    *,
    nvml: Any = None,
    gpu_ids: str | int | Iterable[int | str] | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    strict_gpu_ids: bool = False,
) -> tuple[list[NvmlGpu], list[str]]:
    """One :class:`NvmlGpu` per selected GPU; none (and a debug log) when NVML is unusable.

    Args:
        nvml: the ``pynvml`` module or a fake with its names (default: import pynvml).
        gpu_ids: see :func:`select_devices`.
        strict_gpu_ids: ``gpu_ids`` are the user's: one that matches no visible GPU raises
            ConfigError (see :func:`select_devices`), when NVML lists GPUs at all.
        environ: where to read CUDA_VISIBLE_DEVICES (default ``os.environ``).
        clock, sleep: the meter's clock and a sleep on it (tests pass virtual ones).

    Returns:
        ``(gpus, notes)``; notes say what was asked for but not found.
    """
    import os
    import sys

    env = os.environ if environ is None else environ
    if nvml is None:
        # an already imported pynvml (or a test's fake installed as pynvml) is used as it is
        if "pynvml" not in sys.modules and not nvidia_driver_present():
            logger.debug("no NVIDIA driver (/proc/driver/nvidia, /dev/nvidiactl): no GPU measured")
            return [], []
        try:
            nvml = _import_nvml()
        except ImportError as error:
            logger.debug("no NVML: %s (pip install nvidia-ml-py)", error)
            return [], []
    try:
        nvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 - NVMLError, or no libnvidia-ml.so (a CPU machine)
        logger.debug("no NVML: nvmlInit failed: %s", error)
        return [], []
    try:
        count = int(nvml.nvmlDeviceGetCount())
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
    except nvml.NVMLError as error:
        logger.debug("NVML: cannot list devices: %s", error)
        return [], []
    if count == 0:
        logger.debug("NVML: no device")
        return [], []
    selection, notes = select_devices(
        uuids,
        gpu_ids=gpu_ids,
        cuda_visible_devices=env.get("CUDA_VISIBLE_DEVICES"),
        cuda_uuids=cuda_device_uuids(),
        strict=strict_gpu_ids,
    )

    def build(item: tuple[int, int | None]) -> NvmlGpu | None:
        index, cuda_index = item
        try:
            return NvmlGpu(
                nvml, index, cuda_index=cuda_index, handle=handles[index], clock=clock, sleep=sleep
            )
        except nvml.NVMLError as error:
            notes.append(f"GPU {index} ({uuids[index]}): NVML refused it ({error}): not measured")
            return None

    # each probe reads the slow energy counter once: probe several GPUs at once
    if len(selection) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(selection))) as pool:
            built = list(pool.map(build, selection))
    else:
        built = [build(item) for item in selection]
    gpus = [g for g in built if g is not None]
    for gpu in gpus:
        if gpu.failure:
            notes.append(f"{gpu.name} ({gpu.model}): {gpu.failure}")
        elif not gpu.has_energy_counter:
            notes.append(
                f"{gpu.name} ({gpu.model}): no NVML energy counter; power integrated "
                f"({gpu.power_source} power)"
            )
    return gpus, notes


_edge_pool: ThreadPoolExecutor | None = None
_edge_pool_lock = threading.Lock()


def read_energy_concurrently(components: Sequence[Component], now_s: float) -> list[float]:
    """``energy_j(now_s)`` of each component, GPU counters read in parallel threads.

    A counter read takes milliseconds (2.4-3.6 ms on an H200, up to 26 ms); reading 8 GPUs one
    after the other would hold an edge for 20-200 ms. Components without a slow counter are read
    on the calling thread. Never raises: a component that raises (ours never do) gives NaN.
    """
    global _edge_pool

    def read(component: Component) -> float:
        try:
            return float(component.energy_j(now_s))
        except Exception as error:  # noqa: BLE001 - components must not raise; be safe anyway
            logger.debug("%s: energy_j raised %s", component.name, error)
            return float("nan")

    slow = [i for i, c in enumerate(components) if c.method == MeasurementMethod.NVML_ENERGY]
    results = [0.0] * len(components)
    futures = {}
    if len(slow) > 1:
        with _edge_pool_lock:
            if _edge_pool is None:
                from concurrent.futures import ThreadPoolExecutor

                _edge_pool = ThreadPoolExecutor(
                    max_workers=8, thread_name_prefix="codecarbon-callbacks-gpu-edge"
                )
            pool = _edge_pool
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

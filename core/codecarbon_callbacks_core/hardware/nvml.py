"""NVIDIA GPUs through NVML (``pynvml`` from nvidia-ml-py): the device component and detection.

Methods:
- ``nvml_energy``: ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded), each
  window edge placed inside the counter's 100 ms step with instant power (the algorithm is in
  :mod:`~codecarbon_callbacks_core.hardware.nvml_phase`);
- ``nvml_power``: where the counter is not supported, power integrated over time: the instant
  power field (186, ``NVML_FI_DEV_POWER_INSTANT``) when the driver has it, else
  ``nvmlDeviceGetPowerUsage`` (a 1-second average on recent GPUs, see ``POWER_USAGE_LAG_S``).
  An unsupported counter is never read as 0 (CodeCarbon's bug).

Errors mid-run: the last good energy is kept, power integration continues where power still
reads, ``failure`` says why, one warning is logged; nothing raises.

Which GPUs are measured: :mod:`~codecarbon_callbacks_core.hardware.nvml_select`; window edges
read several GPUs at once: :mod:`~codecarbon_callbacks_core.hardware.edge_reads`. The evidence
behind the numbers here (the H200 traces, why ~70 ms, 100 ms steps, the ~102 ms instant-power
clock, the error figures) is in ``docs/measurement.md``, section "NVML: the evidence".
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core.hardware import _forksafe, nvml_uncertainty
from codecarbon_callbacks_core.hardware.base import (
    Component,
    EdgeReading,
    MeasurementMethod,
    UncertaintyTerm,
)
from codecarbon_callbacks_core.hardware.diagnose import (
    _import_nvml,
    nvidia_driver_present,
    open_nvml,
)
from codecarbon_callbacks_core.hardware.edge_reads import (
    read_energy_concurrently,
    submit_counter_job,
)
from codecarbon_callbacks_core.hardware.nvml_phase import (
    FIRST_WATCH_LIMIT_S,
    INSTANT_POWER_LAG_S,
    NOMINAL_COUNTER_PERIOD_S,
    YOUNG_OBSERVATIONS,
    YOUNG_WATCH_INTERVAL_S,
    CounterPhase,
    _PhaseModel,
    _Reference,
)
from codecarbon_callbacks_core.hardware.nvml_select import cuda_device_uuids, select_devices

if TYPE_CHECKING:
    from concurrent.futures import Future

logger = logging.getLogger(__name__)

__all__ = [
    "ANCHOR_INTERVAL_S",
    "FIELD_POWER_INSTANT",
    "GPU_SAMPLE_INTERVAL_S",
    "INSTANT_POWER_LAG_S",
    "NOMINAL_COUNTER_PERIOD_S",
    "POWER_USAGE_LAG_S",
    "WATCH_INTERVAL_S",
    "NvmlGpu",
    "_PhaseModel",
    "_import_nvml",
    "cuda_device_uuids",
    "detect_nvml",
    "nvidia_driver_present",
    "read_energy_concurrently",
    "select_devices",
]

#: NVML_FI_DEV_POWER_INSTANT
FIELD_POWER_INSTANT = 186
#: how often the sampler reads instant power, s
GPU_SAMPLE_INTERVAL_S = 0.025
#: how often one counter step is watched again once the phase is known, s: a handful of reads
#: (the period is stable; edges and live updates keep the anchor fresh), well under 1 read/s
WATCH_INTERVAL_S = 30.0
#: how often, at most, the counter is read once mid-step for a fresh anchor while the power
#: varies, s (None: never). An edge read right at a step is told apart from its neighbour by the
#: energy since the anchor; over a varying load the power integral since an old anchor can be
#: half a step off. At steady power (an idle GPU, steady training) no such read is made: the
#: reads edges and live updates make are the anchors.
ANCHOR_INTERVAL_S: float | None = 1.0
#: the power varies when its range since the last anchor exceeds this fraction of its maximum
VARYING_POWER_FRACTION = 0.1

#: nvmlDeviceGetPowerUsage is a trailing 1-s average on recent GPUs: half of it is lag. On the
#: H200 trace, windows of 0.5-3 s integrated from it: rms error 32 % uncorrected, 12.6 % with
#: 0.5 s (0.4 s: 12.6 %, 0.6 s: 15.7 %)
POWER_USAGE_LAG_S = 0.5


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


_VALUE_FIELDS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal"}


def _nvml_error_name(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class NvmlGpu(CounterPhase, Component):
    """One NVIDIA GPU: its energy in J since ``start()``, by counter or by integrated power.

    Edges are placed within the counter's step by its
    :class:`~codecarbon_callbacks_core.hardware.nvml_phase.CounterPhase` half; the module
    docstring gives the methods and the failure paths.

    Args:
        nvml: the ``pynvml`` module (or a fake with the same names), already initialised.
        index: the NVML index of the device.
        cuda_index: the CUDA ordinal of the device in this process, where known.
        clock: the meter's monotonic clock, s (``time.monotonic``); the fake NVML's in tests.
        sleep: sleeps ``s`` seconds (``time.sleep``); the fake clock's in tests.
        sample_interval_s: how often the sampler reads instant power.
        watch_interval_s: how often the sampler re-watches a counter step.
        anchor_interval_s: how often the sampler reads the counter once mid-step (None: never).
        bursts_off_sampler: run the short bursts of counter reads that find the counter's step
            (after the first edge, then one step every ``watch_interval_s``) as jobs on the
            process-wide edge-read pool, so that the sampler only reads instant power
            (microseconds) and several GPUs lock on at once; no thread of this GPU's own.
            Default: when ``clock`` is ``time.monotonic``; with a virtual clock (tests) the
            sampler's ``sample()`` calls do them, on the sampler's timeline, deterministically.

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
        bursts_off_sampler: bool | None = None,
    ) -> None:
        self._nvml = nvml
        self.index = index
        self.cuda_index = cuda_index
        self._handle = handle if handle is not None else nvml.nvmlDeviceGetHandleByIndex(index)
        self._init_timing(
            clock=clock,
            sleep=sleep,
            sample_interval_s=sample_interval_s,
            watch_interval_s=watch_interval_s,
            anchor_interval_s=anchor_interval_s,
            bursts_off_sampler=bursts_off_sampler,
        )
        self.name = f"gpu:{index}"
        self.uuid = _text(nvml.nvmlDeviceGetUUID(self._handle))
        self.model = _text(nvml.nvmlDeviceGetName(self._handle))
        try:
            self.memory_total_bytes: int | None = int(
                nvml.nvmlDeviceGetMemoryInfo(self._handle).total
            )
        except nvml.NVMLError:
            self.memory_total_bytes = None
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

    def _init_timing(
        self,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        sample_interval_s: float,
        watch_interval_s: float,
        anchor_interval_s: float | None,
        bursts_off_sampler: bool | None,
    ) -> None:
        """The clock, the sampling and burst settings, the lock and the fork tracking: what
        every GPU backend built on this class sets up the same way (see the class's Args)."""
        self._clock = clock
        self._sleep = sleep
        self.kind = "gpu"
        self.sample_interval_s = sample_interval_s
        self.watch_interval_s = watch_interval_s
        self.anchor_interval_s = anchor_interval_s
        self.bursts_off_sampler = (
            clock is time.monotonic if bursts_off_sampler is None else bursts_off_sampler
        )
        self._job: Future[None] | None = None  # the burst in flight on the pool
        self._job_stop = threading.Event()
        self._lock = threading.Lock()
        _forksafe.track(self)

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
        self._references: deque[_Reference] = deque(maxlen=16)  # the last anchors (nvml_phase)
        self._power_lo = self._power_hi = 0.0  # the power's range since the last anchor, W
        self._jump_var_j2 = 0.0  # what the power's jumps since the anchor add to its energy, J^2
        self._next_watch_s = 0.0
        self._next_anchor_s = 0.0
        self._edge_times: tuple[float, ...] = ()  # the last edge reads, s
        self._edge_anchor: tuple[float, float] | None = None  # an anchor timed for the next edge
        self._watch_skips = 0
        self._counter_failed_at: tuple[float, float] | None = None  # (t, energy since start J)
        self._integral_at_failure = 0.0
        self._last_good: tuple[float, float] | None = None  # (t, energy since start J) by counter
        self._power_only_out_j = 0.0
        self._reported: set[tuple[str, str]] = set()

    def _fail(self, why: str) -> None:
        if self.failure is None:
            self.failure = why
        warn_once(
            "failure", "%s (%s): %s", self.name, self.model, why, log=logger, seen=self._reported
        )

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
            self._reset_state()
            self._started = True
            self._start_s = now_s
            power_w = self._read_power_w()
            self._start_power_w = power_w or 0.0
            self._integrate_to(now_s, power_w)
            # The origin is the first edge's own read (the meter's start snapshot), never the
            # detection probe: with the phase still unknown, two different reads are each
            # placed half a period back, and a probe just before a step and a start read just
            # after it would differ by a whole step (a run one step short).
            self._probe = None
            self._next_watch_s = now_s
        self._job_stop.set()  # a previous run's burst, if any, ends at its next read
        self._job_stop = threading.Event()
        self._job = None

    def close(self) -> None:
        """Stop reading: a burst in flight on the pool ends at its next read (one NVML call at
        most; the pool's thread is process-wide, not this GPU's). Returns at once; never
        raises."""
        self._started = False
        self._job_stop.set()
        job = self._job
        if job is not None:
            job.cancel()  # not started yet: never runs

    def _background_anchor(self, stop: threading.Event) -> None:
        """A job on the edge-read pool: one counter read in the middle of a step."""
        try:
            phase = self._phase
            if not phase.locked:
                return
            period = phase.period_s or NOMINAL_COUNTER_PERIOD_S
            now = self._clock()
            step_s = phase.step_time(phase.step_index(now))
            middle = max(now, step_s + 0.45 * period)  # at once until 0.6 of the step
            if now > step_s + 0.6 * period:
                middle = step_s + 1.45 * period
            if stop.wait(max(0.0, middle - self._clock())):
                return
            read = self._read_counter()
            with self._lock:
                self._step_of_read(read, update=True)
        except self._nvml.NVMLError as error:
            with self._lock:
                self._counter_broken(self._clock(), error)
        except Exception as error:  # noqa: BLE001 - a pool job must not fail loudly
            logger.debug("%s: anchor read failed: %s", self.name, error)

    def _background_watch(self, stop: threading.Event) -> None:
        """A job on the edge-read pool: the first burst, or one step watched again."""
        try:
            phase = self._phase
            if not phase.locked:
                self._first_watch()
                return
            margin = 0.003 + 3 * phase.uncertainty_s
            now = self._clock()
            target = phase.step_time(phase.step_index(now + margin) + 1)
            if stop.wait(max(0.0, target - margin - self._clock())):
                return
            self._burst(until_changes=1, limit_s=target + (phase.period_s or 0.1) + margin)
            young = phase.observations < YOUNG_OBSERVATIONS
            self._next_watch_s = self._clock() + (
                min(YOUNG_WATCH_INTERVAL_S, self.watch_interval_s)
                if young
                else self.watch_interval_s
            )
        except self._nvml.NVMLError as error:
            with self._lock:
                self._counter_broken(self._clock(), error)
        except Exception as error:  # noqa: BLE001 - a pool job must not fail loudly
            logger.debug("%s: counter burst stopped: %s", self.name, error)

    # -- sampler -------------------------------------------------------------------------------

    def sample(self, now_s: float) -> None:
        """Read power (microseconds); now and then watch one counter step. Never raises."""
        if not self._started:
            return
        power_w = self._read_power_w()
        with self._lock:
            if power_w is not None:
                self._note_power(self._power_w, power_w)
            self._integrate_to(now_s, power_w)
            watch_due = (
                self.has_energy_counter
                and self._counter_failed_at is None
                and now_s >= self._next_watch_s
            )
        if power_w is None and self.power_source is not None:
            self._fail("NVML power read failed; power integration paused")
        if not (self.has_energy_counter and self._counter_failed_at is None):
            return
        if power_w is not None:
            self._power_lo = min(self._power_lo, power_w)
            self._power_hi = max(self._power_hi, power_w)
        anchor_due = self._phase.locked and (
            self._edge_anchor_due(now_s)
            or (
                self.anchor_interval_s is not None
                and now_s >= self._next_anchor_s
                and self._power_hi - self._power_lo > VARYING_POWER_FRACTION * self._power_hi
            )
        )
        if self.bursts_off_sampler:
            if (watch_due or anchor_due) and (self._job is None or self._job.done()):
                stop = self._job_stop
                if watch_due:
                    self._next_watch_s = now_s + FIRST_WATCH_LIMIT_S  # the job sets the next
                    self._job = submit_counter_job(lambda: self._background_watch(stop))
                else:
                    self._next_anchor_s = now_s + self.anchor_interval_s  # type: ignore[operator]
                    self._edge_anchor = None
                    self._job = submit_counter_job(lambda: self._background_anchor(stop))
            return
        try:
            if watch_due:
                self._watch(now_s)
            elif anchor_due:
                self._refresh_anchor(now_s)
        except self._nvml.NVMLError as error:
            with self._lock:
                self._counter_broken(self._clock(), error)

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
            self._plan_edge_anchor(now_s)
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

    sensor_accuracy_fraction = nvml_uncertainty.NVML_SENSOR_ACCURACY
    sensor_accuracy_source = nvml_uncertainty.NVML_SENSOR_SOURCE

    def edge_uncertainty_j(self, now_s: float) -> float:
        """See :func:`.nvml_uncertainty.edge_half_width_j`."""
        return nvml_uncertainty.edge_half_width_j(self, now_s)

    def method_term(self, start: EdgeReading, end: EdgeReading) -> UncertaintyTerm:
        return nvml_uncertainty.method_term(self, start, end)

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


def detect_nvml(
    *,
    nvml: Any = None,
    gpu_ids: str | int | Iterable[int | str] | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    strict_gpu_ids: bool = False,
) -> tuple[list[NvmlGpu], list[str]]:
    """One :class:`NvmlGpu` per selected GPU; none (and a debug log saying why, from
    :func:`~codecarbon_callbacks_core.hardware.diagnose.open_nvml`) when NVML is unusable.

    Args:
        nvml: the ``pynvml`` module or a fake with its names (default: import pynvml where an
            NVIDIA driver is present).
        gpu_ids: see :func:`select_devices`.
        strict_gpu_ids: ``gpu_ids`` are the user's: one that matches no visible GPU raises
            ConfigError (see :func:`select_devices`), when NVML lists GPUs at all.
        environ: where to read CUDA_VISIBLE_DEVICES (default ``os.environ``).
        clock, sleep: the meter's clock and a sleep on it (tests pass virtual ones).

    Returns:
        ``(gpus, notes)``; notes say what was asked for but not found.
    """
    import os

    env = os.environ if environ is None else environ
    nvml, finding = open_nvml(nvml)
    if nvml is None:
        logger.debug(
            "no GPU measured: %s%s", finding.reason, f" ({finding.fix})" if finding.fix else ""
        )
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

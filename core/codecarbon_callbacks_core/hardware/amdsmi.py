"""AMD GPUs through amdsmi (the Python interface ROCm ships): the device component and detection.

Install with the core's extra ``amd`` (``pip install "codecarbon-callbacks-core[amd]"``), or use
the ``amdsmi`` package of the ROCm release installed (``/opt/rocm/share/amd_smi``): the Python
package only wraps ROCm's ``libamd_smi.so``, and must match it.

API followed: amdsmi 6.1-7.0 (ROCm 6.1-7.0). ``amdsmi_get_energy_count`` returns
``{"energy_accumulator", "counter_resolution", "timestamp"}`` from 6.3 on and
``{"power", "counter_resolution", "timestamp"}`` (the same accumulator under another name) in
6.1-6.2; both are read. ``amdsmi_get_power_info`` gives ``current_socket_power`` (W, MI300 and
later), ``socket_power`` (W, 7.0) and ``average_socket_power`` (W, MI200, Navi and earlier), an
unsupported field as ``"N/A"``.

Methods:
- ``amdsmi_energy``: the energy accumulator x ``counter_resolution`` (uJ per count, 15.3 uJ on
  MI100-MI300), unsigned 64-bit, wraparound handled; a read that goes backwards (amdsmi issue
  #115) keeps the last value. Edges are placed where the counter steps, by the NVML backend's
  machinery (:mod:`~codecarbon_callbacks_core.hardware.nvml_phase`), the step learnt from the
  counter's own reads, not assumed: a counter that steps more often than every
  ``FINE_STEP_LIMIT_S`` (the driver caches the metrics for 1 ms; ROCm issue 1649), finer than
  the phase model fits, has each read placed half a measured step back; a coarser one is placed
  by the phase model as on NVIDIA GPUs.
- ``amdsmi_power``: where the counter is not supported (virtual machine guests, per amdsmi's
  documentation) or refused, socket power integrated over time.

Errors mid-run (a GPU lost, a permission refused): the last good energy is kept, power
integration continues where power still reads, ``failure`` says why, one warning is logged;
nothing raises. Which GPUs: :mod:`~codecarbon_callbacks_core.hardware.amdsmi_select`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from codecarbon_callbacks_core.hardware.amdsmi_select import AmdDeviceIds, select_amd_devices
from codecarbon_callbacks_core.hardware.base import (
    EdgeReading,
    MeasurementMethod,
    UncertaintyTerm,
    combine,
)
from codecarbon_callbacks_core.hardware.diagnose import open_amdsmi
from codecarbon_callbacks_core.hardware.nvml import (
    ANCHOR_INTERVAL_S,
    GPU_SAMPLE_INTERVAL_S,
    NOMINAL_COUNTER_PERIOD_S,
    WATCH_INTERVAL_S,
    NvmlGpu,
)

logger = logging.getLogger(__name__)

__all__ = ["COUNTER_BITS", "FINE_STEP_LIMIT_S", "POWER_FIELDS", "AmdSmiGpu", "detect_amdsmi"]

#: the energy accumulator is a uint64_t (amdsmi.h)
COUNTER_BITS = 64
#: two counter steps seen closer than this mean a counter far finer than the 100 ms steps the
#: phase model fits (the driver caches the metrics for 1 ms): a read is then placed half a
#: measured step back, without the phase model, s
FINE_STEP_LIMIT_S = 0.01
#: amdsmi_get_power_info's fields, best first: (key, power_source)
POWER_FIELDS = (
    ("current_socket_power", "current"),
    ("socket_power", "current"),
    ("average_socket_power", "average"),
)


def _number(value: Any) -> float | None:
    """A reading as a float, None for amdsmi's "N/A" or an unsupported value (UINT32_MAX)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if value < 0 or value in (0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
        return None
    return float(value)


#: AMD states no accuracy for amdsmi's energy or power readings: NVIDIA's only stated figure
#: (+/-5 % of the power draw) stands in for it, so that the sensor term is not silently 0
AMDSMI_SENSOR_ACCURACY = 0.05
AMDSMI_SENSOR_SOURCE = (
    "AMD states no accuracy for amdsmi energy or power; NVML's +/-5% of power draw "
    "(NVML API reference, nvmlDeviceGetPowerUsage) stands in"
)
#: the smallest edge half-width, J
EDGE_FLOOR_J = 0.1
#: how far back a power-integrated edge looks for a varying load, s (as NVML's)
POWER_LOOKBACK_S = 0.5


class _ErrorNames:
    """What :class:`NvmlGpu`'s shared paths catch (``self._nvml.NVMLError``): amdsmi's root
    exception. (A generic counter-GPU base taking the error type would make this unneeded.)"""

    def __init__(self, error: type[BaseException]) -> None:
        self.NVMLError = error


class AmdSmiGpu(NvmlGpu):
    """One AMD GPU: its energy in J since ``start()``, by counter or by integrated power.

    The life cycle, the edge placement and the degraded paths are :class:`NvmlGpu`'s; this
    class reads amdsmi instead of NVML (the module docstring gives the calls and units).

    Args:
        amdsmi: the ``amdsmi`` module (or a fake with its names), already initialised.
        handle: the device's processor handle (``amdsmi_get_processor_handles()[index]``).
        index: the device's position in amdsmi's list.
        hip_index: its HIP ordinal in this process (torch's ``cuda:N`` on ROCm), where visible.
        counter_bits: the accumulator's width (wraparound at ``2**counter_bits`` counts).
        clock, sleep, sample_interval_s, watch_interval_s, anchor_interval_s,
        bursts_off_sampler: as for :class:`NvmlGpu`.

    Attributes:
        uuid (amdsmi's), unique_id (the ASIC serial, ROCr's ``GPU-<id>``), index, cuda_index
        (the HIP ordinal), model, memory_total_bytes, power_source ("current", "average" or
        None), has_energy_counter, counter_resolution_uj.

    Example:
        >>> import amdsmi  # doctest: +SKIP
        >>> gpus, notes = detect_amdsmi()  # doctest: +SKIP
    """

    def __init__(
        self,
        amdsmi: Any,
        handle: Any,
        index: int,
        *,
        hip_index: int | None = None,
        counter_bits: int = COUNTER_BITS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        sample_interval_s: float = GPU_SAMPLE_INTERVAL_S,
        watch_interval_s: float = WATCH_INTERVAL_S,
        anchor_interval_s: float | None = ANCHOR_INTERVAL_S,
        bursts_off_sampler: bool | None = None,
    ) -> None:
        error = amdsmi.AmdSmiException
        self._amdsmi = amdsmi
        self._nvml = _ErrorNames(error)
        self._handle = handle
        self.index = index
        self.cuda_index = hip_index
        self._init_timing(
            clock=clock,
            sleep=sleep,
            sample_interval_s=sample_interval_s,
            watch_interval_s=watch_interval_s,
            anchor_interval_s=anchor_interval_s,
            bursts_off_sampler=bursts_off_sampler,
        )
        self.name = f"gpu:amd{index}"
        self.uuid = str(amdsmi.amdsmi_get_gpu_device_uuid(handle))
        self.unique_id, self.model = _asic(amdsmi, handle)
        try:
            vram_mb = _number(amdsmi.amdsmi_get_gpu_vram_info(handle).get("vram_size"))
            self.memory_total_bytes = None if vram_mb is None else int(vram_mb) * 1024 * 1024
        except (error, AttributeError):
            self.memory_total_bytes = None
        self._wrap_modulus = 2**counter_bits
        self._last_count: int | None = None
        self._wraps = 0
        self._last_read_mid: float | None = None
        self._last_read_s = 0.0  # how long the last counter read took, s
        self._last_step_s: float | None = None  # the middle of the last step seen, s
        #: the counter's step where it is finer than FINE_STEP_LIMIT_S (measured), s
        self.fine_step_s: float | None = None
        self.counter_resolution_uj: float | None = None
        self.power_source: str | None = None
        self._power_key: str | None = None
        self._choose_power_field()
        self.has_energy_counter = False
        self._probe = None
        why_not = None
        try:
            self._probe = self._read_counter()
            self.has_energy_counter = True
        except error as refused:
            why_not = f"{type(refused).__name__}: {refused}"
            logger.debug("%s: no energy counter (%s)", self.name, why_not)
        if self.has_energy_counter:
            self.method = MeasurementMethod.AMDSMI_ENERGY
        else:
            self.method = MeasurementMethod.AMDSMI_POWER
            if self.power_source is None:
                self.failure = f"amdsmi reports neither energy nor power for this GPU ({why_not})"
        self._reset_state()

    # -- amdsmi reads --------------------------------------------------------------------------

    def _choose_power_field(self) -> None:
        try:
            info = self._amdsmi.amdsmi_get_power_info(self._handle)
        except self._amdsmi.AmdSmiException as error:
            logger.debug("%s: no power info (%s)", self.name, error)
            return
        for key, source in POWER_FIELDS:
            if _number(info.get(key)) is not None:
                self._power_key, self.power_source = key, source
                return

    def _read_power_w(self) -> float | None:
        """Socket power, W; None when it cannot be read."""
        if self._power_key is None:
            return None
        try:
            info = self._amdsmi.amdsmi_get_power_info(self._handle)
        except self._amdsmi.AmdSmiException:
            return None
        return _number(info.get(self._power_key))

    def _read_instant_power_w(self) -> float | None:
        return self._read_power_w()

    def _read_counter(self) -> tuple[float, float, float]:
        """(read start s, read end s, counter J), wraparound undone. Raises AmdSmiException."""
        t_a = self._clock()
        reading = self._amdsmi.amdsmi_get_energy_count(self._handle)
        t_b = self._clock()
        self._last_read_s = t_b - t_a
        count = reading.get("energy_accumulator", reading.get("power"))
        resolution_uj = _number(reading.get("counter_resolution"))
        if not isinstance(count, int) or not resolution_uj:
            raise self._amdsmi.AmdSmiException(f"unexpected energy count {reading!r}")
        self.counter_resolution_uj = resolution_uj
        with self._lock:
            last = self._last_count
            if last is not None and count < last:
                if last - count > self._wrap_modulus // 2:
                    self._wraps += 1  # wrapped past 2**bits
                else:
                    count = last  # went backwards (amdsmi issue #115): keep the last value
            self._watch_step((t_a + t_b) / 2, changed=last is not None and count != last)
            self._last_count = count
            total = count + self._wraps * self._wrap_modulus
        return t_a, t_b, total * resolution_uj / 1e6

    def _watch_step(self, mid_s: float, *, changed: bool) -> None:
        """Learn whether the counter steps finer than the phase model fits (lock held)."""
        previous, self._last_read_mid = self._last_read_mid, mid_s
        if not changed or previous is None or mid_s - previous > FINE_STEP_LIMIT_S:
            return
        step_s = (previous + mid_s) / 2  # a step bracketed by two close reads
        if self._last_step_s is not None and 0 < step_s - self._last_step_s < FINE_STEP_LIMIT_S:
            gap = step_s - self._last_step_s
            self.fine_step_s = gap if self.fine_step_s is None else min(self.fine_step_s, gap)
        self._last_step_s = step_s

    def _fail(self, why: str) -> None:
        # the shared degraded paths word their reasons for NVML
        super()._fail(why.replace("NVML", "amdsmi"))

    # -- edges on a fine counter ---------------------------------------------------------------

    def _estimate_at(self, read: tuple[float, float, float], t: float, power_w: float) -> float:
        """As :class:`NvmlGpu`'s, but a read of a fine counter is placed half a step back."""
        if self.fine_step_s is None:
            return super()._estimate_at(read, t, power_w)
        self._blend = None
        step_s = (read[0] + read[1]) / 2 - self.fine_step_s / 2
        return self._placed(read, step_s, t, power_w)

    def _resolve_origin(self, force: bool = False) -> None:
        """As :class:`NvmlGpu`'s; a provisional origin is placed again once a fine counter is
        known (the phase model never locks on it)."""
        if self.fine_step_s is not None and self._origin_provisional and self._origin_read:
            self._origin_j = self._estimate_at(
                self._origin_read, self._start_s, self._start_power_w
            )
            self._origin_provisional = False
            return
        super()._resolve_origin(force)

    # -- uncertainty ---------------------------------------------------------------------------

    #: the sensor's accuracy as a fraction of energy (95 % half-width) and its source
    sensor_accuracy_fraction = AMDSMI_SENSOR_ACCURACY
    sensor_accuracy_source = AMDSMI_SENSOR_SOURCE

    def edge_uncertainty_j(self, now_s: float) -> float:
        """The 95 % half-width of the placement error of the ``energy_j(now_s)`` just returned,
        J; never raises.

        - counter: the read is stale by a uniform [0, step) and placed half a step back, so
          ``0.95 x power x step / 2`` (the measured fine step, else the phase model's period,
          else the nominal 100 ms), plus the read's own duration times the power;
        - power integrated: a change of power between two samples is missed for up to one
          interval, and the window's changes do not all cancel: ``(highest - lowest power over
          the last POWER_LOOKBACK_S) x the sample interval``, plus 2 % of one interval's energy;
        each with a floor of ``EDGE_FLOOR_J``.
        """
        try:
            with self._lock:
                power_w = max(0.0, self._power_w)
                interval_s = self.sample_interval_s or GPU_SAMPLE_INTERVAL_S
                if not self.has_energy_counter or self._counter_failed_at is not None:
                    lo, hi = self._recent_power_range_w(now_s - POWER_LOOKBACK_S)
                    return math.hypot((hi - lo) * interval_s, 0.02 * hi * interval_s, EDGE_FLOOR_J)
                step_s = self.fine_step_s or self._phase.period_s or NOMINAL_COUNTER_PERIOD_S
                read_s = self._last_read_s
            return math.hypot(0.95 * power_w * step_s / 2, power_w * read_s, EDGE_FLOOR_J)
        except Exception as error:  # noqa: BLE001 - never raise at an edge
            logger.debug("%s: edge uncertainty: %s", self.name, error)
            return 0.0

    def method_term(self, start: EdgeReading, end: EdgeReading) -> UncertaintyTerm:
        """The window's method term: its two edges in quadrature, ``counter_edges`` while the
        amdsmi energy counter is read, else ``power_sampling``, each with its amdsmi source."""
        half_width = combine([start.edge_half_width_j, end.edge_half_width_j])
        if self.method is MeasurementMethod.AMDSMI_ENERGY and self._counter_failed_at is None:
            return UncertaintyTerm(
                "counter_edges",
                half_width,
                "edges placed within the amdsmi energy counter's step (docs/measurement.md, "
                "GPUs (amdsmi))",
            )
        return UncertaintyTerm(
            "power_sampling",
            half_width,
            f"amdsmi socket power integrated every {self.sample_interval_s} s "
            "(docs/measurement.md, Uncertainty)",
        )

    def _recent_power_range_w(self, since_s: float) -> tuple[float, float]:
        """(lowest, highest) mean power between the sampler's readings since ``since_s`` and
        the latest reading, W (lock held)."""
        lo = hi = self._power_w
        later: tuple[float, float] | None = None
        for when, integral in reversed(self._integral_history):
            if later is not None and later[0] > when:
                power = (later[1] - integral) / (later[0] - when)
                lo, hi = min(lo, power), max(hi, power)
            if when < since_s:
                break
            later = (when, integral)
        return lo, hi

    # -- reporting -----------------------------------------------------------------------------

    def utilization_percent(self) -> float | None:
        try:
            return _number(self._amdsmi.amdsmi_get_gpu_activity(self._handle).get("gfx_activity"))
        except (self._amdsmi.AmdSmiException, AttributeError):
            return None

    def describe(self) -> dict[str, object]:
        info = super().describe()
        info.update(
            backend="amdsmi",
            unique_id=self.unique_id,
            hip_index=self.cuda_index,
            counter_resolution_uj=self.counter_resolution_uj,
        )
        return info


def _asic(amdsmi: Any, handle: Any) -> tuple[str, str]:
    """(unique id in hex, model name with "AMD" in it) from the ASIC info; ("", "AMD GPU")."""
    try:
        asic = amdsmi.amdsmi_get_gpu_asic_info(handle)
    except amdsmi.AmdSmiException:
        return "", "AMD GPU"
    serial = str(asic.get("asic_serial") or "")
    name = str(asic.get("market_name") or "")
    if not name or name == "N/A":
        name = "GPU"
    if "amd" not in name.lower() and "radeon" not in name.lower():
        name = f"AMD {name}"  # BoAmps and the reports name the manufacturer from the model
    return ("" if serial == "N/A" else serial), name


def _ids(amdsmi: Any, handles: list[Any]) -> list[AmdDeviceIds]:
    ids = []
    for position, handle in enumerate(handles):
        uuid = str(amdsmi.amdsmi_get_gpu_device_uuid(handle))
        unique_id, _ = _asic(amdsmi, handle)
        rocr_index = position
        enumerate_info = getattr(amdsmi, "amdsmi_get_gpu_enumeration_info", None)
        if enumerate_info is not None:  # amdsmi >= 6.4: ROCr's (HSA's) own index
            try:
                hsa_id = _number(enumerate_info(handle).get("hsa_id"))
                rocr_index = position if hsa_id is None else int(hsa_id)
            except amdsmi.AmdSmiException:
                pass
        ids.append(AmdDeviceIds(uuid=uuid, unique_id=unique_id, rocr_index=rocr_index))
    return ids


def detect_amdsmi(
    *,
    amdsmi: Any = None,
    gpu_ids: str | int | Iterable[int | str] | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    drm_root: str = "/sys/class/drm",
) -> tuple[list[AmdSmiGpu], list[str]]:
    """One :class:`AmdSmiGpu` per selected AMD GPU; none (and a debug log saying why, from
    :func:`~codecarbon_callbacks_core.hardware.diagnose.open_amdsmi`) when amdsmi is unusable.

    Args:
        amdsmi: the ``amdsmi`` module or a fake with its names (default: import amdsmi where an
            AMD GPU is listed under ``drm_root``).
        gpu_ids: see :func:`~codecarbon_callbacks_core.hardware.amdsmi_select.select_amd_devices`.
        environ: where to read ROCR_/HIP_/CUDA_VISIBLE_DEVICES (default ``os.environ``).
        clock, sleep: the meter's clock and a sleep on it (tests pass virtual ones).
        drm_root: where DRM cards are listed (the cheap check before importing amdsmi).

    Returns:
        ``(gpus, notes)``; notes say what was refused or asked for but not found. Never raises
        for missing or refusing hardware.
    """
    import os

    env = dict(os.environ if environ is None else environ)
    module, finding = open_amdsmi(amdsmi, drm_root=drm_root)
    if module is None:
        if finding.fix:  # an AMD GPU is there: refused, or amdsmi missing (an optional extra)
            return [], [f"AMD GPUs not measured: {finding.reason}. Fix: {finding.fix}"]
        logger.debug("no AMD GPU measured: %s", finding.reason)
        return [], []
    try:
        handles = list(module.amdsmi_get_processor_handles())
        devices = _ids(module, handles)
    except module.AmdSmiException as error:
        return [], [f"AMD GPUs not measured: amdsmi cannot list them ({error})"]
    if not handles:
        logger.debug("amdsmi: no GPU")
        return [], []
    selection, notes = select_amd_devices(devices, gpu_ids=gpu_ids, environ=env)
    gpus: list[AmdSmiGpu] = []
    for position, hip_index in selection:
        try:
            gpu = AmdSmiGpu(
                module, handles[position], position, hip_index=hip_index, clock=clock, sleep=sleep
            )
        except module.AmdSmiException as error:
            notes.append(
                f"AMD GPU {position} ({devices[position].uuid}): amdsmi refused it ({error}): "
                "not measured"
            )
            continue
        gpus.append(gpu)
        if gpu.failure:
            notes.append(f"{gpu.name} ({gpu.model}): {gpu.failure}")
        elif not gpu.has_energy_counter:
            notes.append(
                f"{gpu.name} ({gpu.model}): no amdsmi energy counter; power integrated "
                f"({gpu.power_source} socket power)"
            )
    return gpus, notes

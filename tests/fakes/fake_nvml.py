"""A fake ``pynvml`` module that replays the H200 traces (tests/data) against an injectable clock.

Same function names, error classes and constants as nvidia-ml-py for what the package uses:
nvmlInit, nvmlShutdown, nvmlDeviceGetCount, nvmlDeviceGetHandleByIndex,
nvmlDeviceGetHandleByUUID, nvmlDeviceGetUUID, nvmlDeviceGetName, nvmlDeviceGetIndex,
nvmlDeviceGetMemoryInfo, nvmlDeviceGetTotalEnergyConsumption, nvmlDeviceGetPowerUsage,
nvmlDeviceGetFieldValues (field 186 NVML_FI_DEV_POWER_INSTANT, 83 total energy),
nvmlDeviceGetUtilizationRates; NVMLError and its subclasses (NVMLError(3) is an
NVMLError_NotSupported, as in pynvml).

Timing model (what the H200 traces show): the energy counter is a step function whose steps are
the changes seen in ``h200_energy_counter_trace.csv`` (a step is placed midway between the
midpoints of the two reads that saw it); a counter read samples the counter at the middle of the
read and advances a :class:`VirtualClock` by a read duration taken from the trace (2.4-3.6 ms,
cycled). Instant power (field 186) and ``nvmlDeviceGetPowerUsage`` are the values polled every
~2 ms in ``h200_power_trace.csv``, held. Outside the trace the last values are held and the
counter stops.

Use in-process::

    clock = VirtualClock()
    nvml = FakeNvml([FakeDevice.from_h200_trace(uuid="GPU-0")], clock=clock)
    gpus, notes = detect_nvml(nvml=nvml, clock=clock.now, sleep=clock.sleep)

Use in a subprocess (distributed tests, a fake GPU per rank): set
``CODECARBON_CALLBACKS_FAKE_NVML`` to a JSON spec and put ``tests/fakes/site`` first on
``PYTHONPATH``; its ``sitecustomize.py`` calls :func:`install_from_env`, which puts a FakeNvml
into ``sys.modules["pynvml"]`` (real clock: the trace plays from the moment of install; it
shadows any other ``sitecustomize`` in that subprocess). ``subprocess_env(spec)`` builds such an
environment. Spec::

    {"devices": [{"uuid": "GPU-r0", "name": "NVIDIA H200", "trace": "h200"},
                 {"uuid": "GPU-r1", "power_w": 300.0, "energy_counter": false}]}

Per device: ``uuid``, ``name``, ``memory_total_bytes``, ``trace`` ("h200" or absent),
``power_w`` (constant power when there is no trace), ``energy_counter`` (default true),
``instant_field`` (default true), ``fail_after_s`` (every call fails with NVMLError_GpuIsLost
from then on), ``counter_fail_after_s`` (only the counter fails), ``time_offset_s`` (where in
the trace to start).
"""

from __future__ import annotations

import bisect
import csv
import itertools
import json
import os
import sys
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
ENV_VAR = "CODECARBON_CALLBACKS_FAKE_NVML"

# -- constants and errors, with pynvml's names and values ----------------------------------------

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999
NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION = 83
NVML_FI_DEV_POWER_AVERAGE = 185
NVML_FI_DEV_POWER_INSTANT = 186
NVML_VALUE_TYPE_DOUBLE = 0
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_VALUE_TYPE_UNSIGNED_LONG = 2
NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3


class NVMLError(Exception):
    """As pynvml: ``NVMLError(code)`` returns the subclass for that code."""

    _valClassMapping: ClassVar[dict[int, type]] = {}

    def __new__(cls, value: int = NVML_ERROR_UNKNOWN):  # type: ignore[no-untyped-def]
        target = NVMLError._valClassMapping.get(value, cls) if cls is NVMLError else cls
        obj = Exception.__new__(target)
        obj.value = value
        return obj

    def __init__(self, value: int = NVML_ERROR_UNKNOWN) -> None:
        super().__init__(value)
        self.value = value

    def __str__(self) -> str:
        return {
            NVML_ERROR_UNINITIALIZED: "Uninitialized",
            NVML_ERROR_NOT_SUPPORTED: "Not Supported",
            NVML_ERROR_GPU_IS_LOST: "GPU is lost",
            NVML_ERROR_NOT_FOUND: "Not Found",
            NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
        }.get(self.value, "Unknown Error")


def _error_class(name: str, code: int) -> type:
    def __init__(self: NVMLError, *args: Any) -> None:
        Exception.__init__(self, code)
        self.value = code

    def __new__(cls: type, *args: Any) -> Any:
        return Exception.__new__(cls)

    cls = type(name, (NVMLError,), {"__new__": __new__, "__init__": __init__})
    NVMLError._valClassMapping[code] = cls
    return cls


NVMLError_Uninitialized = _error_class("NVMLError_Uninitialized", NVML_ERROR_UNINITIALIZED)
NVMLError_NotSupported = _error_class("NVMLError_NotSupported", NVML_ERROR_NOT_SUPPORTED)
NVMLError_NoPermission = _error_class("NVMLError_NoPermission", NVML_ERROR_NO_PERMISSION)
NVMLError_NotFound = _error_class("NVMLError_NotFound", NVML_ERROR_NOT_FOUND)
NVMLError_LibraryNotFound = _error_class("NVMLError_LibraryNotFound", NVML_ERROR_LIBRARY_NOT_FOUND)
NVMLError_GpuIsLost = _error_class("NVMLError_GpuIsLost", NVML_ERROR_GPU_IS_LOST)
NVMLError_Unknown = _error_class("NVMLError_Unknown", NVML_ERROR_UNKNOWN)


# -- clocks ----------------------------------------------------------------------------------------


class VirtualClock:
    """A deterministic clock: ``now()`` moves only by ``advance()``/``sleep()``."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now = start_s
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)

    sleep = advance

    def set(self, now_s: float) -> None:
        """Move forward to ``now_s`` (never back)."""
        with self._lock:
            self._now = max(self._now, now_s)

    def jump(self, now_s: float) -> None:
        """Go to ``now_s``, back if need be: replays interleave a sampler thread, whose reads
        advance the clock, with edges on the training thread, which do not wait for them."""
        with self._lock:
            self._now = now_s


class RealClock:
    """time.monotonic, with reads that really take their time (sleep)."""

    def __init__(self) -> None:
        self.origin_s = time.monotonic()

    @staticmethod
    def now() -> float:
        return time.monotonic()

    @staticmethod
    def advance(seconds: float) -> None:
        time.sleep(seconds)

    sleep = advance


# -- the H200 traces -------------------------------------------------------------------------------


@dataclass
class H200Trace:
    """The recorded trace as step functions (times in trace seconds)."""

    power_t: list[float]
    power_instant_mw: list[int]
    power_usage_mw: list[int]
    step_t: list[float]  # counter step times
    step_mj: list[int]  # counter value from that step on
    read_durations_s: list[float]
    phases: list[tuple[float, str]]

    @classmethod
    def load(cls, data_dir: Path = DATA_DIR) -> H200Trace:
        power_t, inst, usage = [], [], []
        with open(data_dir / "h200_power_trace.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                power_t.append(float(row["t_s"]))
                inst.append(int(row["power_instant_mw"]))
                usage.append(int(row["power_usage_mw"]))
        reads = []
        with open(data_dir / "h200_energy_counter_trace.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                reads.append(
                    (
                        float(row["t_read_start_s"]),
                        float(row["t_read_end_s"]),
                        int(row["total_energy_mj"]),
                    )
                )
        step_t = [(reads[0][0] + reads[0][1]) / 2 - 0.05]
        step_mj = [reads[0][2]]
        for previous, current in itertools.pairwise(reads):
            if current[2] != previous[2]:
                mid_prev = (previous[0] + previous[1]) / 2
                mid_cur = (current[0] + current[1]) / 2
                step_t.append((mid_prev + mid_cur) / 2)
                step_mj.append(current[2])
        durations = [end - start for start, end, _ in reads]
        phases = []
        with open(data_dir / "h200_trace_phases.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                phases.append((float(row["t_s"]), row["phase_starting"]))
        return cls(power_t, inst, usage, step_t, step_mj, durations, phases)

    @property
    def duration_s(self) -> float:
        return self.power_t[-1]

    def _held(self, times: list[float], values: list[int], t: float) -> int:
        i = bisect.bisect_right(times, t) - 1
        return values[max(0, i)]

    def instant_mw(self, t: float) -> int:
        return self._held(self.power_t, self.power_instant_mw, t)

    def usage_mw(self, t: float) -> int:
        return self._held(self.power_t, self.power_usage_mw, t)

    def counter_mj(self, t: float) -> int:
        return self._held(self.step_t, self.step_mj, t)

    def true_energy_mj(self, t: float) -> float:
        """The reference: the counter interpolated linearly between its steps."""
        i = bisect.bisect_right(self.step_t, t) - 1
        if i < 0:
            return float(self.step_mj[0])
        if i + 1 >= len(self.step_t):
            return float(self.step_mj[-1])
        t0, t1 = self.step_t[i], self.step_t[i + 1]
        e0, e1 = self.step_mj[i], self.step_mj[i + 1]
        return e0 + (e1 - e0) * (t - t0) / (t1 - t0)

    def phase_starts(self, name: str, lo: float = 0.0, hi: float = 1e9) -> list[float]:
        return [t for t, phase in self.phases if phase == name and lo <= t <= hi]


_TRACE: H200Trace | None = None


def h200_trace() -> H200Trace:
    global _TRACE
    if _TRACE is None:
        _TRACE = H200Trace.load()
    return _TRACE


# -- devices ---------------------------------------------------------------------------------------


@dataclass
class FakeDevice:
    """One fake GPU. Times are the fake's clock; ``time_offset_s`` maps it onto the trace."""

    uuid: str
    name: str | bytes = "NVIDIA H200"
    memory_total_bytes: int = 150_754_820_096
    trace: H200Trace | None = None
    power_w: float = 300.0
    energy_counter: bool = True
    instant_field: bool = True
    fail_after_s: float | None = None
    counter_fail_after_s: float | None = None
    time_offset_s: float = 0.0
    counter_base_mj: int = 5_000_000
    utilization_gpu: int = 87
    _read_index: int = field(default=0, repr=False)

    @classmethod
    def from_h200_trace(
        cls, uuid: str = "GPU-00000000-0000-0000-0000-000000000000", **kwargs: Any
    ) -> FakeDevice:
        return cls(uuid=uuid, trace=h200_trace(), **kwargs)

    def trace_time(self, now_s: float) -> float:
        return now_s - self.time_offset_s

    def check(self, now_s: float) -> None:
        if self.fail_after_s is not None and self.trace_time(now_s) >= self.fail_after_s:
            raise NVMLError(NVML_ERROR_GPU_IS_LOST)

    def instant_mw(self, now_s: float) -> int:
        if self.trace is not None:
            return self.trace.instant_mw(self.trace_time(now_s))
        return int(self.power_w * 1000)

    def usage_mw(self, now_s: float) -> int:
        if self.trace is not None:
            return self.trace.usage_mw(self.trace_time(now_s))
        return int(self.power_w * 1000)

    def counter_mj(self, now_s: float) -> int:
        t = self.trace_time(now_s)
        if self.trace is not None:
            return self.trace.counter_mj(t)
        # a constant power on a 100-ms step clock
        steps = int(max(0.0, t) // 0.1)
        return self.counter_base_mj + int(self.power_w * 100 * steps)

    def next_read_duration_s(self) -> float:
        if self.trace is None:
            return 0.003
        durations = self.trace.read_durations_s
        value = durations[self._read_index % len(durations)]
        self._read_index += 1
        return value


class _FieldValue:
    class _Value:
        def __init__(self) -> None:
            self.dVal = 0.0
            self.uiVal = 0
            self.ulVal = 0
            self.ullVal = 0
            self.sllVal = 0
            self.siVal = 0

    def __init__(self, field_id: int) -> None:
        self.fieldId = field_id
        self.scopeId = 0
        self.timestamp = 0
        self.latencyUsec = 0
        self.valueType = NVML_VALUE_TYPE_UNSIGNED_INT
        self.nvmlReturn = NVML_SUCCESS
        self.value = self._Value()


class _Memory:
    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self.used = 0


class _Utilization:
    def __init__(self, gpu: int) -> None:
        self.gpu = gpu
        self.memory = 0


class FakeNvml(types.ModuleType):
    """The fake module: pass it as ``nvml=`` or install it as ``sys.modules['pynvml']``.

    Args:
        devices: the GPUs, by NVML index.
        clock: a VirtualClock (deterministic) or RealClock.
        init_error: an NVML error code nvmlInit raises (a machine without a driver).
        uuid_as_bytes: return UUIDs and names as bytes (old pynvml versions did).
    """

    def __init__(
        self,
        devices: list[FakeDevice],
        *,
        clock: VirtualClock | RealClock | None = None,
        init_error: int | None = None,
        uuid_as_bytes: bool = False,
    ) -> None:
        super().__init__("pynvml")
        self.devices = devices
        self.clock = clock or VirtualClock()
        self.init_error = init_error
        self.uuid_as_bytes = uuid_as_bytes
        self.initialized = False
        self.calls: dict[str, int] = {}
        self.__file__ = __file__
        for name, value in globals().items():
            if name.startswith(("NVML_", "NVMLError")):
                setattr(self, name, value)

    # -- helpers -------------------------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def _device(self, handle: Any) -> FakeDevice:
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if not isinstance(handle, FakeDevice):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        handle.check(self.clock.now())
        return handle

    def _text(self, value: str | bytes) -> str | bytes:
        if self.uuid_as_bytes and isinstance(value, str):
            return value.encode()
        return value

    # -- the pynvml API ------------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self._count("nvmlInit")
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialized = True

    def nvmlInitWithFlags(self, flags: int = 0) -> None:
        self.nvmlInit()

    def nvmlShutdown(self) -> None:
        self.initialized = False

    def nvmlDeviceGetCount(self) -> int:
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeDevice:
        if not self.initialized:
            raise NVMLError(NVML_ERROR_UNINITIALIZED)
        if not 0 <= index < len(self.devices):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return self.devices[index]

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> FakeDevice:
        wanted = uuid.decode() if isinstance(uuid, bytes) else uuid
        for device in self.devices:
            if device.uuid == wanted:
                return device
        raise NVMLError(NVML_ERROR_NOT_FOUND)

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        return self.devices.index(self._device(handle))

    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes:
        return self._text(self._device(handle).uuid)

    def nvmlDeviceGetName(self, handle: Any) -> str | bytes:
        return self._text(self._device(handle).name)

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: Any = None) -> _Memory:
        return _Memory(self._device(handle).memory_total_bytes)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> _Utilization:
        return _Utilization(self._device(handle).utilization_gpu)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        self._count("nvmlDeviceGetPowerUsage")
        device = self._device(handle)
        return device.usage_mw(self.clock.now())

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        self._count("nvmlDeviceGetTotalEnergyConsumption")
        device = self._device(handle)
        if not device.energy_counter:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        start = self.clock.now()
        if (
            device.counter_fail_after_s is not None
            and device.trace_time(start) >= device.counter_fail_after_s
        ):
            raise NVMLError(NVML_ERROR_UNKNOWN)
        duration = device.next_read_duration_s()
        value = device.counter_mj(start + duration / 2)
        self.clock.advance(duration)
        return value

    def nvmlDeviceGetFieldValues(self, handle: Any, field_ids: list[Any]) -> list[_FieldValue]:
        self._count("nvmlDeviceGetFieldValues")
        device = self._device(handle)
        now = self.clock.now()
        values = []
        for field_id in field_ids:
            if isinstance(field_id, tuple):
                field_id = field_id[0]
            value = _FieldValue(field_id)
            value.timestamp = int(now * 1e6)
            if field_id == NVML_FI_DEV_POWER_INSTANT and device.instant_field:
                value.value.uiVal = device.instant_mw(now)
            elif field_id == NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION and device.energy_counter:
                value.valueType = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                value.value.ullVal = device.counter_mj(now)
            else:
                value.nvmlReturn = NVML_ERROR_NOT_SUPPORTED
            values.append(value)
        return values


# -- subprocess installation ---------------------------------------------------------------------


def from_spec(spec: dict[str, Any], clock: VirtualClock | RealClock | None = None) -> FakeNvml:
    """Build a FakeNvml from a JSON-able spec (see the module docstring)."""
    clock = clock or RealClock()
    origin = clock.now()
    devices = []
    for item in spec.get("devices", []):
        item = dict(item)
        trace = h200_trace() if item.pop("trace", None) == "h200" else None
        offset = float(item.pop("time_offset_s", 0.0))
        devices.append(FakeDevice(trace=trace, time_offset_s=origin - offset, **item))
    return FakeNvml(devices, clock=clock, init_error=spec.get("init_error"))


def install(fake: FakeNvml) -> FakeNvml:
    """Make ``import pynvml`` return ``fake`` in this process."""
    sys.modules["pynvml"] = fake
    return fake


def install_from_env(environ: dict[str, str] | None = None) -> FakeNvml | None:
    """Install the fake described by CODECARBON_CALLBACKS_FAKE_NVML, if set."""
    env = os.environ if environ is None else environ
    raw = env.get(ENV_VAR)
    if not raw:
        return None
    return install(from_spec(json.loads(raw)))


def subprocess_env(spec: dict[str, Any], base: dict[str, str] | None = None) -> dict[str, str]:
    """An environment for a subprocess whose ``import pynvml`` gets the fake of ``spec``."""
    env = dict(os.environ if base is None else base)
    site = str(Path(__file__).resolve().parent / "site")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH", "")) if p)
    env[ENV_VAR] = json.dumps(spec)
    return env


Clock = Callable[[], float]

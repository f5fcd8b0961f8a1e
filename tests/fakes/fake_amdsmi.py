"""A fake ``amdsmi`` module (ROCm's Python interface) against an injectable clock.

Built from amdsmi's documented Python API (ROCm documentation, "AMD SMI Python API reference",
https://rocm.docs.amd.com/projects/amdsmi/en/latest/reference/amdsmi-py-api.html, and the
``amdsmi`` 6.1.0 and 7.0.2 wheels' ``amdsmi_interface.py`` / ``amdsmi_exception.py``), for the
names the package uses:

- ``amdsmi_init(flag=AmdSmiInitFlags.INIT_AMD_GPUS)``, ``amdsmi_shut_down()``;
- ``amdsmi_get_processor_handles()`` -> a list of handles;
- ``amdsmi_get_gpu_device_uuid(h)`` -> str; ``amdsmi_get_gpu_asic_info(h)`` -> dict with
  ``market_name``, ``asic_serial`` (hex), ...; ``amdsmi_get_gpu_vram_info(h)`` -> dict with
  ``vram_size`` (MB); ``amdsmi_get_gpu_enumeration_info(h)`` (6.4 and later) -> dict with
  ``hsa_id``, ``hip_id``, ``hip_uuid``, ``drm_card``, ``drm_render``;
- ``amdsmi_get_energy_count(h)`` -> ``{"energy_accumulator": int, "counter_resolution": float
  (uJ per count), "timestamp": int (ns)}``; 6.1-6.2 name the accumulator ``"power"``
  (``api="6.1"``); the accumulator is a uint64_t and wraps (``counter_bits`` makes it narrower
  to test that); it steps every ``counter_step_s`` (the driver caches metrics for 1 ms: ROCm
  issue 1649); "not supported on virtual machine guest" (the documentation): ``energy_counter=
  False`` raises AMDSMI_STATUS_NOT_SUPPORTED;
- ``amdsmi_get_power_info(h)`` -> dict: ``current_socket_power`` (W, MI300+),
  ``average_socket_power`` (W, MI200 and earlier), ``gfx_voltage``/``soc_voltage``/
  ``mem_voltage`` (mV), ``power_limit`` (W); unsupported fields are ``"N/A"``;
- ``amdsmi_get_gpu_activity(h)`` -> ``{"gfx_activity", "umc_activity", "mm_activity"}`` (%);
- errors: ``AmdSmiException`` > ``AmdSmiLibraryException(err_code)`` (``get_error_code()``;
  ``str`` gives the status name), with the status codes of ``amdsmi_wrapper``
  (AMDSMI_STATUS_NOT_SUPPORTED 2, AMDSMI_STATUS_NO_PERM 10, AMDSMI_STATUS_INIT_ERROR 18,
  AMDSMI_STATUS_NOT_FOUND 31, AMDSMI_STATUS_DRIVER_NOT_LOADED 34).

Failures a device can simulate: ``lost_after_s`` (every call about it fails with
AMDSMI_STATUS_NOT_FOUND from then on, as a GPU that fell off the bus), ``energy_refused``
(the counter raises AMDSMI_STATUS_NO_PERM), and the module's ``init_error`` (amdsmi_init fails
with that status).
"""

from __future__ import annotations

import enum
import math
import threading
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fakes.fake_nvml import VirtualClock

AMDSMI_STATUS_SUCCESS = 0
AMDSMI_STATUS_NOT_SUPPORTED = 2
AMDSMI_STATUS_NO_PERM = 10
AMDSMI_STATUS_INIT_ERROR = 18
AMDSMI_STATUS_NOT_FOUND = 31
AMDSMI_STATUS_NOT_INIT = 32
AMDSMI_STATUS_DRIVER_NOT_LOADED = 34

_STATUS_TEXT = {
    AMDSMI_STATUS_NOT_SUPPORTED: "AMDSMI_STATUS_NOT_SUPPORTED - Feature not supported",
    AMDSMI_STATUS_NO_PERM: "AMDSMI_STATUS_NO_PERM - Permission Denied",
    AMDSMI_STATUS_INIT_ERROR: "AMDSMI_STATUS_INIT_ERROR - Initialization error",
    AMDSMI_STATUS_NOT_FOUND: "AMDSMI_STATUS_NOT_FOUND - Device Not found",
    AMDSMI_STATUS_NOT_INIT: "AMDSMI_STATUS_NOT_INIT - Device not initialized",
    AMDSMI_STATUS_DRIVER_NOT_LOADED: "AMDSMI_STATUS_DRIVER_NOT_LOADED - Driver not loaded",
}


class AmdSmiException(Exception):
    """amdsmi's root exception."""


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int) -> None:
        super().__init__(err_code)
        self.err_code = err_code
        self.err_info = _STATUS_TEXT.get(err_code, "AMDSMI_STATUS_UNKNOWN_ERROR")

    def __str__(self) -> str:
        return f"Error code:\n\t{self.err_code} | {self.err_info}"

    def get_error_code(self) -> int:
        return self.err_code


class AmdSmiInitFlags(enum.IntEnum):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1 << 0
    INIT_AMD_GPUS = 1 << 1


@dataclass
class FakeAmdGpu:
    """One AMD GPU: constant (or ``power_at(t)``) power, an accumulator stepping every
    ``counter_step_s`` by the energy of that step in ``resolution_uj`` counts."""

    uuid: str
    unique_id: str = "0x1234567890abcdef"
    market_name: str = "AMD Instinct MI300X"
    power_w: float = 500.0
    power_at: Callable[[float], float] | None = None
    counter_step_s: float = 0.001
    resolution_uj: float = 15.259
    counter_start: int = 1_000_000
    counter_bits: int = 64
    energy_counter: bool = True
    current_power: bool = True  # MI300+: current_socket_power; else average_socket_power only
    energy_refused: bool = False
    lost_after_s: float | None = None
    vram_mb: int = 196_592
    hsa_id: int | None = None
    reads: int = field(default=0)

    def power(self, t: float) -> float:
        return self.power_at(t) if self.power_at is not None else self.power_w

    def energy_j(self, t: float) -> float:
        """The true energy from 0 to ``t`` (constant power: exact; else a fine sum)."""
        if self.power_at is None:
            return self.power_w * max(0.0, t)
        n = max(1, int(t / 0.0005))
        dt = t / n
        return sum(self.power_at((i + 0.5) * dt) for i in range(n)) * dt

    def count_at(self, t: float) -> int:
        step_t = math.floor(t / self.counter_step_s) * self.counter_step_s
        counts = self.counter_start + int(self.energy_j(step_t) * 1e6 / self.resolution_uj)
        return counts % (2**self.counter_bits)


class FakeAmdsmi(types.ModuleType):
    """The ``amdsmi`` module over fake GPUs; every read advances ``clock`` by ``read_s``."""

    AmdSmiException = AmdSmiException
    AmdSmiLibraryException = AmdSmiLibraryException
    AmdSmiInitFlags = AmdSmiInitFlags

    def __init__(
        self,
        gpus: list[FakeAmdGpu],
        *,
        clock: VirtualClock | None = None,
        read_s: float = 0.0002,
        api: str = "7.0",
        init_error: int | None = None,
    ) -> None:
        super().__init__("amdsmi")
        self.gpus = gpus
        self.clock = clock or VirtualClock()
        self.read_s = read_s
        self.api = api
        self.init_error = init_error
        self.initialised = 0
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()
        if api < "6.4":
            self.amdsmi_get_gpu_enumeration_info = None  # type: ignore[assignment]

    def _count(self, name: str) -> None:
        with self._lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    def _gpu(self, handle: Any) -> FakeAmdGpu:
        if self.initialised <= 0:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_INIT)
        if not isinstance(handle, FakeAmdGpu) or handle not in self.gpus:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_FOUND)
        if handle.lost_after_s is not None and self.clock.now() >= handle.lost_after_s:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_FOUND)
        return handle

    def amdsmi_init(self, flag: int = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
        self._count("amdsmi_init")
        if self.init_error is not None:
            raise AmdSmiLibraryException(self.init_error)
        self.initialised += 1

    def amdsmi_shut_down(self) -> None:
        self.initialised = max(0, self.initialised - 1)

    def amdsmi_get_processor_handles(self) -> list[FakeAmdGpu]:
        if self.initialised <= 0:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_INIT)
        return list(self.gpus)

    def amdsmi_get_gpu_device_uuid(self, handle: Any) -> str:
        return self._gpu(handle).uuid

    def amdsmi_get_gpu_asic_info(self, handle: Any) -> dict[str, Any]:
        gpu = self._gpu(handle)
        return {
            "market_name": gpu.market_name,
            "vendor_id": "0x1002",
            "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
            "device_id": "0x74a1",
            "asic_serial": gpu.unique_id,
            "num_compute_units": 304,
            "target_graphics_version": "gfx942",
        }

    def amdsmi_get_gpu_vram_info(self, handle: Any) -> dict[str, Any]:
        return {"vram_type": 11, "vram_size": self._gpu(handle).vram_mb, "vram_bit_width": 8192}

    def amdsmi_get_gpu_enumeration_info(self, handle: Any) -> dict[str, Any]:
        gpu = self._gpu(handle)
        index = self.gpus.index(gpu)
        return {
            "drm_render": 128 + index,
            "drm_card": index,
            "hsa_id": index if gpu.hsa_id is None else gpu.hsa_id,
            "hip_id": index,
            "hip_uuid": "GPU-" + gpu.unique_id.removeprefix("0x"),
        }

    def amdsmi_get_energy_count(self, handle: Any) -> dict[str, Any]:
        self._count("amdsmi_get_energy_count")
        gpu = self._gpu(handle)
        if gpu.energy_refused:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NO_PERM)
        if not gpu.energy_counter:
            raise AmdSmiLibraryException(AMDSMI_STATUS_NOT_SUPPORTED)
        t = self.clock.now() + self.read_s / 2
        self.clock.advance(self.read_s)
        gpu.reads += 1
        key = "power" if self.api < "6.3" else "energy_accumulator"
        return {
            key: gpu.count_at(t),
            "counter_resolution": gpu.resolution_uj,
            "timestamp": int(t * 1e9),
        }

    def amdsmi_get_power_info(self, handle: Any) -> dict[str, Any]:
        gpu = self._gpu(handle)
        watts = int(round(gpu.power(self.clock.now())))
        return {
            "socket_power": watts if self.api >= "7.0" and gpu.current_power else "N/A",
            "current_socket_power": watts if gpu.current_power else "N/A",
            "average_socket_power": "N/A" if gpu.current_power else watts,
            "gfx_voltage": 800,
            "soc_voltage": 900,
            "mem_voltage": 1100,
            "power_limit": 750,
        }

    def amdsmi_get_gpu_activity(self, handle: Any) -> dict[str, Any]:
        self._gpu(handle)
        return {"gfx_activity": 97, "umc_activity": 40, "mm_activity": "N/A"}

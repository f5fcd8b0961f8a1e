"""What hardware can be measured here, and for what is missing: why, and how to fix it.

:func:`diagnose` probes each backend the way detection opens it (the same paths, the same
calls) and returns one :class:`Finding` per backend. Detection uses the same probes:
:func:`open_nvml` is how ``detect_nvml`` gets an initialised NVML, and :func:`rapl_finding`
turns the RAPL backend's :class:`~codecarbon_callbacks_core.errors.HardwareError` into the
reason and fix that ``detect_cpu`` reports. A tool (the CLI's ``detect``) prints the findings
instead of probing on its own.

Example:
    >>> from codecarbon_callbacks_core.hardware.diagnose import diagnose
    >>> findings = diagnose(nvml=False)
    >>> [f.backend for f in findings][:1]
    ['rapl']
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from codecarbon_callbacks_core.errors import HardwareError

logger = logging.getLogger(__name__)

__all__ = [
    "Finding",
    "amd_gpu_present",
    "container_note",
    "diagnose",
    "diagnose_amdsmi",
    "diagnose_nvml",
    "diagnose_rapl",
    "in_container",
    "nvidia_driver_present",
    "open_amdsmi",
    "open_nvml",
    "rapl_finding",
]

#: the paths whose presence means an NVIDIA driver (Linux), or WSL's NVML library
NVIDIA_DRIVER_PATHS = (
    "/proc/driver/nvidia",
    "/dev/nvidiactl",
    "/usr/lib/wsl/lib/libnvidia-ml.so.1",
)
#: files that container runtimes create (Docker, Podman)
CONTAINER_MARKERS = ("/.dockerenv", "/run/.containerenv")
#: the PCI vendor id of AMD, as /sys/class/drm/card*/device/vendor holds it
AMD_PCI_VENDOR = "0x1002"

State = Literal["ok", "absent", "refused", "unsupported"]


@dataclass(frozen=True)
class Finding:
    """One backend's state on this machine.

    Attributes:
        part: "cpu" or "gpu".
        backend: "rapl", "nvml" or "amdsmi".
        state: "ok" (measured with it), "absent" (not on this machine, or not installed),
            "refused" (present, but this process may not use it) or "unsupported" (present,
            never measured by this package on this platform).
        reason: one sentence: what was found, or what is missing and why.
        fix: what the user can do, or None when nothing helps.
    """

    part: str
    backend: str
    state: State
    reason: str
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.state == "ok"


# -- NVML ------------------------------------------------------------------------------------


def nvidia_driver_present() -> bool:
    """Cheap check (microseconds) before importing pynvml (~10 ms) on machines without GPUs.

    True off Linux (we cannot tell cheaply), and on Linux when the driver's /proc entry, its
    device node or WSL's NVML library exists (:data:`NVIDIA_DRIVER_PATHS`).
    """
    if not sys.platform.startswith("linux"):
        return True
    return any(os.path.exists(path) for path in NVIDIA_DRIVER_PATHS)


def _import_nvml() -> Any:
    import pynvml  # nvidia-ml-py

    return pynvml


def open_nvml(nvml: Any = None) -> tuple[Any | None, Finding]:
    """An initialised NVML module, or None and why not.

    Args:
        nvml: the ``pynvml`` module or a fake with its names; None: an already imported
            ``pynvml`` (or a test's fake installed as it), else ``import pynvml`` when an
            NVIDIA driver is present.

    Returns:
        ``(module, finding)``: the module after ``nvmlInit()`` and an "ok" finding, or
        ``(None, finding)`` saying what is missing. Never raises.
    """
    if nvml is None:
        if "pynvml" not in sys.modules and not nvidia_driver_present():
            paths = ", ".join(NVIDIA_DRIVER_PATHS[:2])
            return None, Finding("gpu", "nvml", "absent", f"no NVIDIA driver ({paths} absent)")
        try:
            nvml = _import_nvml()
        except ImportError as error:
            return None, Finding(
                "gpu",
                "nvml",
                "absent",
                f"an NVIDIA driver is present but NVML's Python binding is not ({error})",
                "pip install nvidia-ml-py",
            )
    try:
        nvml.nvmlInit()
    except Exception as error:  # noqa: BLE001 - NVMLError, or no libnvidia-ml.so (a CPU machine)
        return None, Finding(
            "gpu",
            "nvml",
            "refused",
            f"nvmlInit failed: {error}",
            "check that the NVIDIA driver is loaded and that `nvidia-smi` works for this user",
        )
    return nvml, Finding("gpu", "nvml", "ok", "NVML initialised")


def diagnose_nvml(nvml: Any = None) -> Finding:
    """NVML's state: as :func:`open_nvml`, then how many GPUs it lists.

    Balances its ``nvmlInit()`` with ``nvmlShutdown()`` (pynvml counts them), so call it with
    a module of its own or after the GPUs measured with it are closed.
    """
    module, finding = open_nvml(nvml)
    if module is None:
        return finding
    try:
        count = int(module.nvmlDeviceGetCount())
    except Exception as error:  # noqa: BLE001 - NVMLError: a driver that lists nothing
        return Finding("gpu", "nvml", "refused", f"NVML cannot list devices: {error}")
    finally:
        try:
            module.nvmlShutdown()
        except Exception as error:  # noqa: BLE001 - best effort
            logger.debug("nvmlShutdown failed: %s", error)
    if count == 0:
        return Finding("gpu", "nvml", "absent", "NVML lists no GPU")
    return Finding("gpu", "nvml", "ok", f"NVML lists {count} GPU(s)")


def amd_gpu_present(drm_root: str | os.PathLike[str] = "/sys/class/drm") -> bool:
    """Whether a DRM card of AMD's PCI vendor is present (microseconds; before importing amdsmi)."""
    for vendor in Path(drm_root).glob("card*/device/vendor"):
        try:
            if vendor.read_text().strip().lower() == AMD_PCI_VENDOR:
                return True
        except OSError:
            continue
    return False


# -- amdsmi ----------------------------------------------------------------------------------

#: what lets a user open /dev/kfd and the render nodes, which amdsmi needs
AMDSMI_PERMISSION_FIX = (
    "add the user to the render and video groups (sudo usermod -aG render,video $USER), or in "
    "a container pass --device=/dev/kfd --device=/dev/dri --group-add video"
)
#: how to get amdsmi where an AMD GPU is present but amdsmi is not importable
AMDSMI_INSTALL_FIX = (
    'pip install "codecarbon-callbacks-core[amd]" with the amdsmi version of the installed ROCm '
    "(or add /opt/rocm/share/amd_smi to PYTHONPATH)"
)
#: amdsmi's AMDSMI_STATUS_NO_PERM
AMDSMI_STATUS_NO_PERM = 10


def _import_amdsmi() -> Any:
    """``import amdsmi``. Without ROCm's library the package prints to stdout and then fails
    with KeyError (6.x without ROCM_PATH, 7.x) rather than ImportError: its output is kept off
    the user's stdout and any failure is an ImportError."""
    import contextlib
    import io

    try:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            import amdsmi  # ROCm's Python interface (the extra "amd")
    except ImportError:
        raise
    except Exception as error:  # noqa: BLE001 - KeyError/OSError from loading libamd_smi.so
        said = " ".join(printed.getvalue().split())
        raise ImportError(f"{type(error).__name__}: {error} {said}".strip()) from error
    return amdsmi


def amdsmi_refused(error: BaseException) -> bool:
    """Whether an amdsmi error is a permission refusal (AMDSMI_STATUS_NO_PERM)."""
    code = getattr(error, "err_code", None)
    return code == AMDSMI_STATUS_NO_PERM or "permission" in str(error).lower()


def open_amdsmi(
    amdsmi: Any = None, *, drm_root: str | os.PathLike[str] = "/sys/class/drm"
) -> tuple[Any | None, Finding]:
    """An initialised amdsmi module (AMD GPUs only), or None and why not.

    Args:
        amdsmi: the ``amdsmi`` module or a fake with its names; None: an already imported
            ``amdsmi``, else ``import amdsmi`` when an AMD GPU is listed under ``drm_root``.
        drm_root: where DRM cards are listed.

    Returns:
        ``(module, finding)``: the module after ``amdsmi_init(INIT_AMD_GPUS)`` and an "ok"
        finding, or ``(None, finding)``: "absent" (no AMD GPU, no amdsmi) or "refused"
        (``amdsmi_init`` failed: a permission, a driver not loaded). Never raises.
    """
    if amdsmi is None:
        if "amdsmi" not in sys.modules and not amd_gpu_present(drm_root):
            return None, Finding(
                "gpu", "amdsmi", "absent", "no AMD GPU listed under " + str(drm_root)
            )
        try:
            amdsmi = _import_amdsmi()
        except ImportError as error:
            return None, Finding(
                "gpu",
                "amdsmi",
                "absent",
                "an AMD GPU is present but amdsmi (ROCm's Python interface) is not usable "
                f"({error})",
                AMDSMI_INSTALL_FIX,
            )
    try:
        flags = getattr(amdsmi, "AmdSmiInitFlags", None)
        if flags is not None:
            amdsmi.amdsmi_init(flags.INIT_AMD_GPUS)
        else:
            amdsmi.amdsmi_init()
    except Exception as error:  # noqa: BLE001 - AmdSmiException, or the library failing
        refused = amdsmi_refused(error)
        return None, Finding(
            "gpu",
            "amdsmi",
            "refused",
            f"amdsmi_init failed: {error}",
            AMDSMI_PERMISSION_FIX
            if refused
            else "check that the amdgpu driver is loaded and that `amd-smi` works for this user",
        )
    return amdsmi, Finding("gpu", "amdsmi", "ok", "amdsmi initialised")


def diagnose_amdsmi(
    amdsmi: Any = None, *, drm_root: str | os.PathLike[str] = "/sys/class/drm"
) -> Finding:
    """amdsmi's state: as :func:`open_amdsmi`, then how many AMD GPUs it lists and whether their
    energy counter reads (the method detection would use)."""
    module, finding = open_amdsmi(amdsmi, drm_root=drm_root)
    if module is None:
        return finding
    try:
        handles = list(module.amdsmi_get_processor_handles())
        if not handles:
            return Finding("gpu", "amdsmi", "absent", "amdsmi lists no AMD GPU")
        try:
            module.amdsmi_get_energy_count(handles[0])
            method = "amdsmi_energy"
        except Exception as error:  # noqa: BLE001 - AmdSmiException: power integrated instead
            method = f"amdsmi_power (energy counter: {error})"
        return Finding(
            "gpu", "amdsmi", "ok", f"amdsmi lists {len(handles)} AMD GPU(s); method {method}"
        )
    except Exception as error:  # noqa: BLE001 - AmdSmiException: a driver that lists nothing
        state: State = "refused"
        return Finding("gpu", "amdsmi", state, f"amdsmi cannot list devices: {error}")
    finally:
        try:
            module.amdsmi_shut_down()
        except Exception as error:  # noqa: BLE001 - best effort
            logger.debug("amdsmi_shut_down failed: %s", error)


# -- RAPL ------------------------------------------------------------------------------------


def in_container(markers: tuple[str, ...] = CONTAINER_MARKERS) -> bool:
    """Whether this process runs in a container (a runtime's marker file exists)."""
    return any(os.path.exists(marker) for marker in markers)


def rapl_finding(error: HardwareError, *, container: bool | None = None) -> Finding:
    """Why RAPL is not used, from the RAPL backend's error (``rapl.detect_rapl``).

    "refused" when the counters exist but this user may not read them (the reason is the
    backend's message, which says how to grant access); "absent" otherwise.
    """
    reason = str(error)
    if "permission denied" in reason:
        from codecarbon_callbacks_core.hardware.rapl import PERMISSION_HINT

        return Finding("cpu", "rapl", "refused", reason, PERMISSION_HINT)
    if in_container() if container is None else container:
        fix = "mount /sys/class/powercap from the host into the container, read-only"
    else:
        fix = (
            "virtual machines and some CPUs do not expose RAPL: set force_cpu_power=<W> to "
            "use a known figure"
        )
    return Finding("cpu", "rapl", "absent", reason, fix)


def diagnose_rapl(
    *,
    powercap_root: str | os.PathLike[str] = "/sys/class/powercap",
    opener: Any = None,
    platform: str | None = None,
    container: bool | None = None,
) -> Finding:
    """RAPL's state, found by opening the zones exactly as detection does.

    Args:
        powercap_root: the powercap sysfs folder.
        opener: the RAPL backend's file reader (tests pass a fake's, which can refuse).
        platform: ``sys.platform`` (tests pass another).
        container: whether this runs in a container (default: :func:`in_container`).
    """
    from codecarbon_callbacks_core.hardware import rapl

    if not (platform or sys.platform).startswith("linux"):
        return Finding(
            "cpu",
            "rapl",
            "unsupported",
            "RAPL is read through Linux's powercap only: CPU energy is estimated from TDP x load",
            "set force_cpu_power=<W> if you know better",
        )
    try:
        components, _ = rapl.detect_rapl(
            powercap_root=powercap_root, opener=opener or rapl.read_sysfs
        )
    except HardwareError as error:
        return rapl_finding(error, container=container)
    for component in components:
        component.close()
    return Finding("cpu", "rapl", "ok", f"{len(components)} RAPL zone(s) readable")


# -- cgroup limits ---------------------------------------------------------------------------


def container_note(
    tracking_mode: str = "machine", *, root: str | os.PathLike[str] = "/"
) -> str | None:
    """One sentence when this process runs under a cgroup CPU quota or memory limit: the limits
    and what ``tracking_mode`` then counts (machine mode: the whole node's CPU and RAM); None
    without limits. See :mod:`codecarbon_callbacks_core.container` (``root``: a fake tree in
    tests). Never raises."""
    from codecarbon_callbacks_core import container

    limits = container.container_limits(root)
    if limits is None:
        return None
    return (
        f"this process runs under {limits.describe_limits()} (cgroup v{limits.cgroup_version}): "
        f"{limits.counts(tracking_mode)}"
    )


# -- everything ------------------------------------------------------------------------------


def diagnose(
    *,
    powercap_root: str | os.PathLike[str] = "/sys/class/powercap",
    rapl_opener: Any = None,
    nvml: Any = None,
    drm_root: str | os.PathLike[str] = "/sys/class/drm",
    platform: str | None = None,
    container: bool | None = None,
    amdsmi: Any = None,
) -> list[Finding]:
    """One finding per backend: RAPL, NVML, and amdsmi when an AMD GPU is present.

    Args:
        powercap_root, rapl_opener, platform, container: see :func:`diagnose_rapl`.
        nvml: see :func:`open_nvml`; False skips GPUs.
        drm_root: where DRM cards are listed (for AMD GPUs).
        amdsmi: see :func:`open_amdsmi`; False skips AMD GPUs.

    Returns:
        Findings in the order CPU, GPU. Never raises; probes cost milliseconds (importing
        pynvml ~10 ms where a driver is present).
    """
    findings = [
        diagnose_rapl(
            powercap_root=powercap_root, opener=rapl_opener, platform=platform, container=container
        )
    ]
    if nvml is not False:
        findings.append(diagnose_nvml(nvml))
    if amdsmi is not False and (amdsmi is not None or amd_gpu_present(drm_root)):
        findings.append(diagnose_amdsmi(amdsmi, drm_root=drm_root))
    return findings

"""Which AMD GPUs a process sees: ``ROCR_VISIBLE_DEVICES``, then ``HIP_VISIBLE_DEVICES`` (or
``CUDA_VISIBLE_DEVICES``), as ROCm applies them, and ``gpu_ids`` matched by index or UUID.

ROCm filters devices in two layers (ROCm documentation, "GPU isolation techniques"):

1. the ROCr runtime applies ``ROCR_VISIBLE_DEVICES`` to every GPU agent: each entry is an index
   in ROCr's enumeration or a UUID ``GPU-<unique id in hex>``;
2. HIP applies ``HIP_VISIBLE_DEVICES`` (``CUDA_VISIBLE_DEVICES`` when it is unset; HIP reads it
   for CUDA compatibility) to what ROCr left: indexes count within that list.

In both, an entry that names no device ends the list (it and every entry after it are ignored),
as CUDA does. The HIP view gives the HIP ordinals (torch's ``cuda:N`` on ROCm). ROCr's
enumeration order is amdsmi's ``hsa_id`` where amdsmi reports it (amdsmi >= 6.4,
``amdsmi_get_gpu_enumeration_info``), else amdsmi's own order (the kernel's KFD topology, which
ROCr enumerates too).

UUIDs: amdsmi's (``amdsmi_get_gpu_device_uuid``), ROCr's ``GPU-<unique id>`` (the ASIC serial
``amdsmi_get_gpu_asic_info`` reports), and HIP's 16-byte UUID as torch prints it (the ASCII of
the unique id's 16 hex digits, e.g. ``38653265-...``) all match the same GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from codecarbon_callbacks_core.hardware.nvml_select import _parse_id_list

logger = logging.getLogger(__name__)

__all__ = ["AmdDeviceIds", "select_amd_devices", "uuid_keys"]


@dataclass(frozen=True)
class AmdDeviceIds:
    """The names one AMD GPU goes by.

    Attributes:
        uuid: amdsmi's UUID (``amdsmi_get_gpu_device_uuid``).
        unique_id: the ASIC serial in hex (ROCr's ``GPU-<unique id>``), or "" when unknown.
        rocr_index: the GPU's index in ROCr's enumeration.
    """

    uuid: str
    unique_id: str
    rocr_index: int


def _hex_key(text: str) -> str:
    key = text.strip().lower().removeprefix("gpu-").removeprefix("0x").replace("-", "")
    return key.lstrip("0") or "0"


def uuid_keys(entry: str) -> set[str]:
    """Normalised keys a UUID-like entry may match (lower-case hex, no dashes or ``GPU-``):
    the entry itself and, for HIP's UUID as torch prints it, the ASCII it spells."""
    key = entry.strip().lower().removeprefix("gpu-").replace("-", "")
    keys = {_hex_key(entry)}
    if len(key) == 32:
        try:
            spelt = bytes.fromhex(key).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            spelt = ""
        if spelt and all(c in "0123456789abcdefABCDEF" for c in spelt):
            keys.add(_hex_key(spelt))
    return keys


def _device_keys(device: AmdDeviceIds) -> set[str]:
    keys = {_hex_key(device.uuid)}
    if device.unique_id:
        keys.add(_hex_key(device.unique_id))
    return keys


def _match(entry: str, devices: Sequence[AmdDeviceIds]) -> int | None:
    """The position in ``devices`` of the one device a UUID entry names (a prefix of amdsmi's
    UUID, or ROCr's/HIP's whole unique id), or None."""
    wanted = uuid_keys(entry)
    exact = [i for i, d in enumerate(devices) if wanted & _device_keys(d)]
    if len(exact) == 1:
        return exact[0]
    prefix = entry.strip().lower().removeprefix("gpu-").replace("-", "")
    found = [i for i, d in enumerate(devices) if d.uuid.lower().replace("-", "").startswith(prefix)]
    return found[0] if len(found) == 1 and prefix else None


def _apply(value: str | None, devices: Sequence[AmdDeviceIds], view: list[int]) -> list[int]:
    """One layer of filtering: ``value``'s entries, indexes counting within ``view``."""
    if value is None:
        return view
    kept: list[int] = []
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            break
        if entry.lstrip("-").isdigit():
            number = int(entry)
            if not 0 <= number < len(view):
                break  # ROCm ignores this entry and every one after it
            position = view[number]
        else:
            found = _match(entry, [devices[i] for i in view])
            if found is None:
                break
            position = view[found]
        if position not in kept:
            kept.append(position)
    return kept


def hip_view(devices: Sequence[AmdDeviceIds], environ: dict[str, str] | None) -> list[int]:
    """Positions in ``devices`` of HIP ordinals 0, 1, ... for a process with ``environ``."""
    env = environ or {}
    rocr = sorted(range(len(devices)), key=lambda i: devices[i].rocr_index)
    rocr = _apply(env.get("ROCR_VISIBLE_DEVICES"), devices, rocr)
    hip = env.get("HIP_VISIBLE_DEVICES")
    if hip is None:
        hip = env.get("CUDA_VISIBLE_DEVICES")
    return _apply(hip, devices, rocr)


def select_amd_devices(
    devices: Sequence[AmdDeviceIds],
    *,
    gpu_ids: str | int | Iterable[int | str] | None = None,
    environ: dict[str, str] | None = None,
) -> tuple[list[tuple[int, int]], list[str]]:
    """Choose the AMD GPUs to measure.

    Args:
        devices: each GPU amdsmi lists, in amdsmi's order.
        gpu_ids: ints (HIP ordinals: positions in the HIP view) or UUIDs in any of the forms
            above; None for every GPU the process sees.
        environ: the process's environment (``ROCR_VISIBLE_DEVICES``, ``HIP_VISIBLE_DEVICES``,
            ``CUDA_VISIBLE_DEVICES``).

    Returns:
        ``([(position in devices, HIP ordinal), ...], notes)``; notes name ``gpu_ids`` entries
        that match no visible AMD GPU (ignored).

    Raises:
        ValueError: ``gpu_ids`` holds something that is neither an index nor a UUID.
    """
    view = hip_view(devices, environ)
    wanted = _parse_id_list(gpu_ids)
    notes: list[str] = []
    if wanted is None:
        return [(position, ordinal) for ordinal, position in enumerate(view)], notes
    chosen: list[tuple[int, int]] = []
    for entry in wanted:
        if entry.isdigit():
            ordinal = int(entry)
            position = view[ordinal] if ordinal < len(view) else None
        else:
            found = _match(entry, [devices[i] for i in view])
            position = None if found is None else view[found]
        if position is None:
            notes.append(f"gpu_ids entry {entry!r} matches no visible AMD GPU: ignored")
        elif all(position != p for p, _ in chosen):
            chosen.append((position, view.index(position)))
    return chosen, notes

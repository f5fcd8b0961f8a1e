"""Which NVML devices to measure: ``gpu_ids``, ``CUDA_VISIBLE_DEVICES`` and CUDA -> NVML by UUID.

``gpu_ids`` (ints or UUIDs) and ``CUDA_VISIBLE_DEVICES`` (indexes or UUIDs, prefixes allowed)
choose the GPUs; CUDA ordinals are mapped to NVML devices by UUID. When the process has already
initialised CUDA through torch, torch's per-ordinal UUIDs give the mapping exactly. Otherwise
integers in ``CUDA_VISIBLE_DEVICES`` are taken as NVML (PCI bus) indexes, which is CUDA's
numbering with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` and on nodes of identical GPUs. Integer
``gpu_ids`` are CUDA ordinals (positions in the CUDA view) when CUDA_VISIBLE_DEVICES is set or
torch gave the view, NVML indexes otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from codecarbon_callbacks_core._shared import imported_torch

logger = logging.getLogger(__name__)


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


def _cuda_view(
    uuids: Sequence[str],
    cuda_visible_devices: str | None,
    cuda_uuids: Sequence[str] | None,
    notes: list[str],
) -> list[int]:
    """CUDA's view: the NVML index of each CUDA ordinal, in order (notes get MIG entries)."""
    by_key = {_uuid_key(u): i for i, u in enumerate(uuids)}
    if cuda_uuids is not None and all(_uuid_key(u) in by_key for u in cuda_uuids):
        return [by_key[_uuid_key(u)] for u in cuda_uuids]
    if cuda_visible_devices is None:
        return list(range(len(uuids)))
    visible: list[int] = []
    for entry in (e.strip() for e in cuda_visible_devices.split(",")):
        if not entry:
            break
        if entry.lstrip("-").isdigit():
            index = int(entry)
            if not 0 <= index < len(uuids):
                break  # CUDA ignores this entry and every one after it
        elif entry.upper().startswith("MIG-"):
            notes.append(f"CUDA_VISIBLE_DEVICES entry {entry!r} is a MIG instance: not measured")
            continue
        else:
            found = _match_uuid(entry, uuids)
            if found is None:
                break
            index = found
        if index not in visible:
            visible.append(index)
    return visible


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
    visible = _cuda_view(uuids, cuda_visible_devices, cuda_uuids, notes)
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
            raise _no_such_gpu(
                missing, visible, uuids, cuda_visible_devices, from_torch=cuda_uuids is not None
            )
    return [(i, cuda_of.get(i)) for i in chosen], notes


def _no_such_gpu(
    missing: Sequence[str],
    visible: Sequence[int],
    uuids: Sequence[str],
    cuda_visible_devices: str | None,
    *,
    from_torch: bool,
) -> Exception:
    """The ConfigError for ``gpu_ids`` entries that match no visible GPU."""
    from codecarbon_callbacks_core.errors import ConfigError

    listed = (
        "; ".join(
            f"{ordinal}: {uuids[index]} (NVML index {index})"
            for ordinal, index in enumerate(visible)
        )
        or "none"
    )
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

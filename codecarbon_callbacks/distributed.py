"""Distributed runs: who measures what, and how ranks' records become one.

Rules (what every other tool gets wrong):
- each rank measures only its own GPU(s) (its CUDA device, matched to NVML by UUID); a GPU that
  several ranks of a machine see (no CUDA device of their own, or a shared one) is measured once,
  by the lowest of those ranks;
- in ``machine`` tracking mode each machine's CPU and RAM are measured once, by the lowest rank
  on that machine; in ``process`` mode each rank measures its own process;
- records are combined with ``torch.distributed`` collectives over the process group the
  framework already set up (no home-made transport, no shared files), only at points every rank
  reaches (epoch and fit ends), never in failure paths;
- global rank zero writes the outputs.

A machine is identified by its host name, or by ``CODECARBON_CALLBACKS_MACHINE_ID`` when set (a
cluster whose nodes share a host name, or tests posing processes as machines).

Nothing here imports torch at module level; without an initialised process group everything
degrades to a single-process run.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from codecarbon_callbacks_core._shared import imported_torch
from codecarbon_callbacks_core.records import RANK_SUMMED_FIELDS, EmissionsData, WindowRecord

logger = logging.getLogger(__name__)

MACHINE_ID_ENV = "CODECARBON_CALLBACKS_MACHINE_ID"


def _dist() -> Any | None:
    """torch.distributed when the process group is initialised (never imports torch itself)."""
    torch = imported_torch()
    if torch is None:
        return None
    try:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist
    except Exception:  # pragma: no cover - a broken torch install
        return None
    return None


def is_distributed() -> bool:
    """True when a torch.distributed process group with more than one rank is initialised."""
    dist = _dist()
    try:
        return dist is not None and dist.get_world_size() > 1
    except Exception:  # pragma: no cover - a group torn down under us
        return False


def machine_id(environ: Mapping[str, str] | None = None) -> str:
    """This machine's identity: ``CODECARBON_CALLBACKS_MACHINE_ID`` if set, else the host name."""
    environ = os.environ if environ is None else environ
    return environ.get(MACHINE_ID_ENV) or socket.gethostname()


@dataclass(frozen=True)
class RankPlan:
    """What this rank measures and writes.

    Attributes:
        rank: global rank.
        world_size: number of ranks.
        machine: this rank's machine (see :func:`machine_id`).
        measures_host: this rank measures its machine's CPU and RAM (machine mode), or its
            process's (process mode).
        writes: global rank zero: writes the outputs.
        num_machines: number of distinct machines among the ranks.
        gpu_uuids: the GPUs this rank measures (a subset of those it offered to
            :func:`plan_ranks`); None when it offered none (no filtering to do).
        first_on_machine: the lowest rank of its machine (its local rank zero).
    """

    rank: int = 0
    world_size: int = 1
    machine: str = field(default_factory=machine_id)
    measures_host: bool = True
    writes: bool = True
    num_machines: int = 1
    gpu_uuids: tuple[str, ...] | None = None
    first_on_machine: bool = True

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _uuid_key(uuid: str) -> str:
    return uuid.strip().lower().removeprefix("gpu-")


def assign_ranks(
    offers: Sequence[tuple[int, str, Sequence[str] | None]], tracking_mode: str = "machine"
) -> dict[int, RankPlan]:
    """The plan of every rank from what each rank offered: ``(rank, machine, gpu_uuids)``.

    Pure: :func:`plan_ranks` gathers the offers with one collective and calls this on every
    rank, so every rank computes the same plans. A GPU (by UUID, per machine) goes to the lowest
    rank that offered it; the machine's CPU and RAM to its lowest rank (machine mode) or to every
    rank (process mode).
    """
    if tracking_mode not in ("machine", "process"):
        raise ValueError(f"tracking_mode must be 'machine' or 'process', got {tracking_mode!r}")
    ordered = sorted(offers, key=lambda o: int(o[0]))
    world = len(ordered)
    first_rank_on: dict[str, int] = {}
    gpu_owner: dict[tuple[str, str], int] = {}
    for rank, machine, uuids in ordered:
        first_rank_on.setdefault(machine, int(rank))
        for uuid in uuids or ():
            gpu_owner.setdefault((machine, _uuid_key(uuid)), int(rank))
    plans: dict[int, RankPlan] = {}
    for rank, machine, uuids in ordered:
        mine = None
        if uuids is not None:
            mine = tuple(u for u in uuids if gpu_owner[(machine, _uuid_key(u))] == int(rank))
        plans[int(rank)] = RankPlan(
            rank=int(rank),
            world_size=world,
            machine=machine,
            measures_host=tracking_mode == "process" or first_rank_on[machine] == int(rank),
            writes=int(rank) == 0,
            num_machines=len(first_rank_on),
            gpu_uuids=mine,
            first_on_machine=first_rank_on[machine] == int(rank),
        )
    return plans


def plan_ranks(
    tracking_mode: str = "machine",
    environ: Mapping[str, str] | None = None,
    gpu_uuids: Sequence[str] | None = None,
) -> RankPlan:
    """Decide, with one all_gather every rank reaches, who measures what and who writes.

    Call it at a point every rank reaches (fit start), on every rank.

    Args:
        tracking_mode: ``machine`` or ``process``.
        environ: where to read ``CODECARBON_CALLBACKS_MACHINE_ID`` (default os.environ).
        gpu_uuids: the GPUs this rank could measure (its CUDA device, or what NVML shows it);
            each is given to one rank per machine.

    Returns:
        This rank's plan; without a process group (or with one rank), a 1-rank plan.
    """
    dist = _dist()
    me = machine_id(environ)
    offered = list(gpu_uuids) if gpu_uuids is not None else None
    if dist is None or dist.get_world_size() == 1:
        return RankPlan(machine=me, gpu_uuids=tuple(offered) if offered is not None else None)
    rank, world = dist.get_rank(), dist.get_world_size()
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (rank, me, offered))
    return assign_ranks([tuple(g) for g in gathered], tracking_mode)[rank]


def local_gpu_ids() -> list[str] | None:
    """The UUID of this process's CUDA device, when torch has initialised CUDA; else None."""
    torch = imported_torch()
    if torch is None:
        return None
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return None
        index = torch.cuda.current_device()
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        if uuid is None:
            return [str(index)]
        text = str(uuid)
        return [text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"]
    except Exception as e:
        logger.debug("could not tell this rank's CUDA device: %s", e)
        return None


def _machine_entry(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "machine": r["machine"],
        "ranks": [],
        "host_measured_by": [],
        "cpu_energy_kwh": 0.0,
        "gpu_energy_kwh": 0.0,
        "ram_energy_kwh": 0.0,
        "energy_kwh": 0.0,
        "gpu_count": 0,
        "cpu_count": int(r.get("cpu_count") or 0),
        "cpu_model": str(r.get("cpu_model") or ""),
        "ram_total_size": float(r.get("ram_total_size") or 0.0),
    }


def combine_records(records: Sequence[Mapping[str, Any]], template: EmissionsData) -> EmissionsData:
    """One record from the ranks' records (dicts with ``rank`` and ``machine`` added).

    Energies, emissions, water and mean powers add up over ranks (each rank measured only what
    its plan gave it, so nothing is counted twice); duration, timestamps and identity come from
    ``template`` (this rank's record). ``cpu_count`` and ``ram_total_size`` add up over machines,
    ``gpu_count`` over ranks. The metadata carries world size, number of machines, and
    per-machine and per-GPU breakdowns (``metadata["distributed"]``), and every rank's
    components with their rank and machine (``metadata["components"]``).
    """
    combined = type(template)(**template.to_dict())
    combined.metadata = dict(template.metadata)
    ordered = sorted(records, key=lambda r: int(r["rank"]))
    for name in RANK_SUMMED_FIELDS:
        setattr(combined, name, sum(float(r.get(name) or 0.0) for r in ordered))
    combined.emissions_rate = (
        combined.emissions / combined.duration if combined.duration > 0 else 0.0
    )
    combined.gpu_count = int(sum(int(r.get("gpu_count") or 0) for r in ordered))
    utils = [
        float(r.get("gpu_utilization_percent") or 0.0)
        for r in ordered
        if int(r.get("gpu_count") or 0)
    ]
    combined.gpu_utilization_percent = sum(utils) / len(utils) if utils else 0.0
    methods = {
        kind: sorted(
            {m for r in ordered for m in str(r.get(f"{kind}_method") or "").split(",") if m}
        )
        for kind in ("cpu", "gpu", "ram")
    }
    for kind, found in methods.items():
        setattr(combined, f"{kind}_method", ",".join(found))
    statuses = {str(r.get("status")) for r in ordered}
    if len(statuses) > 1:
        combined.status = "incomplete" if "incomplete" in statuses else min(statuses)

    machines: dict[str, dict[str, Any]] = {}
    gpus: list[dict[str, Any]] = []
    components: list[dict[str, Any]] = []
    host_records: list[Mapping[str, Any]] = []
    for r in ordered:
        m = machines.setdefault(str(r["machine"]), _machine_entry(r))
        m["ranks"].append(int(r["rank"]))
        for kind in ("cpu", "gpu", "ram"):
            m[f"{kind}_energy_kwh"] += float(r.get(f"{kind}_energy") or 0.0)
        m["energy_kwh"] += float(r.get("energy_consumed") or 0.0)
        m["gpu_count"] += int(r.get("gpu_count") or 0)
        rank_components = (r.get("metadata") or {}).get("components", [])
        if any(c.get("kind") in ("cpu", "ram") for c in rank_components):
            m["host_measured_by"].append(int(r["rank"]))
            host_records.append(r)
        for c in rank_components:
            item = dict(c, rank=int(r["rank"]), machine=r["machine"])
            components.append(item)
            if c.get("kind") == "gpu":
                gpus.append(item)
    combined.cpu_count = int(sum(m["cpu_count"] for m in machines.values()))
    combined.ram_total_size = float(sum(m["ram_total_size"] for m in machines.values()))
    cpu_models = sorted({m["cpu_model"] for m in machines.values() if m["cpu_model"]})
    combined.cpu_model = ", ".join(cpu_models)
    gpu_models: dict[str, int] = {}
    for g in gpus:
        model = str(g.get("model") or "GPU")
        gpu_models[model] = gpu_models.get(model, 0) + 1
    if gpu_models:
        combined.gpu_model = ", ".join(f"{n} x {model}" for model, n in sorted(gpu_models.items()))
    if host_records:
        combined.cpu_utilization_percent = sum(
            float(r.get("cpu_utilization_percent") or 0.0) for r in host_records
        ) / len(host_records)
        combined.ram_utilization_percent = sum(
            float(r.get("ram_utilization_percent") or 0.0) for r in host_records
        ) / len(host_records)
        combined.ram_used_gb = sum(float(r.get("ram_used_gb") or 0.0) for r in host_records)
    combined.metadata["components"] = components
    combined.metadata["distributed"] = {
        "world_size": len(ordered),
        "num_machines": len(machines),
        "tracking_mode": combined.tracking_mode,
        "complete": True,
        "per_machine": list(machines.values()),
        "per_gpu": gpus,
    }
    return combined


class RecordCombiner:
    """The tracker's ``record_combiner`` for a distributed run: all_gather, then combine.

    Every rank gets the combined record (so every rank can log the same figures and take the
    same budget decisions); only global rank zero writes it. ``collective=False`` (failure
    paths) returns this rank's record marked as partial (``metadata["distributed"]["complete"]``
    is False), without any collective.

    Args:
        plan: this rank's plan from :func:`plan_ranks`.

    Example:
        >>> combiner = RecordCombiner(RankPlan())  # one process: records pass through
        >>> record = EmissionsData(gpu_energy=1.0)
        >>> combiner(record, True) is record
        True
    """

    def __init__(self, plan: RankPlan) -> None:
        self.plan = plan

    def __call__(self, record: EmissionsData, collective: bool) -> EmissionsData:
        plan = self.plan
        if not plan.distributed:
            return record
        if not collective:
            record.metadata = dict(record.metadata)
            record.metadata["distributed"] = {
                "world_size": plan.world_size,
                "num_machines": plan.num_machines,
                "tracking_mode": record.tracking_mode,
                "complete": False,
                "partial": (
                    f"rank {plan.rank} ({plan.machine}) only: the run did not end normally, "
                    "the other ranks' measurements are not in this record"
                ),
            }
            return record
        dist = _dist()
        if dist is None:
            return record
        mine = record.to_dict()
        mine.update(rank=plan.rank, machine=plan.machine)
        gathered: list[Any] = [None] * plan.world_size
        dist.all_gather_object(gathered, mine)
        return combine_records(gathered, record)

    def combine(self, record: EmissionsData) -> EmissionsData:
        """Combine a record that is not a tracker output (e.g. ``totals()``), collectively."""
        return self(record, True)


__all__ = [
    "MACHINE_ID_ENV",
    "RankPlan",
    "RecordCombiner",
    "WindowRecord",
    "assign_ranks",
    "combine_records",
    "is_distributed",
    "local_gpu_ids",
    "machine_id",
    "plan_ranks",
]

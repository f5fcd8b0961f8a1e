"""Distributed runs: who measures what, and how ranks' records become one.

Rules (what every other tool gets wrong):
- each rank measures only its own GPU(s) (its CUDA device, matched to NVML by UUID);
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
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from codecarbon_callbacks.core.records import EmissionsData, WindowRecord

logger = logging.getLogger(__name__)

MACHINE_ID_ENV = "CODECARBON_CALLBACKS_MACHINE_ID"
_ADDITIVE = ("cpu_energy", "gpu_energy", "ram_energy", "energy_consumed", "emissions", "water_consumed",
             "cpu_power", "gpu_power", "ram_power")


def _dist() -> Any | None:
    """torch.distributed when the process group is initialised (never imports torch itself)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist
    except Exception:  # pragma: no cover - a broken torch install
        return None
    return None


def machine_id(environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return environ.get(MACHINE_ID_ENV) or socket.gethostname()


@dataclass(frozen=True)
class RankPlan:
    """What this rank measures and writes."""

    rank: int = 0
    world_size: int = 1
    machine: str = field(default_factory=machine_id)
    #: this rank measures its machine's CPU and RAM (machine mode), or its process's (process mode)
    measures_host: bool = True
    #: global rank zero: writes the outputs
    writes: bool = True
    num_machines: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def plan_ranks(tracking_mode: str = "machine", environ: Mapping[str, str] | None = None) -> RankPlan:
    """Decide, with one all_gather every rank reaches, who measures the host and who writes.

    Call it at a point every rank reaches (fit start). Without a process group: a 1-rank plan.
    """
    dist = _dist()
    me = machine_id(environ)
    if dist is None or dist.get_world_size() == 1:
        return RankPlan(machine=me)
    rank, world = dist.get_rank(), dist.get_world_size()
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, (rank, me))
    first_rank_on: dict[str, int] = {}
    for other_rank, other_machine in sorted(gathered):
        first_rank_on.setdefault(other_machine, other_rank)
    measures_host = tracking_mode == "process" or first_rank_on[me] == rank
    return RankPlan(rank, world, me, measures_host, rank == 0, len(first_rank_on))


def local_gpu_ids() -> list[str] | None:
    """The UUID of this process's CUDA device, when torch has initialised CUDA; else None."""
    torch = sys.modules.get("torch")
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


def combine_records(records: Sequence[Mapping[str, Any]], template: EmissionsData) -> EmissionsData:
    """One record from the ranks' records (dicts with ``rank`` and ``machine`` added).

    Energies, emissions, water and mean powers add up over ranks; duration, timestamps and the
    rest come from rank zero (``template``). The metadata carries world size, number of
    machines, and per-machine and per-GPU breakdowns.
    """
    combined = type(template)(**{k: v for k, v in template.to_dict().items()})
    combined.metadata = dict(template.metadata)
    for name in _ADDITIVE:
        setattr(combined, name, sum(float(r.get(name) or 0.0) for r in records))
    combined.emissions_rate = combined.emissions / combined.duration if combined.duration > 0 else 0.0
    combined.gpu_count = int(sum(int(r.get("gpu_count") or 0) for r in records))
    gpu_models = sorted({str(r.get("gpu_model")) for r in records if r.get("gpu_model")})
    combined.gpu_model = ", ".join(gpu_models)
    utils = [float(r["gpu_utilization_percent"]) for r in records if int(r.get("gpu_count") or 0)]
    combined.gpu_utilization_percent = sum(utils) / len(utils) if utils else 0.0
    methods = {kind: sorted({m for r in records for m in str(r.get(f"{kind}_method") or "").split(",") if m})
               for kind in ("cpu", "gpu", "ram")}
    for kind, found in methods.items():
        setattr(combined, f"{kind}_method", ",".join(found))
    statuses = {str(r.get("status")) for r in records}
    if len(statuses) > 1:
        combined.status = "incomplete" if "incomplete" in statuses else sorted(statuses)[0]

    machines: dict[str, dict[str, Any]] = {}
    gpus: list[dict[str, Any]] = []
    components: list[dict[str, Any]] = []
    for r in sorted(records, key=lambda r: int(r["rank"])):
        m = machines.setdefault(str(r["machine"]), {"machine": r["machine"], "ranks": [],
                                                     "cpu_energy_kwh": 0.0, "gpu_energy_kwh": 0.0,
                                                     "ram_energy_kwh": 0.0})
        m["ranks"].append(int(r["rank"]))
        for kind in ("cpu", "gpu", "ram"):
            m[f"{kind}_energy_kwh"] += float(r.get(f"{kind}_energy") or 0.0)
        for c in (r.get("metadata") or {}).get("components", []):
            item = dict(c, rank=int(r["rank"]), machine=r["machine"])
            components.append(item)
            if c.get("kind") == "gpu":
                gpus.append(item)
    combined.metadata["components"] = components
    combined.metadata["distributed"] = {
        "world_size": len(records),
        "num_machines": len(machines),
        "per_machine": list(machines.values()),
        "per_gpu": gpus,
    }
    return combined


class RecordCombiner:
    """The tracker's ``record_combiner`` for a distributed run: all_gather, then combine.

    Every rank gets the combined record (so every rank can log the same figures); only global
    rank zero writes it. ``collective=False`` (failure paths) returns this rank's record marked
    with what is missing, without any collective.
    """

    def __init__(self, plan: RankPlan) -> None:
        self.plan = plan

    def __call__(self, record: EmissionsData, collective: bool) -> EmissionsData:
        plan = self.plan
        if not plan.distributed:
            return record
        if not collective:
            record.metadata["distributed"] = {
                "world_size": plan.world_size,
                "num_machines": plan.num_machines,
                "partial": f"rank {plan.rank} only: the run did not end normally, other ranks not combined",
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


__all__ = ["RankPlan", "plan_ranks", "local_gpu_ids", "combine_records", "RecordCombiner", "WindowRecord"]

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from codecarbon_callbacks_core._shared import imported_torch, warn_once
from codecarbon_callbacks_core.records import (
    RANK_QUADRATURE_FIELDS,
    RANK_SUMMED_FIELDS,
    STATE_KEYS,
    EmissionsData,
    WindowRecord,
)

if TYPE_CHECKING:  # the tracker module is imported when the first run begins
    from codecarbon_callbacks_core.config import TrackerConfig
    from codecarbon_callbacks_core.hardware.base import Component
    from codecarbon_callbacks_core.records import Figures
    from codecarbon_callbacks_core.tracker import BaseEmissionsTracker
    from codecarbon_callbacks_core.tracker import RecordCombiner as RecordCombinerFn

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


def _per_machine(
    ordered: Sequence[Mapping[str, Any]],
) -> tuple[
    dict[str, dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[Mapping[str, Any]]
]:
    """The ranks' records (by rank) grouped by machine: ``(machines, gpus, components,
    host_records)``, the last being the records of the ranks that measured a CPU or RAM."""
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
    return machines, gpus, components, host_records


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
    for name in RANK_QUADRATURE_FIELDS:
        setattr(combined, name, sum(float(r.get(name) or 0.0) ** 2 for r in ordered) ** 0.5)
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

    machines, gpus, components, host_records = _per_machine(ordered)
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


# -- a session's run on the ranks: plan, build, agree, stop together, signals -----------------

#: the state_dict figures summed over ranks (records.py owns both lists)
_STATE_FIGURES = tuple(
    (key, name) for key, name in STATE_KEYS.items() if name in RANK_SUMMED_FIELDS
)
#: what this module has reported once (warn_once's keys), per process
_INFO_ONCE: set[tuple[str, str]] = set()


def zeroed_state(state: Any) -> Any:
    """A tracker state with its run_id and no figures (the other ranks of a resumed run)."""
    if not isinstance(state, Mapping):
        return state
    out = dict(state)
    for key, _ in _STATE_FIGURES:
        if key in out:
            out[key] = 0.0
    return out


def combined_state(
    state: dict[str, Any], combined: EmissionsData, local: EmissionsData
) -> dict[str, Any]:
    """``state`` (this rank's) with the combined figures at the last sync plus this rank's since."""
    out = dict(state)
    for key, attr in _STATE_FIGURES:
        if key in out:
            out[key] = float(getattr(combined, attr)) + (
                float(out[key]) - float(getattr(local, attr))
            )
    return out


class SessionCombiner:
    """The tracker's ``record_combiner`` during a session's run.

    Combines ranks' records in a distributed run (:class:`RecordCombiner`) and keeps the
    window records the tracker closes itself at stop(), so that the session sees every window.

    Args:
        inner: the distributed run's combiner; None: records pass through.
    """

    def __init__(self, inner: RecordCombiner | None = None) -> None:
        self.inner = inner
        #: while a list, every window record passing through is appended to it
        self.capture: list[EmissionsData] | None = None
        #: called with every record passing through, after combining and before any output
        #: writes it (the session's WorkCounter.stamp: a train window's counts)
        self.stamp: Callable[[EmissionsData], None] | None = None

    @property
    def distributed(self) -> bool:
        return self.inner is not None and bool(getattr(self.inner.plan, "distributed", False))

    def __call__(self, record: EmissionsData, collective: bool) -> EmissionsData:
        try:
            out = self.inner(record, collective) if self.inner is not None else record
        except Exception:
            self._keep(record)
            raise
        if self.stamp is not None:
            try:
                self.stamp(out)
            except Exception as e:  # counts are never worth a lost record
                logger.debug("could not add the training counts to a record: %s", e)
        self._keep(out)
        return out

    def _keep(self, record: EmissionsData) -> None:
        if self.capture is not None and getattr(record, "window_id", None):
            self.capture.append(record)


def run_totals(
    tracker: BaseEmissionsTracker, combiner: SessionCombiner | None
) -> tuple[EmissionsData | Figures | None, tuple[EmissionsData, EmissionsData] | None]:
    """A run's totals as of its last edge, combined over ranks (a collective) when distributed.

    Call it only at points every rank reaches (run begin, epoch end, step-window close).

    Returns:
        ``(totals, sync)``: ``totals`` None when the tracker could not give them (a single
        process: its figures only, ``tracker.run_figures()``); ``sync`` the ``(combined,
        local)`` pair when the ranks' totals were combined, else None.
    """
    distributed = combiner is not None and combiner.inner is not None and combiner.distributed
    try:
        # as of the edge just taken (epoch end, step-window close): no second hardware read;
        # a single process needs the figures only
        if not distributed:
            return tracker.run_figures(at_last_edge=True), None
        local = tracker.totals(at_last_edge=True)
    except Exception as e:
        logger.debug("totals() failed: %s", e)
        return None, None
    assert combiner is not None and combiner.inner is not None
    try:
        combined = combiner.inner.combine(local)
    except Exception as e:
        logger.warning("could not combine the ranks' totals: %s", e)
        return local, None
    return combined, (combined, local)


class TrackerFactory(Protocol):
    """Builds a run's tracker from the session's resolved configuration."""

    def __call__(
        self,
        components: Sequence[Component] | None = None,
        *,
        shares_machine: bool = False,
        record_combiner: RecordCombinerFn | None = None,
        writes_outputs: bool = True,
    ) -> BaseEmissionsTracker: ...


class RankTracker(NamedTuple):
    """What :func:`rank_tracker` gives a rank: its tracker (None or the given one after an
    error), its plan (None: planning failed), the session's combiner, and why it failed."""

    tracker: BaseEmissionsTracker | None
    plan: RankPlan | None
    combiner: SessionCombiner
    error: BaseException | None


def _gpu_uuid(component: Component) -> str:
    return str(getattr(component, "uuid", None) or component.name)


def _close_quietly(components: Sequence[Component]) -> None:
    for component in components:
        try:
            component.close()
        except Exception as e:
            logger.debug("could not close %s: %s", getattr(component, "name", component), e)


def _offer(
    rank: int,
    given_tracker: BaseEmissionsTracker | None,
    config: Callable[[], TrackerConfig],
    detect: Callable[[TrackerConfig, bool], list[Component]],
) -> tuple[str, list[Component] | None, list[str] | None, BaseException | None]:
    """This rank's tracking mode, components found, GPUs offered and error, never raising."""
    components: list[Component] | None = None
    offers: list[str] | None = None
    mode = "machine"
    try:
        resolved = given_tracker.config if given_tracker is not None else config()
        mode = str(getattr(resolved, "tracking_mode", "machine") or "machine")
        if given_tracker is None:
            components = detect(resolved, rank == 0)
            offers = [_gpu_uuid(c) for c in components if c.kind == "gpu"]
    except Exception as e:  # still take part in the collective that follows
        return mode, components, offers, e
    return mode, components, offers, None


def _plan_or_none(mode: str, offers: list[str] | None, rank: int) -> RankPlan | None:
    try:
        return plan_ranks(mode, gpu_uuids=offers)
    except Exception as e:
        logger.warning(
            "could not plan the distributed measurement (%s): rank %s measures alone and "
            "only rank 0 writes",
            e,
            rank,
        )
        return None


def _planned_components(plan: RankPlan, components: list[Component]) -> list[Component]:
    """The components the plan gives this rank; the others are closed."""
    wanted = {_uuid_key(u) for u in plan.gpu_uuids or ()}
    kept = []
    for c in components:
        if c.kind == "gpu":
            keep = _uuid_key(_gpu_uuid(c)) in wanted
        else:
            keep = plan.measures_host
        if keep:
            kept.append(c)
        else:
            _close_quietly([c])
    return kept


def _log_plan(plan: RankPlan, kept: Sequence[Component], mode: str) -> None:
    gpus = [c.name for c in kept if c.kind == "gpu"]
    logger.info(
        "codecarbon_callbacks: rank %d of %d on %s measures %s%s",
        plan.rank,
        plan.world_size,
        plan.machine,
        "its machine's CPU and RAM"
        if plan.measures_host and mode == "machine"
        else "its process's CPU and RAM"
        if plan.measures_host
        else "no CPU or RAM",
        f" and {', '.join(gpus)}" if gpus else "",
    )


def _warn_given_tracker() -> None:
    warn_once(
        "given-tracker-distributed",
        "a distributed run with a tracker you built: each rank's tracker measures what it "
        "was configured with (CPU and RAM may be counted once per rank). Pass the "
        "tracker's parameters to the callback instead so that each machine's CPU and RAM "
        "are measured once and each rank measures only its own GPU.",
        log=logger,
        level=logging.WARNING,
        seen=_INFO_ONCE,
    )


def rank_tracker(
    rank: int,
    *,
    given_tracker: BaseEmissionsTracker | None,
    config: Callable[[], TrackerConfig],
    detect: Callable[[TrackerConfig, bool], list[Component]],
    new_tracker: TrackerFactory,
) -> RankTracker:
    """Every rank of a distributed run: plan who measures what, build this rank's tracker.

    A point every rank reaches (one all_gather). It never raises, so that a rank whose tracker
    cannot be built still reaches the collectives that follow (``error`` says why; ``tracker``
    may then be None). The tracker is built once, after the plan, with what this rank measures
    and its record combiner.

    Args:
        rank: the process's global rank (rank zero writes when planning fails).
        given_tracker: a tracker the user built (measures what it was configured with), or None.
        config: the session's resolved tracker configuration (raises ``ConfigError``).
        detect: this rank's hardware for a configuration; its second argument is True where
            notes are issued as user warnings (global rank zero).
        new_tracker: builds the tracker from the components this rank measures.
    """
    mode, components, offers, error = _offer(rank, given_tracker, config, detect)
    plan = _plan_or_none(mode, offers, rank)
    combiner = SessionCombiner(
        RecordCombiner(plan) if plan is not None and plan.distributed else None
    )
    if error is not None:
        _close_quietly(components or ())
        return RankTracker(given_tracker, plan, combiner, error)
    if components is None:  # a tracker the user built
        if plan is not None and given_tracker is not None:
            _warn_given_tracker()
        return RankTracker(given_tracker, plan, combiner, None)
    # no plan: this rank measures what it found, rank zero writes
    kept = components if plan is None else _planned_components(plan, components)
    try:
        tracker = new_tracker(
            components=kept,
            shares_machine=plan is not None and not plan.first_on_machine,
            record_combiner=combiner,
            writes_outputs=plan.writes if plan is not None else rank == 0,
        )
    except Exception as e:
        _close_quietly(kept)
        return RankTracker(None, plan, combiner, e)
    if plan is not None:
        _log_plan(plan, kept, mode)
    return RankTracker(tracker, plan, combiner, None)


def every_rank_ok(ok: bool) -> bool:
    """True when the run could begin on every rank (one all_gather every rank reaches).

    A rank without a running tracker would not close the windows the others combine, and
    they would wait for it forever: then no rank measures this run.
    """
    dist = _dist()
    if dist is None:
        return ok
    try:
        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, bool(ok))
    except Exception as e:
        logger.warning("could not check that every rank's tracker started: %s", e)
        return False
    return all(bool(g) for g in gathered)


def abandon_tracker(
    tracker: BaseEmissionsTracker | None,
    started_here: bool,
    previous_combiner: RecordCombinerFn | None,
    previous_writes: bool,
) -> None:
    """A run that could not begin on every rank: leave no tracker running, write nothing.

    A tracker started for the run is stopped as ``incomplete`` without outputs; a tracker the
    user built gets its own ``record_combiner`` and ``writes_outputs`` back.
    """
    if tracker is None:
        return
    try:
        if started_here and tracker.is_running:
            tracker.set_distributed_hooks(None, False)
            tracker.stop(status="incomplete")
        else:
            tracker.set_distributed_hooks(previous_combiner, previous_writes)
    except Exception as e:
        logger.debug("could not put the tracker back: %s", e)


SignalHandler = Callable[[int, FrameType | None], None]


def install_sigterm_handler(on_sigterm: Callable[[int], None]) -> SignalHandler | None:
    """Let a rank write what it has when its launcher terminates it.

    When one rank dies, ``torchrun`` (and SLURM) send SIGTERM to the others, whose default
    action ends the process without ``atexit``: rank zero would write nothing. Installed only
    where nobody handles SIGTERM already (Lightning does, through on_exception), on the main
    thread; the handler puts the default action back, calls ``on_sigterm(signum)`` (which ends
    the run as interrupted, without any collective), then lets the signal do what it would have
    done.

    Returns:
        The handler installed (for :func:`remove_sigterm_handler`), or None when none was.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return None

        def handler(signum: int, frame: FrameType | None) -> None:
            try:
                signal.signal(signum, signal.SIG_DFL)
                on_sigterm(signum)
            finally:
                os.kill(os.getpid(), signum)

        signal.signal(signal.SIGTERM, handler)
        return handler
    except (ValueError, OSError) as e:  # not the main interpreter, or no signals here
        logger.debug("no SIGTERM handler: %s", e)
        return None


def install_run_sigterm(
    still_running: Callable[[], bool],
    fail: Callable[[BaseException], None],
    log: logging.Logger,
) -> SignalHandler | None:
    """:func:`install_sigterm_handler` for a session's run: on SIGTERM, while
    ``still_running()``, log it and ``fail(SystemExit(128 + signum))`` (the run ends as
    interrupted, writing what this rank measured)."""

    def on_sigterm(signum: int) -> None:
        if still_running():
            log.warning(
                "terminated by signal %d (did another rank fail?): writing what this rank measured",
                signum,
            )
            fail(SystemExit(128 + signum))

    return install_sigterm_handler(on_sigterm)


def remove_sigterm_handler(handler: SignalHandler | None) -> None:
    """Put SIGTERM's default action back if ``handler`` (from :func:`install_sigterm_handler`)
    is still the one installed."""
    if handler is None:
        return
    import signal

    try:
        if signal.getsignal(signal.SIGTERM) is handler:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        pass


__all__ = [
    "MACHINE_ID_ENV",
    "RankPlan",
    "RankTracker",
    "RecordCombiner",
    "SessionCombiner",
    "TrackerFactory",
    "WindowRecord",
    "abandon_tracker",
    "assign_ranks",
    "combine_records",
    "combined_state",
    "every_rank_ok",
    "install_sigterm_handler",
    "is_distributed",
    "local_gpu_ids",
    "machine_id",
    "plan_ranks",
    "rank_tracker",
    "remove_sigterm_handler",
    "run_totals",
    "zeroed_state",
]

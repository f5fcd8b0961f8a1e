"""A session's run tracker: built, planned over the ranks, resumed, started, checked, described.

Steps of :meth:`EmissionsSession.begin_run <codecarbon_callbacks.session.EmissionsSession.
begin_run>` and :meth:`end_run`, as functions of explicit arguments (no session): build the
tracker from the resolved configuration (:func:`new_tracker`), find this rank's hardware
(:func:`detect`), get and start the run's tracker, planned over the ranks when distributed
(:func:`start_tracker`), check that it runs on every rank (:func:`every_rank_running`), say how
it measures (:func:`say_how_measured`) and, when a fit ends, where its reports are
(:func:`closing_line`), and its totals and windows as the session's summary gives them
(:func:`totals_summary`, :func:`windows_summary`). Messages go to the logger the caller
passes (the session's).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core._shared import warn_once

if TYPE_CHECKING:  # the tracker and distributed modules are imported when a run begins
    from codecarbon_callbacks_core.config import TrackerConfig
    from codecarbon_callbacks_core.hardware.base import Component
    from codecarbon_callbacks_core.records import EmissionsData, WindowRecord
    from codecarbon_callbacks_core.tracker import BaseEmissionsTracker
    from codecarbon_callbacks_core.tracker import RecordCombiner as RecordCombinerFn

    from codecarbon_callbacks.distributed import RankPlan, SessionCombiner, TrackerFactory


@dataclass
class RunStart:
    """How a run's tracker was obtained and started (begin_run's steps fill it in turn).

    Attributes:
        combiner: the session's record combiner for the run.
        resume: the saved state the run resumes from (None: a new run).
        resume_refused: the tracker refused the saved state (the run starts anew).
        tracker: the run's tracker, once known.
        plan: the distributed plan (None: a single process, or planning failed).
        started_here: the tracker was started for this run (the session stops it).
        previous_combiner: a given tracker's own ``record_combiner`` before the run.
        previous_writes: a given tracker's own ``writes_outputs`` before the run.
        failure: why the tracker could not be had or started, if so.
        writer: this rank writes (global rank zero, or the plan's writer).
    """

    combiner: SessionCombiner
    resume: dict[str, Any] | None = None
    resume_refused: bool = False
    tracker: BaseEmissionsTracker | None = None
    plan: RankPlan | None = None
    started_here: bool = False
    previous_combiner: RecordCombinerFn | None = None
    previous_writes: bool = True
    failure: BaseException | None = None
    writer: bool = True


#: tracker parameters that give a location: the run's tracker is then an offline one
OFFLINE_KEYS = ("country_iso_code", "country_2letter_iso_code", "cloud_provider")


class TrackerSource:
    """Where a session's trackers come from: its tracker parameters, their configuration
    resolved and checked once per process (:meth:`config`; a pickled source resolves again
    where it lands, in its own environment) and each run's tracker built from it (:meth:`build`).

    Args:
        tracker_kwargs: the tracker parameters by name, as the callback was given them.
    """

    def __init__(self, tracker_kwargs: Mapping[str, Any]) -> None:
        self.tracker_kwargs = dict(tracker_kwargs)
        self.offline = any(self.tracker_kwargs.get(k) for k in OFFLINE_KEYS)
        self._config: TrackerConfig | None = None

    def config(self) -> TrackerConfig:
        """The trackers' configuration (raises ConfigError naming a bad parameter)."""
        if self._config is None:
            from codecarbon_callbacks_core.tracker import resolve_tracker_config

            self._config = resolve_tracker_config(self.tracker_kwargs, offline=self.offline)
        return self._config

    def build(self, **hooks: Any) -> BaseEmissionsTracker:
        """A run's tracker (:func:`new_tracker` with ``hooks``: components, shares_machine,
        record_combiner, writes_outputs)."""
        return new_tracker(self.config(), offline=self.offline, **hooks)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_config": None}


def new_tracker(
    config: TrackerConfig,
    *,
    offline: bool,
    components: Sequence[Component] | None = None,
    shares_machine: bool = False,
    record_combiner: RecordCombinerFn | None = None,
    writes_outputs: bool = True,
) -> BaseEmissionsTracker:
    """A run's tracker, built once from the resolved configuration with its hooks.

    Args:
        config: the session's resolved configuration.
        offline: build an ``OfflineEmissionsTracker`` (a location was given).
        components: what this rank measures (None: detect).
        shares_machine: another rank of this job on the machine holds the machine's lock.
        record_combiner: the session's record combiner.
        writes_outputs: this rank writes the outputs (global rank zero).
    """
    from codecarbon_callbacks_core.tracker import EmissionsTracker, OfflineEmissionsTracker

    cls = OfflineEmissionsTracker if offline else EmissionsTracker
    if shares_machine:
        # allow_multiple_runs=False means one run per machine: the job's other ranks on the
        # machine are that same run, only its local rank zero takes the machine's lock.
        config = dataclasses.replace(config, allow_multiple_runs=True)
    return cls.from_config(
        config,
        components=list(components) if components is not None else None,
        record_combiner=record_combiner,
        writes_outputs=writes_outputs,
    )


def detect(
    config: TrackerConfig,
    *,
    user_warning: bool,
    log: logging.Logger,
    seen: set[tuple[str, str]],
) -> list[Component]:
    """This rank's hardware: the configured GPUs, else its CUDA device, else what it sees.

    ``gpu_ids`` given: those (a rank driving several GPUs says so); a GPU that several ranks
    offer is still measured once (:func:`distributed.assign_ranks`). The notes are logged on
    every rank (to ``log``, once per ``seen``), issued as warnings only where ``user_warning``
    (global rank zero).
    """
    from codecarbon_callbacks_core.hardware import detect_for_config, report_notes

    from codecarbon_callbacks import distributed

    gpu_ids = getattr(config, "gpu_ids", None)
    if gpu_ids is None:
        gpu_ids = distributed.local_gpu_ids()
    components, notes = detect_for_config(config, gpu_ids=gpu_ids)
    report_notes(notes, log=log, seen=seen, user_warning=user_warning)
    return list(components)


def start_tracker(
    start: RunStart,
    rank: int,
    *,
    given_tracker: BaseEmissionsTracker | None,
    build: Callable[..., BaseEmissionsTracker],
    config: Callable[[], TrackerConfig],
    detect: Callable[[TrackerConfig, bool], list[Component]],
    log: logging.Logger,
) -> None:
    """Get this run's tracker (planned over the ranks when distributed), join it to the run,
    give it the saved state and start it; fills ``start`` as it goes (``writer`` from the
    process's rank, then from the plan) and raises what failed.

    Args:
        start: the run's start, with its combiner and the state it resumes from.
        rank: the process's global rank (without a process group, rank zero writes).
        given_tracker: a tracker the user built, or None.
        build: :func:`new_tracker` over the session's configuration (a
            :class:`~codecarbon_callbacks.distributed.TrackerFactory`).
        config: the session's resolved configuration.
        detect: this rank's hardware (see :func:`detect`); True where notes are user warnings.
        log: where to say what went wrong with the saved state.
    """
    from codecarbon_callbacks import distributed

    start.writer = rank == 0
    if distributed.is_distributed():
        factory: TrackerFactory = build
        start.tracker, start.plan, start.combiner, failure = distributed.rank_tracker(
            rank, given_tracker=given_tracker, config=config, detect=detect, new_tracker=factory
        )
        if failure is not None:
            raise failure
    elif given_tracker is None:
        start.tracker = build(record_combiner=start.combiner, writes_outputs=start.writer)
    else:
        start.tracker = given_tracker
    tracker = start.tracker
    assert tracker is not None  # rank_tracker gives one whenever it reports no failure
    if start.plan is not None:
        start.writer = start.plan.writes
    if tracker is given_tracker:
        # a tracker the user built joins the run through its public hooks, and gets
        # its own back at the end of the run
        start.previous_combiner = tracker.record_combiner
        start.previous_writes = tracker.writes_outputs
        tracker.set_distributed_hooks(start.combiner, start.previous_writes and start.writer)
    _load_resume(start, tracker, log)
    if not tracker.is_running:
        tracker.start()
        start.started_here = True


def _load_resume(start: RunStart, tracker: BaseEmissionsTracker, log: logging.Logger) -> None:
    """Give the tracker the saved state of a resumed run (``start.resume``), if any."""
    from codecarbon_callbacks.distributed import zeroed_state

    resume, plan = start.resume, start.plan
    if resume is not None and plan is not None and plan.distributed and not plan.writes:
        # The saved totals are the combined run's: rank zero carries them, the other
        # ranks only continue the run_id (else they would be counted once per rank).
        resume = dict(resume)
        resume["tracker"] = zeroed_state(resume.get("tracker"))
    if resume is not None and resume.get("tracker"):
        if tracker.is_running:
            log.warning(
                "resuming into a tracker that is already running: the saved totals are "
                "added, but its run_id is kept only if no window closed yet"
            )
        try:
            tracker.load_state_dict(resume["tracker"])
        except (ValueError, TypeError) as e:
            log.warning("could not resume the saved emissions run (%s): a new run starts", e)
            resume = None
            start.resume_refused = True
    start.resume = resume


def every_rank_running(start: RunStart, stage: str, log: logging.Logger) -> bool:
    """True when the tracker runs here and (distributed) on every rank: one all_gather.

    Otherwise no rank measures the ``stage`` run: why is logged to ``log``, the tracker is put
    back as it was, and False is returned.
    """
    from codecarbon_callbacks import distributed

    tracker, failure = start.tracker, start.failure
    running = failure is None and tracker is not None and bool(tracker.is_running)
    if start.plan is not None and start.plan.distributed:
        every_rank = distributed.every_rank_ok(running)
    else:
        every_rank = running
    if every_rank:
        return True
    if failure is not None:
        log.warning(
            "the emissions tracker could not start (%s): this %s run is not measured",
            failure,
            stage,
        )
    elif running:
        log.warning(
            "the emissions tracker of another rank could not start: this %s run is not "
            "measured on any rank (the ranks' windows must stay in step)",
            stage,
        )
    else:
        log.warning("the emissions tracker did not start: this %s run is not measured", stage)
    distributed.abandon_tracker(
        tracker, start.started_here, start.previous_combiner, start.previous_writes
    )
    return False


def stop_tracker(
    tracker: BaseEmissionsTracker,
    combiner: SessionCombiner | None,
    *,
    status: str,
    window_status: str,
    log: logging.Logger,
) -> tuple[float | None, list[EmissionsData]]:
    """Stop a tracker the session started: it closes the open windows at its own final
    snapshot, so the windows tile the run to its very end.

    Returns the run's emissions (kg CO2eq, None when stop() failed: logged, never raised) and
    the window records the session's ``combiner`` captured while the tracker stopped.
    """
    capture: list[EmissionsData] = []
    if combiner is not None:
        combiner.capture = capture
    result = None
    try:
        result = tracker.stop(status=status, window_status=window_status)
    except Exception as e:
        log.warning("could not stop the tracker at the end of the run: %s", e)
    finally:
        if combiner is not None:
            combiner.capture = None
    return result, capture


def switches_later(tracker: BaseEmissionsTracker, combiner: SessionCombiner | None) -> bool:
    """Whether a run's tiling windows switch with ``switch_window_later``: one meter read at an
    edge, the records built in batches where figures are needed (a validation end, an epoch
    end). Not across ranks: a record combined over ranks is a collective, taken where every rank
    is."""
    return callable(getattr(tracker, "switch_window_later", None)) and not (
        combiner is not None and combiner.distributed
    )


def hand_back(
    tracker: BaseEmissionsTracker, combiner: RecordCombinerFn | None, writes_outputs: bool
) -> None:
    """Give a user's tracker back its own record combiner and ``writes_outputs``."""
    try:
        tracker.set_distributed_hooks(combiner, writes_outputs)
    except Exception:
        pass


def closing_line(stage: str, status: str, tracker: BaseEmissionsTracker) -> str:
    """The line that ends a fit: its energy, emissions and where its reports are."""
    data = None if tracker.is_running else tracker.final_emissions_data
    if data is None:
        data = tracker.totals(at_last_edge=True)
    config = tracker.config
    output_dir = os.path.abspath(config.output_dir)
    methods = {getattr(m, "value", m) for m in config.output_methods}
    names = []
    if "csv" in methods:
        names += [config.output_file, config.windows_output_file]
    if "boamps" in methods:
        names.append(f"boamps_report_{data.run_id}.json")
    files = [n for n in names if os.path.isfile(os.path.join(output_dir, n))]
    where = (
        f"reports in {output_dir}: {', '.join(files)}"
        if files
        else f"no report file in {output_dir}"
    )
    return (
        f"codecarbon-callbacks: {stage} {status}: "
        f"{data.energy_consumed:.6g} kWh, {data.emissions:.6g} kg CO2eq; {where}"
    )


def print_closing_line(
    stage: str, status: str, tracker: BaseEmissionsTracker, *, log: logging.Logger
) -> None:
    """Print :func:`closing_line` (a failure is only logged, at debug level)."""
    try:
        print(closing_line(stage, status, tracker), flush=True)
    except Exception as e:  # a summary line is never worth a failure
        log.debug("no closing line: %s", e)


def say_how_measured(
    tracker: BaseEmissionsTracker, *, log: logging.Logger, seen: set[tuple[str, str]]
) -> None:
    """Log once (per ``seen``, at INFO on ``log``) what the tracker measures and how, and where
    its carbon intensity comes from. Never raises."""
    try:
        parts = [f"{c.name} ({getattr(c.method, 'value', c.method)})" for c in tracker.components]
        intensity = getattr(tracker, "intensity", None)
        where = ""
        if intensity is not None:
            where = f"; carbon intensity {intensity.g_per_kwh:.4g} g/kWh from {intensity.source}"
        estimated = [
            c.name
            for c in tracker.components
            if getattr(c.method, "value", c.method) in ("tdp_estimate", "constant")
        ]
        note = (
            " (estimated, no hardware energy counter)"
            if estimated and len(estimated) == len(parts)
            else ""
        )
        warn_once(
            "measured:" + ",".join(parts) + where,
            "codecarbon_callbacks: measuring %s%s%s",
            ", ".join(parts) or "nothing",
            note,
            where,
            log=log,
            level=logging.INFO,
            seen=seen,
        )
    except Exception:
        pass


def totals_so_far(tracker: BaseEmissionsTracker | None) -> dict[str, float]:
    """The run's ``total_*`` figures (:func:`metrics.totals_metrics`) as of the latest window
    edge, this rank's own: no collective, so callable where not every rank is (a mid-epoch
    validation end); in a distributed run the epoch's end sets the figures combined over ranks.
    Empty without a tracker or when the tracker cannot say (never raises)."""
    if tracker is None:
        return {}
    from codecarbon_callbacks.metrics import totals_metrics

    try:
        return totals_metrics(tracker.run_figures(at_last_edge=True))
    except Exception as e:  # a monitor's figure must never cost the training
        logging.getLogger(__name__).debug("totals so far unavailable: %s", e)
        return {}


def totals_summary(tracker: BaseEmissionsTracker) -> tuple[dict[str, Any], str | None]:
    """The tracker's totals now (its final record once stopped) as the session's summary gives
    them (kWh, kg CO2eq, s, g/kWh), and the run's status; ``({}, None)`` when it has none."""
    data: EmissionsData | None = None
    try:
        data = tracker.totals()
    except Exception:
        data = getattr(tracker, "final_emissions_data", None)
    if data is None:
        return {}, None
    totals = {
        "run_id": data.run_id,
        "energy_kwh": data.energy_consumed,
        "cpu_energy_kwh": data.cpu_energy,
        "gpu_energy_kwh": data.gpu_energy,
        "ram_energy_kwh": data.ram_energy,
        "emissions_kg": data.emissions,
        "duration_s": data.duration,
        "carbon_intensity_g_per_kwh": data.carbon_intensity_g_per_kwh,
    }
    return totals, data.status


def windows_summary(records: Sequence[WindowRecord]) -> list[dict[str, Any]]:
    """The window records as the session's summary gives them (kWh, kg CO2eq, s)."""
    return [
        {
            "window_id": r.window_id,
            "kind": r.kind,
            "name": r.name,
            "epoch": r.epoch,
            "phase": r.phase,
            "status": r.status,
            "energy_kwh": r.energy_consumed,
            "cpu_energy_kwh": r.cpu_energy,
            "gpu_energy_kwh": r.gpu_energy,
            "ram_energy_kwh": r.ram_energy,
            "emissions_kg": r.emissions,
            "duration_s": r.duration,
            "start_timestamp": r.start_timestamp,
            "end_timestamp": r.end_timestamp,
        }
        for r in records
    ]


def run_summary(
    tracker: BaseEmissionsTracker | None,
    records: Sequence[WindowRecord],
    **fields: Any,
) -> dict[str, Any]:
    """A session's summary: ``run_id``, ``status`` and ``totals`` read off ``tracker`` (empty
    without one), ``windows`` from ``records``, and the session's own ``fields`` as given
    (``framework``, ``stage``, ``epochs``, ``forecast``, ``stop_reason``)."""
    totals, status = totals_summary(tracker) if tracker is not None else ({}, None)
    return {
        "run_id": totals.get("run_id"),
        "status": status,
        "totals": totals,
        "windows": windows_summary(records),
        **fields,
    }


__all__ = [
    "print_closing_line",
    "OFFLINE_KEYS",
    "TrackerSource",
    "RunStart",
    "closing_line",
    "detect",
    "every_rank_running",
    "new_tracker",
    "run_summary",
    "say_how_measured",
    "start_tracker",
    "switches_later",
    "totals_summary",
    "windows_summary",
]

"""EmissionsTracker, OfflineEmissionsTracker and track_emissions, with CodeCarbon's parameters.

A tracker owns a :class:`~codecarbon_callbacks_core.meter.Meter` over the detected hardware, the
carbon intensity for its location and the outputs. Every figure it reports is the difference of
two meter snapshots: the run (start -> stop), a flush (last flush -> now), a task or an epoch
(any window). Opening or closing a window never restarts the measurement.

Example:
    >>> from codecarbon_callbacks_core import OfflineEmissionsTracker
    >>> tracker = OfflineEmissionsTracker(country_iso_code="FRA", output_methods=[])
    >>> tracker.start()
    >>> window = tracker.open_window("epoch", "epoch 0", epoch=0, phase="train")
    >>> record = tracker.close_window(window)
    >>> emissions_kg = tracker.stop()
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from codecarbon_callbacks_core import process_end
from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core._tracker_compat import CompatMixin, live_due
from codecarbon_callbacks_core._tracker_lifecycle import (
    COLLECTIVE_STOP_STATUSES,
    TrackerLog,
    acquire_single_run_lock,
    left,
    release_single_run_lock,
    run_bounded,
    single_run_lock_path,
)
from codecarbon_callbacks_core._tracker_location import (
    LocationMixin,
    resolve_location,
    resolve_tracker_config,
)
from codecarbon_callbacks_core._tracker_records import (
    ClosedWindow,
    Figures,
    LastOf,
    OpenWindow,
    RamUsage,
    fill_record,
    static_info,
)
from codecarbon_callbacks_core._tracker_resume import ResumeMixin
from codecarbon_callbacks_core._tracker_windows import WindowsMixin
from codecarbon_callbacks_core.config import _UNSET, TrackerConfig, resolve_config
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning, ConfigError
from codecarbon_callbacks_core.hardware import _forksafe
from codecarbon_callbacks_core.hardware.base import Component
from codecarbon_callbacks_core.meter import SAMPLER_JOIN_TIMEOUT_S, Meter, Snapshot
from codecarbon_callbacks_core.output.base import BaseOutput, OutputMethod
from codecarbon_callbacks_core.output.fanout import OutputFanout
from codecarbon_callbacks_core.records import EmissionsData, WindowRecord

if TYPE_CHECKING:
    from codecarbon_callbacks_core.intensity.online import LocationLookup

logger = logging.getLogger(__name__)

#: the most stop() takes by default, in seconds, whatever the hardware and the outputs do
STOP_TIMEOUT_S = 15.0

F = TypeVar("F", bound=Callable[..., Any])

#: combines a rank's record with the other ranks' (record, collective) -> combined record
RecordCombiner = Callable[[EmissionsData, bool], EmissionsData]


class BaseEmissionsTracker(WindowsMixin, LocationMixin, CompatMixin, ResumeMixin):
    """Measures energy and emissions between start() and stop(), with windows in between.

    The parameters are CodeCarbon 3.3.2's, with its defaults (see the README's table); values not
    given come from ``CODECARBON_*`` environment variables, then ``./.codecarbon.config``, then
    ``~/.codecarbon.config``. A bad value raises :class:`ConfigError` here, naming it.

    Extra keyword arguments of ours: ``prometheus_scrape_address`` (serve the PROMETHEUS
    output's series for scraping, e.g. ``":9464"``), ``windows_output_file``, ``webhook_windows``,
    ``spool_max_bytes``, ``spool_max_age_s``, ``prometheus_delete_on_exit``,
    ``boamps_context_file``; and ``components`` (a list of hardware components to measure instead
    of detecting them, e.g. fakes in tests).
    """

    _offline = False

    def __init__(
        self,
        project_name: str | None = _UNSET,
        measure_power_secs: float | None = _UNSET,
        api_call_interval: int | None = _UNSET,
        api_endpoint: str | None = _UNSET,
        api_key: str | None = _UNSET,
        output_dir: str | None = _UNSET,
        output_file: str | None = _UNSET,
        output_methods: list[OutputMethod] | None = _UNSET,
        save_to_file: bool | None = _UNSET,
        save_to_api: bool | None = _UNSET,
        save_to_logger: bool | None = _UNSET,
        logging_logger: Any = _UNSET,
        save_to_prometheus: bool | None = _UNSET,
        save_to_logfire: bool | None = _UNSET,
        prometheus_url: str | None = _UNSET,
        output_handlers: list[BaseOutput] | None = _UNSET,
        gpu_ids: list[int | str] | None = _UNSET,
        emissions_endpoint: str | None = _UNSET,
        experiment_id: str | None = _UNSET,
        experiment_name: str | None = _UNSET,
        electricitymaps_api_token: str | None = _UNSET,
        co2_signal_api_token: str | None = _UNSET,
        tracking_mode: str | None = _UNSET,
        log_level: int | str | None = _UNSET,
        on_csv_write: str | None = _UNSET,
        logger_preamble: str | None = _UNSET,
        force_cpu_power: float | None = _UNSET,
        force_ram_power: float | None = _UNSET,
        pue: float | None = _UNSET,
        wue: float | None = _UNSET,
        force_carbon_intensity_g_co2e_kwh: float | None = _UNSET,
        force_mode_cpu_load: bool | None = _UNSET,
        allow_multiple_runs: bool | None = _UNSET,
        rapl_include_dram: bool | None = _UNSET,
        rapl_prefer_psys: bool | None = _UNSET,
        metadata: dict[str, Any] | str | None = _UNSET,
        *,
        prometheus_scrape_address: str | int | None = _UNSET,
        components: Sequence[Component] | None = None,
        record_combiner: RecordCombiner | None = None,
        writes_outputs: bool = True,
        **extra: Any,
    ) -> None:
        # by name, so a reader (or a tool) can follow each parameter into resolve_config
        # fmt: off
        arguments: dict[str, Any] = {
            "project_name": project_name, "measure_power_secs": measure_power_secs,
            "api_call_interval": api_call_interval, "api_endpoint": api_endpoint,
            "api_key": api_key, "output_dir": output_dir, "output_file": output_file,
            "output_methods": output_methods, "save_to_file": save_to_file,
            "save_to_api": save_to_api, "save_to_logger": save_to_logger,
            "logging_logger": logging_logger, "save_to_prometheus": save_to_prometheus,
            "save_to_logfire": save_to_logfire, "prometheus_url": prometheus_url,
            "output_handlers": output_handlers, "gpu_ids": gpu_ids,
            "emissions_endpoint": emissions_endpoint, "experiment_id": experiment_id,
            "experiment_name": experiment_name,
            "electricitymaps_api_token": electricitymaps_api_token,
            "co2_signal_api_token": co2_signal_api_token, "tracking_mode": tracking_mode,
            "log_level": log_level, "on_csv_write": on_csv_write,
            "logger_preamble": logger_preamble, "force_cpu_power": force_cpu_power,
            "force_ram_power": force_ram_power, "pue": pue, "wue": wue,
            "force_carbon_intensity_g_co2e_kwh": force_carbon_intensity_g_co2e_kwh,
            "force_mode_cpu_load": force_mode_cpu_load, "allow_multiple_runs": allow_multiple_runs,
            "rapl_include_dram": rapl_include_dram, "rapl_prefer_psys": rapl_prefer_psys,
            "metadata": metadata, "prometheus_scrape_address": prometheus_scrape_address,
        }
        # fmt: on
        arguments.update(extra)
        self._setup(
            # unknown CODECARBON_* names: warned on the writing rank only
            resolve_config(
                arguments, offline=self._offline, user_warning=None if writes_outputs else False
            ),
            components=components,
            record_combiner=record_combiner,
            writes_outputs=writes_outputs,
        )

    @classmethod
    def from_config(
        cls,
        config: TrackerConfig,
        *,
        prometheus_scrape_address: str | int | None = _UNSET,
        components: Sequence[Component] | None = None,
        record_combiner: RecordCombiner | None = None,
        writes_outputs: bool = True,
    ) -> BaseEmissionsTracker:
        """A tracker from an already resolved configuration (nothing is read or resolved again).

        Args:
            config: from :func:`resolve_tracker_config` (or ``resolve_config``).
            components: hardware components to measure instead of detecting them.
            record_combiner: distributed runs: combines this rank's record with the other
                ranks' (a collective every rank reaches); called with ``collective=False`` in
                failure paths, where it must not block.
            writes_outputs: False on ranks other than global rank zero: they measure, write
                nothing and build no outputs.

        Raises:
            ConfigError: the location is unknown, or missing for the offline tracker.
        """
        tracker = cls.__new__(cls)
        tracker._setup(
            config,
            components=components,
            record_combiner=record_combiner,
            writes_outputs=writes_outputs,
        )
        return tracker

    def _setup(
        self,
        config: TrackerConfig,
        *,
        components: Sequence[Component] | None,
        record_combiner: RecordCombiner | None,
        writes_outputs: bool,
    ) -> None:
        self.config: TrackerConfig = config
        self._record_combiner = record_combiner
        self._writes_outputs = bool(writes_outputs)
        self._log = TrackerLog(logger, logging.getLevelName(self.config.log_level.upper()))
        self._init_location()
        self._injected_components = list(components) if components is not None else None
        self.metadata: dict[str, Any] = dict(self.config.metadata)
        self.components: list[Component] = []
        self._gpu_components: list[Component] = []
        self.hardware_notes: list[str] = []
        self.run_id: str = str(uuid.uuid4())
        self.final_emissions: float | None = None
        self.final_emissions_data: EmissionsData | None = None
        self._lock = threading.RLock()
        # a DataLoader worker may be forked while the sampler writes windows under this lock
        _forksafe.track(self, threading.RLock)
        #: set while stop() runs: the sampler's live update and a nested stop() step aside
        self._stopping = False
        self._meter: Meter | None = None
        self._edge_totals: LastOf[EmissionsData] = LastOf()  # totals(at_last_edge=True)
        self._edge_figures: LastOf[Figures] = LastOf()  # run_figures()
        self._outputs = OutputFanout([])
        self._run_start: Snapshot | None = None
        self._last_flush: Snapshot | None = None
        self._live_ticks = 0
        self._windows: dict[str, OpenWindow] = {}
        self._window_count = 0
        self._later: list[ClosedWindow] = []  # switch_window_later(), not built yet
        self._built: list[WindowRecord] = []  # built, not collected yet (collect_windows())
        self._collectable: dict[str, ClosedWindow] = {}
        self._recent_figures: dict[str, Figures] = {}
        self._tasks: dict[str, EmissionsData] = {}
        self._active_task: str | None = None
        #: a resumed run's totals when it resumed (state_dict figures), else None
        self._resumed: EmissionsData | None = None
        self._restored_run_id: str | None = None
        self._static: dict[str, Any] = {}
        self._lookup: LocationLookup | None = None
        self._started_before = False
        self._single_run_fd: int | None = None
        self._ram_usage = RamUsage(self.config.tracking_mode)

    # -- distributed runs ------------------------------------------------------------------

    @property
    def record_combiner(self) -> RecordCombiner | None:
        """Combines this rank's records with the other ranks' (distributed runs), or None."""
        return self._record_combiner

    @property
    def writes_outputs(self) -> bool:
        """False on ranks other than global rank zero: they measure but write nothing, and
        issue no ``CodeCarbonCallbacksWarning`` (they still log)."""
        return self._writes_outputs

    @property
    def _windows_consumed(self) -> bool:
        """Whether an output writes this tracker's window records (then windows closed later are
        built within a second, see switch_window_later())."""
        return self._writes_outputs and bool(self._outputs.outputs)

    @property
    def _user_warning(self) -> type[CodeCarbonCallbacksWarning] | None:
        """The category of what the user must act on, on the writing rank only (see warn_once)."""
        return CodeCarbonCallbacksWarning if self._writes_outputs else None

    def set_distributed_hooks(
        self, record_combiner: RecordCombiner | None, writes_outputs: bool
    ) -> tuple[RecordCombiner | None, bool]:
        """Join a distributed run with a tracker built elsewhere; returns the previous hooks.

        A tracker built with ``from_config`` gets them at construction; this is for a tracker
        the user built and handed to a callback. Takes effect for the records written from now
        on; outputs are built at start(), so call it before start() on a non-writing rank.
        """
        with self._lock:
            previous = (self._record_combiner, self._writes_outputs)
            self._record_combiner = record_combiner
            self._writes_outputs = bool(writes_outputs)
            if self.is_running:
                process_end.set_plain(self, self.is_plain)
            return previous

    @property
    def is_plain(self) -> bool:
        """True for a tracker the user starts and stops itself; False when a framework callback
        drives it (it has a ``record_combiner``).

        A plain tracker writes its run row at SIGTERM (``interrupted``) and at an uncaught
        exception (``failed``); a driven one leaves both to the framework's hooks. See
        :mod:`codecarbon_callbacks_core.process_end`.
        """
        return self._record_combiner is None

    # -- life cycle --------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        return self._meter is not None and self._meter.running

    def start(self) -> None:
        """Start measuring. A start() after stop() begins a new run with a new run_id.

        Raises:
            ConfigError: ``gpu_ids`` names a GPU that is not visible (the message lists the
                visible ones); nothing is started.
        """
        with self._lock:
            if self.is_running:
                self._log.warning(
                    "tracker already started; start() ignored (run_id %s)", self.run_id
                )
                return
            if not self.config.allow_multiple_runs and not self._acquire_single_run_lock():
                self._log.error(
                    "another tracker with allow_multiple_runs=False is running on this machine "
                    "(lock %s held); this one does not start",
                    single_run_lock_path(),
                )
                return
            if self._started_before and self._restored_run_id is None:
                self.run_id = str(uuid.uuid4())
                self._resumed = None
            self._restored_run_id = None
            self._started_before = True
            self.final_emissions = None
            self.final_emissions_data = None
            self._windows.clear()
            self._later.clear()
            self._built.clear()
            self._collectable.clear()
            self._recent_figures.clear()
            self._tasks.clear()
            self._active_task = None
            self._window_count = 0
            self._live_ticks = 1  # start() is a measurement towards api_call_interval (CodeCarbon)
            try:
                # raises ConfigError for gpu_ids that match no visible GPU: before any step
                self.components = self._detect()
            except BaseException:
                self._release_single_run_lock()
                raise
            self._static = static_info(self.components)
            self._gpu_components = [c for c in self.components if c.kind == "gpu"]
            self._start_location_lookup()
            # A tracker that writes nothing (a distributed run's ranks other than zero) builds
            # no outputs: no exit-time cleanup, no spool re-sends, no connections from N ranks.
            self._outputs = (
                OutputFanout.from_config(self.config) if self._writes_outputs else OutputFanout([])
            )
            self._outputs.begin_run(self.run_id, resumed_from=self._resumed)
            self._meter = Meter(
                self.components,
                live_interval_s=self.config.measure_power_secs,
                on_live=self._on_live,
                on_tick=self._build_due,
                thread_name=self.thread_name("sampler"),
            )
            self._run_start = self._meter.start()
            self._last_flush = self._run_start
            process_end.register(self, plain=self.is_plain)

    def thread_name(self, role: str) -> str:
        """The name of a thread this tracker starts for itself: ``codecarbon-callbacks-<role>-``
        and the first 8 characters of the run_id (process-wide workers have no run in theirs)."""
        return f"codecarbon-callbacks-{role}-{self.run_id[:8]}"

    def _detect(self) -> list[Component]:
        if self._injected_components is not None:
            return list(self._injected_components)
        from codecarbon_callbacks_core.hardware import detect_for_config, report_notes

        components, notes = detect_for_config(self.config)
        self.hardware_notes = list(notes)
        # once per process: every tracker would say the same
        report_notes(notes, log=self._log, user_warning=self._writes_outputs)
        return components

    def add_output(self, handler: BaseOutput) -> None:
        """Add an output to a running (or not yet started) tracker."""
        self.config.output_handlers.append(handler)
        if self.is_running and self._writes_outputs:
            self._outputs.add(handler)

    def stop(
        self,
        *,
        status: str | None = None,
        window_status: str | None = None,
        timeout_s: float | None = None,
    ) -> float | None:
        """Stop measuring, write the run's record everywhere; returns its emissions in kg CO2eq.

        Windows still open are closed at the run's own final edge (so windows that tile the run
        sum exactly to it).

        stop() returns within ``timeout_s`` (default :data:`STOP_TIMEOUT_S`, 15 s), whatever
        the hardware and the outputs do: this bound wins over every output's own timeout. The
        outputs' final calls (the last windows, the run row, ``task_out``, ``exit``) run on a
        helper thread named ``codecarbon-callbacks-stop-<run>`` that stop() waits for; the
        sampler, then the online tracker's location lookup
        (``codecarbon-callbacks-location-lookup-<run>``), are joined with what is left. No lock is
        held while waiting. A thread still busy at the bound (stuck in a hardware or network
        call, which Python cannot interrupt) is reported once and left behind as a daemon,
        finishing its writes if it can. The returned figure and ``final_emissions_data`` are
        computed before the outputs run, so they are exact even then.

        Args:
            status: the run's status ("completed" by default; "failed", "interrupted",
                "budget_stop", "incomplete" where the caller knows better).
            window_status: the status of windows still open: by default "incomplete" when the
                run completed (nobody closed them), else the run's status. A caller that leaves
                its last window open on purpose passes "completed".
            timeout_s: the most stop() may take, in seconds.
        """
        budget_s = STOP_TIMEOUT_S if timeout_s is None else max(0.0, float(timeout_s))
        deadline = time.monotonic() + budget_s
        if not self._lock.acquire(timeout=budget_s):
            warn_once(
                "stop-lock-busy",
                "stop(): the tracker stayed busy for %.1f s; run %s is not stopped",
                budget_s,
                self.run_id,
                log=self._log,
            )
            return self.final_emissions
        try:
            meter = self._meter
            if meter is None or not meter.running or self._stopping:
                if self.final_emissions_data is None and not self._stopping:
                    self._log.warning("stop() called on a tracker that was not started")
                return self.final_emissions
            self._stopping = True
        finally:
            self._lock.release()
        try:
            # No lock is held while joining: the sampler's live update may be waiting for the
            # lock (it then steps aside), and a stuck thread must not hold up the others.
            end = meter.stop(timeout_s=min(SAMPLER_JOIN_TIMEOUT_S, left(deadline)))
            locked = self._lock.acquire(timeout=left(deadline))
            try:  # past the bound without the lock: a stuck live output holds it, go on
                write, emissions = self._final_records(end, status or "completed", window_status)
            finally:
                if locked:
                    self._lock.release()
            run_bounded(
                write,
                deadline,
                thread_name=self.thread_name("stop"),
                run_id=self.run_id,
                log=self._log,
                category=self._user_warning,
                inline=not self._outputs.outputs,
            )
            if self._lookup is not None:  # its thread ends, within what is left of the bound
                self._lookup.stop(timeout_s=left(deadline))
            process_end.unregister(self)
            self._release_single_run_lock()
            return emissions
        finally:
            self._stopping = False

    def _final_records(
        self, end: Snapshot, status: str, window_status: str | None
    ) -> tuple[Callable[[], None], float]:
        """stop()'s records at its final edge; returns what writes them, and the emissions."""
        if window_status is None:
            window_status = "incomplete" if status == "completed" else status
        # A budget stop is a normal end every rank reaches (the decision is taken on combined
        # figures); failures, interrupts and exit-time stops must not wait for other ranks.
        collective = status in COLLECTIVE_STOP_STATUSES
        windows = [self._windows.pop(window_id) for window_id in list(self._windows)]
        # combined here, on the caller's thread: a combiner's collectives belong to it; the
        # windows closed earlier and not built yet first, in the order they closed. Where no
        # output writes them, those kept for collect_windows() are built when collected (a
        # fit's windows at its end: milliseconds for a record nobody may read), the others never.
        if self._windows_consumed:
            records = self._build_later(collective, publish=False)
        else:
            self._later = [closed for closed in self._later if closed.collect]
            records = []
        records += [
            cast(
                WindowRecord,
                self._combine(self._window_record(window, end, status=window_status), collective),
            )
            for window in windows
        ]
        total = self._combine(self._run_record(end, status=status), collective=collective)
        self.final_emissions_data = total
        self.final_emissions = total.emissions
        tasks = list(self._tasks.values())
        outputs, writes = self._outputs, self._writes_outputs
        experiment_name = self.config.experiment_name
        live = live_due(self._live_ticks + 1, self.config.api_call_interval)  # stop() counts

        def write() -> None:
            if writes:
                for record in records:
                    outputs.window_out(record)
                if live:
                    outputs.live_out(total)
                outputs.out(total)
                if tasks:
                    outputs.task_out(tasks, experiment_name)
            outputs.exit()

        return write, total.emissions

    def _acquire_single_run_lock(self) -> bool:
        """CodeCarbon's allow_multiple_runs=False: one such tracker per machine at a time."""
        acquired, self._single_run_fd = acquire_single_run_lock()
        return acquired

    def _release_single_run_lock(self) -> None:
        fd, self._single_run_fd = self._single_run_fd, None
        release_single_run_lock(fd)

    def flush(self) -> float | None:
        """Write the run's totals so far to every output (a flush window too); keep measuring."""
        with self._lock:
            meter = self._meter
            if meter is None or not meter.running:
                self._log.warning("flush() called on a tracker that is not running")
                return None
            assert self._last_flush is not None
            end = meter.snapshot()
            window = self._window_record(
                OpenWindow(
                    self._new_window_id(), "flush", "flush", None, "other", self._last_flush, {}
                ),
                end,
                status="completed",
            )
            self._last_flush = end
            self._publish_window(window)
            total = self._combine(self._run_record(end, status="running"))
            if self._writes_outputs:
                self._flush_outputs(total)
            return total.emissions

    def _combine(self, record: EmissionsData, collective: bool = True) -> EmissionsData:
        if self._record_combiner is None:
            return record
        try:
            return self._record_combiner(record, collective)
        except Exception as e:  # a failed collective must not lose this rank's record
            self._log.warning("combining ranks' records failed; writing this rank's own: %s", e)
            record.metadata["distributed_error"] = str(e)
            return record

    def _on_live(self, snapshot: Snapshot) -> None:
        """Sampler thread, every measure_power_secs: live deltas every api_call_interval ticks."""
        self._live_ticks += 1
        if not live_due(self._live_ticks, self.config.api_call_interval):
            return
        with self._lock:
            if self._stopping or not self.is_running:
                return  # stop() is joining this thread: it writes the final figures itself
            total = self._run_record(snapshot, status="running")
            if self._writes_outputs:
                self._outputs.live_out(total)

    def __enter__(self) -> BaseEmissionsTracker:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, tb: Any) -> None:
        if exc_type is None:
            status = "completed"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "interrupted"
        else:
            status = "failed"
        self.stop(status=status)

    # -- records -----------------------------------------------------------------------------

    def totals(self, *, at_last_edge: bool = False) -> EmissionsData:
        """The run's totals so far (nothing is written).

        Args:
            at_last_edge: the figures as of the latest window edge (right after closing a
                window, its end), reading no hardware (a GPU read costs milliseconds) and
                describing no component: utilisations 0, metadata empty (an epoch's end).
                Asked again at the same edge, the same record is returned: do not change it.
        """
        with self._lock:
            if self._meter is None or not self._meter.running:
                if self.final_emissions_data is not None:
                    return self.final_emissions_data
                raise RuntimeError("totals() needs a started tracker")
            edge = self._meter.last_edge if at_last_edge else None
            if edge is None:
                return self._run_record(self._meter.snapshot(sync_cuda=False), status="running")
            # the same edge asked twice (a validation end, then its epoch's end): built once
            return self._edge_totals.get(
                (edge, self._current_intensity(), self._resumed, self.run_id),
                lambda: self._run_record(edge, status="running", lean=True),
            )

    def run_figures(self, *, at_last_edge: bool = False) -> Figures:
        """The run's figures so far: :meth:`totals`' energies, powers, emissions, water,
        duration and uncertainties (:class:`~codecarbon_callbacks_core._tracker_records.Figures`,
        the record's names and units) without the rest of a record, for a third of its cost:
        what a framework logs at every epoch. After stop(), the final record's.

        Args:
            at_last_edge: as of the latest window edge, reading no hardware; asked again at the
                same edge, the same figures are returned.

        Raises:
            RuntimeError: the tracker was never started.
        """
        with self._lock:
            meter = self._meter
            if meter is None or not meter.running:
                if self.final_emissions_data is not None:
                    return Figures.of(self.final_emissions_data)
                raise RuntimeError("run_figures() needs a started tracker")
            edge = meter.last_edge if at_last_edge else None
            if edge is None:
                edge = meter.snapshot(sync_cuda=False)
            intensity, start, resumed = self._current_intensity(), self._run_start, self._resumed
            assert start is not None
            return self._edge_figures.get(
                (edge, intensity, resumed),
                lambda: self._figures_between(start, edge, intensity, base=resumed),
            )

    def update_metadata(self, mapping: Mapping[str, Any]) -> None:
        """Merge ``mapping`` into the metadata every record carries."""
        self.metadata.update(mapping)

    def _fill(
        self,
        record: EmissionsData,
        start: Snapshot,
        end: Snapshot,
        *,
        resumed: EmissionsData | None = None,
        extra_metadata: Mapping[str, Any] | None = None,
        figures_only: bool = False,
        closed: ClosedWindow | None = None,
    ) -> Figures:
        return fill_record(
            record,
            start,
            end,
            config=self.config,
            run_id=self.run_id,
            intensity=closed.intensity if closed is not None else self._current_intensity(),
            components=self.components,
            static=self._static,
            ram_usage=self._ram_usage,
            metadata=self.metadata if closed is None else closed.metadata,
            run_start=self._run_start,
            window_count=self._window_count if closed is None else closed.count,
            resumed=resumed,
            extra_metadata=extra_metadata,
            figures_only=figures_only,
            gpu_utilization=None if closed is None else closed.gpu_utilization,
            ram=None if closed is None else closed.ram,
        )

    def _run_record(self, end: Snapshot, *, status: str, lean: bool = False) -> EmissionsData:
        assert self._run_start is not None
        record = EmissionsData(status=status)
        self._fill(record, self._run_start, end, resumed=self._resumed, figures_only=lean)
        return record


class EmissionsTracker(BaseEmissionsTracker):
    """The online tracker: the location is looked up in the background when not given.

    The look-up never delays start(); until it answers (or if it fails), the world average
    carbon intensity is used, with a warning. Pass ``country_iso_code`` (or use
    :class:`OfflineEmissionsTracker`) to never touch the network.
    """


class OfflineEmissionsTracker(BaseEmissionsTracker):
    """A tracker that never touches the network: the location must be given.

    Args:
        country_iso_code: ISO 3166 alpha-3 (or alpha-2) code, e.g. "FRA".
        region: a sub-national region (US state, Canadian province), e.g. "CA" or "quebec".
        cloud_provider: "aws", "azure" or "gcp", with cloud_region, e.g. "us-east-1".
        country_2letter_iso_code: ISO alpha-2 code, an alternative to country_iso_code.
    """

    _offline = True

    def __init__(
        self,
        *args: Any,
        country_iso_code: str | None = _UNSET,
        region: str | None = _UNSET,
        cloud_provider: str | None = _UNSET,
        cloud_region: str | None = _UNSET,
        country_2letter_iso_code: str | None = _UNSET,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            *args,
            country_iso_code=country_iso_code,
            region=region,
            cloud_provider=cloud_provider,
            cloud_region=cloud_region,
            country_2letter_iso_code=country_2letter_iso_code,
            **kwargs,
        )


def track_emissions(
    fn: F | None = None,
    *,
    offline: bool = False,
    **tracker_kwargs: Any,
) -> Any:
    """Decorator: track a function's emissions (CodeCarbon's ``@track_emissions``).

    Example:
        >>> @track_emissions(offline=True, country_iso_code="FRA", output_methods=[])
        ... def train():
        ...     return 42
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            cls = OfflineEmissionsTracker if offline else EmissionsTracker
            tracker = cls(**tracker_kwargs)
            tracker.start()
            status = "failed"
            try:
                result = func(*args, **kwargs)
                status = "completed"
                return result
            except KeyboardInterrupt:
                status = "interrupted"
                raise
            finally:
                tracker.stop(status=status)

        return wrapper  # type: ignore[return-value]

    if fn is not None:
        return decorate(fn)
    return decorate


__all__ = [
    "BaseEmissionsTracker",
    "RecordCombiner",
    "resolve_location",
    "resolve_tracker_config",
    "EmissionsTracker",
    "OfflineEmissionsTracker",
    "track_emissions",
    "ConfigError",
]

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
import os
import platform
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, cast

from codecarbon_callbacks_core import process_end
from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core._version import __version__
from codecarbon_callbacks_core.config import _UNSET, TrackerConfig, resolve_config
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning, ConfigError
from codecarbon_callbacks_core.hardware.base import Component
from codecarbon_callbacks_core.meter import SAMPLER_JOIN_TIMEOUT_S, Meter, Snapshot
from codecarbon_callbacks_core.output.base import BaseOutput, OutputMethod
from codecarbon_callbacks_core.output.fanout import OutputFanout
from codecarbon_callbacks_core.records import (
    PHASES,
    STATE_KEYS,
    WINDOW_KINDS,
    EmissionsData,
    WindowRecord,
    totals_from_state,
)

logger = logging.getLogger(__name__)

J_PER_KWH = 3.6e6
_ZERO = EmissionsData()
KINDS = ("cpu", "gpu", "ram")
#: the machine's fields of every record, from _static_info() at start()
_STATIC_FIELDS = (
    "os",
    "python_version",
    "cpu_count",
    "cpu_model",
    "gpu_count",
    "gpu_model",
    "ram_total_size",
    "cpu_method",
    "gpu_method",
    "ram_method",
)
#: (kind, its power field, its energy field): the record's names, formatted once
_KIND_FIELDS = tuple((kind, f"{kind}_power", f"{kind}_energy") for kind in KINDS)
STATE_VERSION = 1
#: the most stop() takes by default, in seconds, whatever the hardware and the outputs do
STOP_TIMEOUT_S = 15.0

F = TypeVar("F", bound=Callable[..., Any])
#: combines a rank's record with the other ranks' (record, collective) -> combined record
RecordCombiner = Callable[[EmissionsData, bool], EmissionsData]


@dataclass
class _OpenWindow:
    window_id: str
    kind: str
    name: str
    epoch: int | None
    phase: str
    start: Snapshot
    metadata: dict[str, Any]


#: the latest instants formatted, by identity: an edge's instant is formatted for the window it
#: ends, the record's timestamp, the window it starts and the totals (isoformat: a few us each)
_ISO_RECENT: list[tuple[datetime, str]] = []


def _iso(moment: datetime) -> str:
    for seen, text in _ISO_RECENT:
        if seen is moment:
            return text
    text = moment.isoformat(timespec="microseconds")
    _ISO_RECENT.insert(0, (moment, text))
    del _ISO_RECENT[8:]
    return text


class _TrackerLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """This tracker's diagnostics at its own ``log_level``; the logger's level is left alone."""

    def __init__(self, target: logging.Logger, level: int) -> None:
        super().__init__(target, {})
        self.level = level

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return level >= self.level and self.logger.isEnabledFor(level)


class BaseEmissionsTracker:
    """Measures energy and emissions between start() and stop(), with windows in between.

    The parameters are CodeCarbon 3.3.2's, with its defaults (see the README's table); values not
    given come from ``CODECARBON_*`` environment variables, then ``./.codecarbon.config``, then
    ``~/.codecarbon.config``. A bad value raises :class:`ConfigError` here, naming it.

    Extra keyword arguments of ours: ``windows_output_file``, ``webhook_windows``,
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
        components: Sequence[Component] | None = None,
        record_combiner: RecordCombiner | None = None,
        writes_outputs: bool = True,
        **extra: Any,
    ) -> None:
        # by name, so a reader (or a tool) can follow each parameter into resolve_config
        arguments: dict[str, Any] = {
            "project_name": project_name,
            "measure_power_secs": measure_power_secs,
            "api_call_interval": api_call_interval,
            "api_endpoint": api_endpoint,
            "api_key": api_key,
            "output_dir": output_dir,
            "output_file": output_file,
            "output_methods": output_methods,
            "save_to_file": save_to_file,
            "save_to_api": save_to_api,
            "save_to_logger": save_to_logger,
            "logging_logger": logging_logger,
            "save_to_prometheus": save_to_prometheus,
            "save_to_logfire": save_to_logfire,
            "prometheus_url": prometheus_url,
            "output_handlers": output_handlers,
            "gpu_ids": gpu_ids,
            "emissions_endpoint": emissions_endpoint,
            "experiment_id": experiment_id,
            "experiment_name": experiment_name,
            "electricitymaps_api_token": electricitymaps_api_token,
            "co2_signal_api_token": co2_signal_api_token,
            "tracking_mode": tracking_mode,
            "log_level": log_level,
            "on_csv_write": on_csv_write,
            "logger_preamble": logger_preamble,
            "force_cpu_power": force_cpu_power,
            "force_ram_power": force_ram_power,
            "pue": pue,
            "wue": wue,
            "force_carbon_intensity_g_co2e_kwh": force_carbon_intensity_g_co2e_kwh,
            "force_mode_cpu_load": force_mode_cpu_load,
            "allow_multiple_runs": allow_multiple_runs,
            "rapl_include_dram": rapl_include_dram,
            "rapl_prefer_psys": rapl_prefer_psys,
            "metadata": metadata,
        }
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
        self._log = _TrackerLog(logger, logging.getLevelName(self.config.log_level.upper()))
        self._init_location()
        self._injected_components = list(components) if components is not None else None
        self.metadata: dict[str, Any] = dict(self.config.metadata)
        self.components: list[Component] = []
        self.hardware_notes: list[str] = []
        self.run_id: str = str(uuid.uuid4())
        self.final_emissions: float | None = None
        self.final_emissions_data: EmissionsData | None = None
        self._lock = threading.RLock()
        #: set while stop() runs: the sampler's live update and a nested stop() step aside
        self._stopping = False
        self._meter: Meter | None = None
        self._outputs = OutputFanout([])
        self._run_start: Snapshot | None = None
        self._last_flush: Snapshot | None = None
        self._live_ticks = 0
        self._windows: dict[str, _OpenWindow] = {}
        self._window_count = 0
        self._tasks: dict[str, EmissionsData] = {}
        self._active_task: str | None = None
        #: a resumed run's totals when it resumed (state_dict figures), else None
        self._resumed: EmissionsData | None = None
        self._restored_run_id: str | None = None
        self._static: dict[str, Any] = {}
        self._lookup: Any = None
        self._started_before = False
        self._single_run_fd: int | None = None
        self._ram_cache: tuple[float, float, float] | None = None
        self._constant_cache: tuple[tuple[Any, ...], dict[str, Any]] | None = None

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

    # -- location ----------------------------------------------------------------------------

    def _init_location(self) -> None:
        """Resolve the offline location now (fast, no network), so a bad one fails here."""
        self.intensity: Any = resolve_location(
            self.config, offline=self._offline, user_warning=self._writes_outputs
        )
        self._location_known = self.intensity is not None and _has_location(self.config)

    def _current_intensity(self) -> Any:
        """The intensity to use now: known location, else the background lookup, else world."""
        from codecarbon_callbacks_core.intensity.lookup import resolve_offline

        if self.intensity is not None and (self._location_known or self._lookup is None):
            return self.intensity
        if self._lookup is not None:
            try:
                found = self._lookup.result(timeout_s=0)
            except Exception as e:  # the lookup is best effort
                self._log.debug("location lookup failed: %s", e)
                found = None
            if found is not None:
                self.intensity = found
                self._location_known = True
                return found
        if self.intensity is None:
            # Until the lookup answers: provisional; a lookup that fails, or that could not
            # start, warns the user itself.
            self.intensity = resolve_offline(
                force_carbon_intensity_g_co2e_kwh=self.config.force_carbon_intensity_g_co2e_kwh,
                user_warning=False,
            )
        return self.intensity

    def _start_location_lookup(self) -> None:
        if self._offline or self._location_known or self._lookup is not None:
            return
        try:
            from codecarbon_callbacks_core.intensity.online import LocationLookup

            self._lookup = LocationLookup(
                electricitymaps_api_token=self.config.electricitymaps_api_token,
                force_carbon_intensity_g_co2e_kwh=self.config.force_carbon_intensity_g_co2e_kwh,
                user_warning=self._writes_outputs,
            )
            self._lookup.start()
        except Exception as e:
            warn_once(
                "location-lookup-not-started",
                "could not look the location up (%s); using the world average carbon intensity. "
                "Give country_iso_code to be exact.",
                e,
                log=self._log,
                category=self._user_warning,
            )
            self._lookup = None

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
                    _single_run_lock_path(),
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
            self._tasks.clear()
            self._active_task = None
            self._window_count = 0
            self._live_ticks = 0
            try:
                # raises ConfigError for gpu_ids that match no visible GPU: before any step
                self.components = self._detect()
            except BaseException:
                self._release_single_run_lock()
                raise
            self._static = self._static_info()
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
        sampler is joined with what is left. No lock is held while waiting. A thread still
        busy at the bound (stuck in a hardware or network call, which Python cannot interrupt)
        is reported once and left behind as a daemon, finishing its writes if it can. The
        returned figure and ``final_emissions_data`` are computed before the outputs run, so
        they are exact even then.

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
            end = meter.stop(timeout_s=min(SAMPLER_JOIN_TIMEOUT_S, _left(deadline)))
            locked = self._lock.acquire(timeout=_left(deadline))
            try:  # past the bound without the lock: a stuck live output holds it, go on
                write, emissions = self._final_records(end, status or "completed", window_status)
            finally:
                if locked:
                    self._lock.release()
            if self._outputs.outputs:
                self._run_bounded(write, deadline)
            else:  # nothing to write: no helper thread to start and join (fit's last hook)
                write()
            if self._lookup is not None:
                stop_lookup = getattr(self._lookup, "stop", None)
                if stop_lookup:
                    stop_lookup()
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
        collective = status in _COLLECTIVE_STOP_STATUSES
        windows = [self._windows.pop(window_id) for window_id in list(self._windows)]
        # combined here, on the caller's thread: a combiner's collectives belong to it
        records = [
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

        def write() -> None:
            if writes:
                for record in records:
                    outputs.window_out(record)
                outputs.out(total)
                if tasks:
                    outputs.task_out(tasks, experiment_name)
            outputs.exit()

        return write, total.emissions

    def _run_bounded(self, work: Callable[[], None], deadline: float) -> None:
        """Run ``work`` on a helper thread of this tracker; wait for it until ``deadline``."""

        def guarded() -> None:
            try:
                work()
            except Exception as e:  # the fan-out guards each output; this guards the rest
                self._log.warning("writing the run's final records failed: %s", e)

        thread = threading.Thread(target=guarded, name=self.thread_name("stop"), daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutdown: no new thread, write here
            guarded()
            return
        thread.join(_left(deadline))
        if thread.is_alive():
            warn_once(
                "stop-bound-reached",
                "stop() reached its time bound: run %s's final records are still being written "
                "by thread %s, left behind as a daemon (an output stuck in a network or disk "
                "call?)",
                self.run_id,
                thread.name,
                log=self._log,
                category=self._user_warning,
            )

    def _acquire_single_run_lock(self) -> bool:
        """CodeCarbon's allow_multiple_runs=False: one such tracker per machine at a time."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no cross-process lock on Windows
            return True
        fd = os.open(_single_run_lock_path(), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._single_run_fd = fd
        return True

    def _release_single_run_lock(self) -> None:
        fd = self._single_run_fd
        if fd is not None:
            self._single_run_fd = None
            os.close(fd)  # closing the descriptor releases the flock

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
                _OpenWindow(
                    self._new_window_id(), "flush", "flush", None, "other", self._last_flush, {}
                ),
                end,
                status="completed",
            )
            self._last_flush = end
            self._publish_window(window)
            total = self._combine(self._run_record(end, status="running"))
            if self._writes_outputs:
                self._outputs.out(total)
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

    def _publish_window(self, record: WindowRecord, collective: bool = True) -> WindowRecord:
        # a combiner keeps the record's type: windows combine into windows
        combined = cast(WindowRecord, self._combine(record, collective))
        if self._writes_outputs:
            self._outputs.window_out(combined)
        return combined

    def _on_live(self, snapshot: Snapshot) -> None:
        """Sampler thread, every measure_power_secs: live deltas every api_call_interval ticks."""
        self._live_ticks += 1
        if self._live_ticks % self.config.api_call_interval != 0:
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

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            status = "completed"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "interrupted"
        else:
            status = "failed"
        self.stop(status=status)

    # -- windows -----------------------------------------------------------------------------

    def _new_window_id(self) -> str:
        # uuid.uuid4()'s text, without the UUID object (half the cost, at every window edge)
        b = bytearray(os.urandom(16))
        b[6] = (b[6] & 0x0F) | 0x40  # version 4
        b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
        h = b.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def open_window(
        self,
        kind: str,
        name: str = "",
        *,
        epoch: int | None = None,
        phase: str = "other",
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Open a window (an epoch, phase, task...) now; returns its id for close_window()."""
        if kind not in WINDOW_KINDS:
            raise ValueError(f"kind must be one of {', '.join(WINDOW_KINDS)}, got {kind!r}")
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
        with self._lock:
            meter = self._meter
            if meter is None or not meter.running:
                raise RuntimeError("open_window() needs a started tracker: call start() first")
            window = _OpenWindow(
                self._new_window_id(),
                kind,
                name,
                epoch,
                phase,
                meter.snapshot(),
                dict(metadata or {}),
            )
            self._windows[window.window_id] = window
            return window.window_id

    def close_window(
        self,
        window_id: str,
        *,
        status: str = "completed",
        metadata: Mapping[str, Any] | None = None,
    ) -> WindowRecord:
        """Close a window now: its record goes to every output's window_out and is returned."""
        return self._close(window_id, status, metadata, collective=True)

    def _close(
        self,
        window_id: str,
        status: str,
        metadata: Mapping[str, Any] | None,
        *,
        collective: bool,
        at: Snapshot | None = None,
    ) -> WindowRecord:
        with self._lock:
            window = self._windows.pop(window_id, None)
            if window is None:
                raise KeyError(f"no open window with id {window_id!r}")
            assert self._meter is not None
            end = at if at is not None else self._meter.snapshot()
            if metadata:
                window.metadata.update(metadata)
            record = self._window_record(window, end, status=status)
            return self._publish_window(record, collective)

    def switch_window(
        self,
        window_id: str,
        kind: str,
        name: str = "",
        *,
        epoch: int | None = None,
        phase: str = "other",
        status: str = "completed",
        metadata: Mapping[str, Any] | None = None,
    ) -> tuple[WindowRecord, str]:
        """Close ``window_id`` and open the next window at the same instant (one meter read).

        Windows switched this way tile time exactly: their energies sum to the span's energy.
        Returns the closed window's record and the new window's id.
        """
        if kind not in WINDOW_KINDS:
            raise ValueError(f"kind must be one of {', '.join(WINDOW_KINDS)}, got {kind!r}")
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
        with self._lock:
            window = self._windows.pop(window_id, None)
            if window is None:
                raise KeyError(f"no open window with id {window_id!r}")
            assert self._meter is not None
            edge = self._meter.snapshot()
            record = self._window_record(window, edge, status=status)
            new = _OpenWindow(
                self._new_window_id(), kind, name, epoch, phase, edge, dict(metadata or {})
            )
            self._windows[new.window_id] = new
        return self._publish_window(record), new.window_id

    @property
    def open_windows(self) -> list[str]:
        return list(self._windows)

    def start_task(self, task_name: str | None = None) -> None:
        """CodeCarbon's tasks: a named window. Measuring goes on around it."""
        if not self.is_running:
            self.start()
        name = task_name or str(uuid.uuid4())
        if self._active_task is not None:
            self._log.warning("task %r is still running; stopping it first", self._active_task)
            self.stop_task()
        self._active_task = self.open_window("task", name)

    def stop_task(self, task_name: str | None = None) -> EmissionsData:
        """Stop the current task; returns its record (a WindowRecord, an EmissionsData)."""
        if self._active_task is None:
            raise RuntimeError("stop_task() without a running task: call start_task() first")
        window_id, self._active_task = self._active_task, None
        record = self.close_window(window_id)
        self._tasks[record.name] = record
        return record

    # -- records -----------------------------------------------------------------------------

    def totals(self, *, at_last_edge: bool = False) -> EmissionsData:
        """The run's totals so far (nothing is written).

        Args:
            at_last_edge: the totals as of the latest window edge, without reading the hardware
                again (a GPU counter read costs milliseconds): right after closing a window,
                the same instant as that window's end.
        """
        with self._lock:
            if self._meter is None or not self._meter.running:
                if self.final_emissions_data is not None:
                    return self.final_emissions_data
                raise RuntimeError("totals() needs a started tracker")
            edge = self._meter.last_edge if at_last_edge else None
            if edge is None:
                edge = self._meter.snapshot(sync_cuda=False)
            return self._run_record(edge, status="running")

    def update_metadata(self, mapping: Mapping[str, Any]) -> None:
        """Merge ``mapping`` into the metadata every record carries."""
        self.metadata.update(mapping)

    def _static_info(self) -> dict[str, Any]:
        from codecarbon_callbacks_core.system import logical_cpu_count, total_ram_bytes

        cpus = [c for c in self.components if c.kind == "cpu"]
        gpus = [c for c in self.components if c.kind == "gpu"]
        rams = [c for c in self.components if c.kind == "ram"]

        def methods(items: list[Component]) -> str:
            return ",".join(sorted({c.method.value for c in items}))

        gpu_models = sorted({c.model for c in gpus})
        return {
            "os": platform.platform(),
            "python_version": platform.python_version(),
            "cpu_count": logical_cpu_count(),
            "cpu_model": cpus[0].model if cpus else platform.processor(),
            "gpu_count": len(gpus),
            "gpu_model": (
                f"{len(gpus)} x {gpu_models[0]}" if len(gpu_models) == 1 else ", ".join(gpu_models)
            ),
            "ram_total_size": round(total_ram_bytes() / 1024**3, 3),
            "cpu_method": methods(cpus),
            "gpu_method": methods(gpus),
            "ram_method": methods(rams),
        }

    def _energy_kwh(
        self, start: Snapshot, end: Snapshot
    ) -> tuple[dict[str, float], list[dict[str, Any]]]:
        per_kind = dict.fromkeys(KINDS, 0.0)
        breakdown = []
        for c in self.components:
            joules = max(0.0, end.energy_j.get(c.name, 0.0) - start.energy_j.get(c.name, 0.0))
            per_kind[c.kind] = per_kind.get(c.kind, 0.0) + joules / J_PER_KWH
            item = c.describe()
            item["energy_kwh"] = joules / J_PER_KWH
            breakdown.append(item)
        return per_kind, breakdown

    def _fill(
        self,
        record: EmissionsData,
        start: Snapshot,
        end: Snapshot,
        *,
        resumed: EmissionsData | None = None,
        extra_metadata: Mapping[str, Any] | None = None,
    ) -> None:
        cfg = self.config
        intensity = self._current_intensity()
        per_kind, breakdown = self._energy_kwh(start, end)
        duration = max(0.0, end.monotonic_s - start.monotonic_s)
        base = resumed if resumed is not None else _ZERO
        record.timestamp = _iso(end.wall_time)
        vars(record).update(self._constant_fields(intensity))
        for kind, power_name, energy_name in _KIND_FIELDS:
            setattr(
                record, power_name, per_kind[kind] * J_PER_KWH / duration if duration > 0 else 0.0
            )
            setattr(record, energy_name, per_kind[kind] + getattr(base, energy_name))
        new_energy = sum(per_kind.values())
        record.energy_consumed = record.cpu_energy + record.gpu_energy + record.ram_energy
        record.duration = duration + base.duration
        record.emissions = new_energy * cfg.pue * intensity.g_per_kwh / 1000.0 + base.emissions
        record.emissions_rate = record.emissions / record.duration if record.duration > 0 else 0.0
        record.water_consumed = new_energy * cfg.wue + base.water_consumed
        busy = end.cpu_times_s[0] - start.cpu_times_s[0]
        total_cpu = end.cpu_times_s[1] - start.cpu_times_s[1]
        record.cpu_utilization_percent = (
            round(100.0 * busy / total_cpu, 2) if total_cpu > 0 else 0.0
        )
        gpu_utils = [
            u
            for c in self.components
            if c.kind == "gpu"
            if (u := c.utilization_percent()) is not None
        ]
        record.gpu_utilization_percent = sum(gpu_utils) / len(gpu_utils) if gpu_utils else 0.0
        record.ram_utilization_percent, record.ram_used_gb = self._ram_usage(end.monotonic_s)
        metadata = dict(self.metadata)
        metadata["components"] = breakdown
        metadata["run_start_timestamp"] = _iso(self._run_start.wall_time) if self._run_start else ""
        metadata["window_count"] = self._window_count
        if extra_metadata:
            metadata.update(extra_metadata)
        record.metadata = metadata

    def _constant_fields(self, intensity: Any) -> dict[str, Any]:
        """The fields every record of the run shares: its identity, configuration, location and
        machine. Built again only when one of them changes (a record is filled at every window
        edge: one dict update instead of ~30 attribute writes)."""
        cfg = self.config
        key = (
            self.run_id,
            intensity,
            self._static,
            cfg.project_name,
            cfg.experiment_id,
            cfg.tracking_mode,
            cfg.pue,
            cfg.wue,
        )
        cached = self._constant_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        fields: dict[str, Any] = {
            "project_name": cfg.project_name,
            "run_id": self.run_id,
            "experiment_id": cfg.experiment_id,
            "country_name": intensity.country_name or "",
            "country_iso_code": intensity.country_iso_code or "",
            "region": intensity.region or "",
            "cloud_provider": intensity.cloud_provider or "",
            "cloud_region": intensity.cloud_region or "",
            "on_cloud": "Y" if intensity.cloud_provider else "N",
        }
        # the machine's fields known at start() (before it, each record keeps its defaults)
        fields.update((k, v) for k, v in self._static.items() if k in _STATIC_FIELDS)
        fields.update(
            codecarbon_version=__version__,
            tracker_version=__version__,
            tracking_mode=cfg.tracking_mode,
            pue=cfg.pue,
            wue=cfg.wue,
            carbon_intensity_g_per_kwh=intensity.g_per_kwh,
            carbon_intensity_source=intensity.source,
        )
        self._constant_cache = (key, fields)
        return fields

    def _ram_usage(self, now_s: float) -> tuple[float, float]:
        """(utilisation %, used GB), read at most once a second: epochs can be milliseconds."""
        cached = self._ram_cache
        if cached is not None and now_s - cached[0] < 1.0:
            return cached[1], cached[2]
        from codecarbon_callbacks_core.system import memory_used_bytes, process_rss_bytes

        try:
            machine_used, total = memory_used_bytes()
            used = process_rss_bytes() if self.config.tracking_mode == "process" else machine_used
            figures = (
                round(100.0 * machine_used / total, 1) if total else 0.0,
                round(used / 1024**3, 3),
            )
        except Exception:  # pragma: no cover - a failed reading is not worth a crash
            figures = (0.0, 0.0)
        self._ram_cache = (now_s, *figures)
        return figures

    def _run_record(self, end: Snapshot, *, status: str) -> EmissionsData:
        assert self._run_start is not None
        record = EmissionsData(status=status)
        self._fill(record, self._run_start, end, resumed=self._resumed)
        return record

    def _window_record(self, window: _OpenWindow, end: Snapshot, *, status: str) -> WindowRecord:
        self._window_count += 1
        record = WindowRecord(
            status=status,
            window_id=window.window_id,
            kind=window.kind,
            name=window.name,
            epoch=window.epoch,
            phase=window.phase,
            start_timestamp=_iso(window.start.wall_time),
            end_timestamp=_iso(end.wall_time),
        )
        self._fill(record, window.start, end, extra_metadata=window.metadata)
        return record

    # -- resume ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The run's identity and cumulative figures, as plain JSON-able numbers and ids."""
        if self.is_running:
            total = self.totals()
        elif self.final_emissions_data is not None:
            total = self.final_emissions_data
        else:
            total = (
                self._resumed if self._resumed is not None else EmissionsData(run_id=self.run_id)
            )
        return {
            "version": STATE_VERSION,
            "run_id": self.run_id,
            **{key: getattr(total, name) for key, name in STATE_KEYS.items()},
            "window_count": int(total.metadata.get("window_count", 0)) if total.metadata else 0,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue a run saved by state_dict(): same run_id, its totals added to ours.

        Call it before start(), or right after start() before any window closes.
        """
        try:
            run_id = str(state["run_id"])
            resumed = totals_from_state(
                {key: float(state.get(key, 0.0)) for key in STATE_KEYS}, run_id=run_id
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"state: not a tracker state_dict ({e})") from None
        with self._lock:
            self.run_id = run_id
            self._resumed = resumed
            self._restored_run_id = run_id


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


def _has_location(config: TrackerConfig) -> bool:
    """Whether the configuration names a location (a country or a cloud provider)."""
    return bool(config.country_iso_code or config.country_2letter_iso_code or config.cloud_provider)


def resolve_location(config: TrackerConfig, *, offline: bool, user_warning: bool = True) -> Any:
    """The carbon intensity of the configured location, from the bundled tables (no network).

    Returns an ``IntensityResult``, or None when no location is given and the online tracker
    will look it up. A country without a figure gets the world average, with a warning
    (``user_warning=False``: logged only, not issued as a ``CodeCarbonCallbacksWarning``).

    Raises:
        ConfigError: the location is unknown (with suggestions), or the offline tracker has none.
    """
    from codecarbon_callbacks_core.intensity.lookup import UnknownLocationError, resolve_offline

    has_location = _has_location(config)
    if offline and not has_location:
        raise ConfigError(
            "OfflineEmissionsTracker needs country_iso_code (ISO 3166 alpha-3, e.g. 'FRA') "
            "or cloud_provider + cloud_region"
        )
    if not (has_location or config.force_carbon_intensity_g_co2e_kwh is not None or offline):
        return None
    try:
        return resolve_offline(
            force_carbon_intensity_g_co2e_kwh=config.force_carbon_intensity_g_co2e_kwh,
            country_iso_code=config.country_iso_code,
            region=config.region,
            cloud_provider=config.cloud_provider,
            cloud_region=config.cloud_region,
            country_2letter_iso_code=config.country_2letter_iso_code,
            user_warning=user_warning,
        )
    except UnknownLocationError as e:
        raise ConfigError(str(e)) from None


def resolve_tracker_config(arguments: Mapping[str, Any], *, offline: bool) -> TrackerConfig:
    """Resolve and check a tracker's parameters once, without building a tracker.

    The same checks as the constructor (arguments, ``CODECARBON_*`` variables, config files, the
    location); build trackers from the result with :meth:`BaseEmissionsTracker.from_config`.

    Raises:
        ConfigError: a bad value, named with its source.
    """
    config = resolve_config(arguments, offline=offline)
    # a check: the trackers built from it resolve again, and warn on the writing rank only
    resolve_location(config, offline=offline, user_warning=False)
    return config


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


#: stop() statuses at which every rank stops together: the record_combiner may use collectives
_COLLECTIVE_STOP_STATUSES = ("completed", "budget_stop")


def _left(deadline: float) -> float:
    """Seconds left until ``deadline`` (monotonic), never negative."""
    return max(0.0, deadline - time.monotonic())


def _single_run_lock_path() -> str:
    import tempfile

    return os.path.join(tempfile.gettempdir(), ".codecarbon_callbacks.lock")


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

"""The framework-neutral logic behind every training callback.

A :class:`EmissionsSession` turns framework events (a run begins, an epoch begins or ends, a
validation pass begins or ends, a step ends, a run ends) into tracker calls, and decides what to
log, when to forecast and when a budget asks training to stop. The adapters in
``codecarbon_callbacks.lightning``, ``.pytorch_lightning``, ``.transformers`` and ``.keras`` only
map hooks to these calls.

Windows tile the run: at every moment exactly one *tiling* window is open, so the run's total equals
the sum of its tiling windows:

- ``kind="epoch", phase="train"``: the training part of an epoch. A validation pass inside an epoch
  closes it; if training goes on in the same epoch after that pass, another train window of the
  same epoch opens (``name="epoch 3 (continued)"``);
- ``kind="phase"``, ``phase`` in ``validation``, ``test``, ``predict``: evaluation passes;
- ``kind="phase", phase="other"``: whatever lies between phases (set-up, checkpointing, the end
  of an epoch after its validation pass).

Optional step or time windows (``kind="step"`` / ``"time"``) overlap the tiling ones and are not
part of that sum.

Rank handling: every rank measures and closes the same windows; only global rank zero writes
(``distributed.py`` plans and combines; adapters log only where
:attr:`EmissionsSession.is_writer` is true). See docs/distributed.md.

The session is picklable until a run begins (Lightning's ``ddp_spawn`` pickles callbacks): the
tracker is created in :meth:`begin_run`, and pickling a session drops what it created at run time.

Example:
    >>> session = EmissionsSession("custom", country_iso_code="FRA", output_methods=[])
    >>> session.begin_run("fit", info={"epochs": 1})
    >>> session.begin_epoch(0)
    >>> metrics = session.end_epoch(0, done=1, planned=1)
    >>> session.end_run()
    >>> summary = session.summary()
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core.errors import ConfigError

from codecarbon_callbacks import run_tracker
from codecarbon_callbacks.arguments import checkpoint_arguments, configuration_key
from codecarbon_callbacks.extras import (  # noqa: F401  (their home before extras.py)
    FRAMEWORK_EXTRAS,
    install_hint,
    missing_framework_error,
)
from codecarbon_callbacks.forecast import Budget, Progress, advance

# model and data facts (their home: introspect.py), where adapters and tests always found them
from codecarbon_callbacks.introspect import (  # noqa: F401
    TORCH_QUANTIZATION,
    dataset_info,
    guess_data_type,
    pretrained_name,
    shape_string,
    task_facts,
    torch_model_info,
)
from codecarbon_callbacks.metrics import (
    COUNTED_PHASES,
    EPOCH_METRIC_KEYS,
    epoch_metrics,
    phase_metrics,
    totals_metrics,
    window_metrics,
)
from codecarbon_callbacks.options import CallbackOptions
from codecarbon_callbacks.resume_state import (  # noqa: F401  (STATE_VERSION: its old home)
    STATE_VERSION,
    ResumeMixin,
)
from codecarbon_callbacks.run_metadata import RUN_STAGES, RunDescription
from codecarbon_callbacks.run_state import RecordLog, SessionRun
from codecarbon_callbacks.step_windows import OpenWindow, OverlappingWindows, open_window

if TYPE_CHECKING:  # imported when a run begins, not with the session
    from codecarbon_callbacks_core.config import TrackerConfig
    from codecarbon_callbacks_core.hardware.base import Component
    from codecarbon_callbacks_core.records import EmissionsData, Figures, WindowRecord
    from codecarbon_callbacks_core.tracker import BaseEmissionsTracker


logger = logging.getLogger(__name__)

#: the phase of the tiling window an evaluation-only run uses
STAGE_PHASES: dict[str, str] = {"validate": "validation", "test": "test", "predict": "predict"}

#: what this module has reported once (warn_once's keys), per process
_INFO_ONCE: set[tuple[str, str]] = set()


# -- the session -----------------------------------------------------------------------------


class EmissionsSession(ResumeMixin):
    """Run, epoch and phase windows, metadata, forecasts and budgets for one training callback.

    Args:
        framework: the framework's name, e.g. ``"lightning"``, ``"transformers"``, ``"keras"``.
        tracker: an existing ``EmissionsTracker`` to use; the session starts it when it is not
            running and stops only what it started. Mutually exclusive with tracker parameters.
        options: the callback's options (:class:`~codecarbon_callbacks.options.CallbackOptions`,
            whose docstring gives each one's meaning and unit), as the adapters pass them.
            Without it, the same options are read from ``tracker`` and ``**arguments``.
        **arguments: the options by name (``task_family``, ``task_stage``, ``task``,
            ``dataset``, ``max_energy_kwh``, ``max_emissions_kg``, ``window_every_n_steps``,
            ``window_every_seconds``, ``verbose``); any other name is a tracker parameter
            (``country_iso_code="FRA"`` makes it an ``OfflineEmissionsTracker``).

    Raises:
        ValueError: a bad argument (``ConfigError`` for bad tracker parameters), naming it.
    """

    def __init__(
        self,
        framework: str,
        tracker: Any = None,
        *,
        options: CallbackOptions | None = None,
        **arguments: Any,
    ) -> None:
        if options is None:
            options = CallbackOptions.from_arguments(tracker, **arguments)
        elif tracker is not None or arguments:
            raise ValueError("options: give the options object or the arguments, not both")
        self.framework = framework
        self.task_family = options.task_family
        self.task_stage = options.task_stage
        self.description = RunDescription.build(
            framework,
            task=options.task,
            dataset=options.dataset,
            task_stage=options.task_stage,
            task_family=options.task_family,
            max_energy_kwh=options.max_energy_kwh,
            max_emissions_kg=options.max_emissions_kg,
        )
        self.max_energy_kwh = options.max_energy_kwh
        self.max_emissions_kg = options.max_emissions_kg
        self.window_every_n_steps = options.window_every_n_steps
        self.window_every_seconds = options.window_every_seconds
        self.verbose = options.verbose
        self._source = run_tracker.TrackerSource(options.tracker_kwargs)
        self.tracker_kwargs = self._source.tracker_kwargs
        #: the arguments as given (secrets included: kept in memory only, see
        #: checkpoint_arguments())
        self._arguments: dict[str, Any] = options.arguments()
        self._configuration_key: str | None = None
        self._given_tracker = options.tracker
        # the configuration is resolved and checked here, so that bad parameters fail now
        if options.tracker is None:
            self._config()
        self._run: SessionRun | None = None
        self._resume_state: dict[str, Any] | None = None
        self._record_log = RecordLog()
        self._epochs: list[dict[str, Any]] = []
        self._last_tracker: Any = None
        self.stop_requested = False
        self.stop_reason: str | None = None
        self.last_forecast: dict[str, float] | None = None
        self.active = True
        self.is_writer = True

    # -- pickling: a session crosses process boundaries before its run starts ----------------

    def __getstate__(self) -> dict[str, Any]:
        self._record_log.records(self._run)  # the copy gets the records, not the tracker
        state = dict(self.__dict__)
        if state.get("_run") is not None:
            logger.warning(
                "an EmissionsSession with a running tracker is being pickled; "
                "the copy starts afresh"
            )
        state["_run"] = None
        state["_last_tracker"] = None
        state["_record_log"] = self._record_log.detached()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # -- tracker ---------------------------------------------------------------------------

    def _config(self) -> TrackerConfig:
        """The trackers' configuration, resolved and checked once (raises ConfigError)."""
        return self._source.config()

    def _detect(self, config: TrackerConfig, *, user_warning: bool) -> list[Component]:
        """This rank's hardware (:func:`run_tracker.detect`), its notes logged here."""
        return run_tracker.detect(config, user_warning=user_warning, log=logger, seen=_INFO_ONCE)

    @property
    def tracker(self) -> BaseEmissionsTracker | None:
        """The tracker of the current (or last) run, or the one given; None before any run."""
        if self._run is not None:
            return self._run.tracker
        return self._last_tracker if self._last_tracker is not None else self._given_tracker

    @property
    def running(self) -> bool:
        """True between begin_run() and end_run() on the writing rank."""
        return self._run is not None

    # -- runs ------------------------------------------------------------------------------

    def begin_run(
        self,
        stage: str,
        *,
        rank: int = 0,
        info: Mapping[str, Any] | None = None,
        unit: str = "epoch",
        planned: float | None = None,
        done: float = 0.0,
    ) -> bool:
        """A fit, validate, test or predict run begins; returns False if it could not start.

        Args:
            stage: ``fit``, ``validate``, ``test`` or ``predict``.
            rank: the process's global rank (used when no torch.distributed process group is
                initialised; with one, the group's rank); every rank measures, only rank zero
                writes. Under a process group, call begin_run on every rank (a collective).
            info: what the framework knows (see :meth:`update_info`).
            unit: what ``planned``/``done`` count, ``"epoch"`` or ``"step"``.
            planned: how many units the run is configured for (forecasts), if known.
            done: units already done (a resumed run).

        Raises:
            ConfigError: the tracker refused its configuration at start(), before any
                training step (``gpu_ids`` naming no visible GPU, an ``output_dir`` that
                cannot be created); any other failure to start leaves the run unmeasured (False).
        """
        if stage not in RUN_STAGES:
            raise ValueError(f"stage must be one of {', '.join(RUN_STAGES)}, got {stage!r}")
        # every rank measures (windows stay in step for the combiner), global rank zero writes
        from codecarbon_callbacks.distributed import SessionCombiner

        self.is_writer = rank == 0
        self.active = True
        if self._run is not None:
            logger.warning(
                "a %s run was still open when a %s run began (its end was never seen): "
                "writing it as incomplete",
                self._run.stage,
                stage,
            )
            self.end_run(status="incomplete")
        resume = self._resume_state if stage == "fit" else None
        if stage != "fit":
            self._resume_state = None
        start = run_tracker.RunStart(combiner=SessionCombiner(None), resume=resume)
        try:  # a tracker that cannot start must not stop training
            run_tracker.start_tracker(
                start,
                rank,
                given_tracker=self._given_tracker,
                build=self._source.build,
                config=self._config,
                detect=lambda config, warn: self._detect(config, user_warning=warn),
                log=logger,
            )
        except Exception as e:
            start.failure = e
        self.is_writer = start.writer
        if start.resume_refused:
            self._resume_state = None
        if not run_tracker.every_rank_running(start, stage, logger):
            self.active = False
            if isinstance(start.failure, ConfigError):
                # a configuration the hardware refuses (gpu_ids naming no visible GPU): the
                # user's mistake, raised before any training step (after the collectives)
                raise start.failure
            return False
        self._open_run(stage, start, unit=unit, planned=planned, done=done, info=info)
        return True

    def _open_run(
        self,
        stage: str,
        start: run_tracker.RunStart,
        *,
        unit: str,
        planned: float | None,
        done: float,
        info: Mapping[str, Any] | None,
    ) -> None:
        """The run's state, its first tiling window and its first point of progress."""
        tracker = start.tracker
        assert tracker is not None
        resume = start.resume
        if resume is not None:
            self._epochs = list(resume.get("epochs", []))
            done = max(done, float(resume.get("done", 0.0)))
            self._resume_state = None
        else:
            self._epochs = []
        self.stop_requested = False
        self.stop_reason = None
        self.last_forecast = None
        self._run = run = SessionRun(
            stage=stage,
            tracker=tracker,
            started_here=start.started_here,
            framework_info={},
            unit=unit,
            planned=planned,
            plan=start.plan,
            combiner=start.combiner,
            previous_combiner=start.previous_combiner,
            previous_writes=start.previous_writes,
        )
        self._last_tracker = tracker
        start.combiner.stamp = run.work.stamp
        run.later = run_tracker.switches_later(tracker, start.combiner)
        self._record_log = RecordLog(tracker if run.later else None)
        # The first tiling window opens right away, so that the windows cover the whole run.
        if stage == "fit":
            self._switch("phase", "other", "setup", None)
        else:
            self._switch("phase", STAGE_PHASES[stage], stage, None)
        self.update_info(info or {})
        run_tracker.say_how_measured(tracker, log=logger, seen=_INFO_ONCE)
        first = self._totals(run)
        if first is None:
            first = tracker.totals()
        run.points.append(Progress(done, first.energy_consumed, first.emissions))
        if stage == "fit":  # the step and time windows, when asked for
            run.overlapping = OverlappingWindows(
                tracker,
                every_n_steps=self.window_every_n_steps,
                every_seconds=self.window_every_seconds,
                distributed=start.combiner.distributed,
                first_step=int(done) if unit == "step" else 0,
                log=logger,
                seen=_INFO_ONCE,
            )
        if start.combiner.distributed:  # write what this rank has when its launcher ends it
            from codecarbon_callbacks.distributed import install_run_sigterm

            run.sigterm_handler = install_run_sigterm(lambda: self._run is run, self.fail, logger)

    def end_run(self, status: str | None = None) -> float | None:
        """The run ends: close its windows, stop the tracker if the session started it.

        Args:
            status: ``completed`` (default; ``budget_stop`` when a budget stopped training),
                ``failed``, ``interrupted`` or ``incomplete``.

        Returns:
            The run's emissions in kg CO2eq, when the session stopped the tracker.
        """
        run = self._run
        if run is None:
            return None
        if status is None or status == "completed":
            status = "budget_stop" if self.stop_requested else "completed"
        window_status = status if status != "budget_stop" else "completed"
        # Every rank reaches a completed or budget end together (budgets are decided on combined
        # figures); anything else is a failure path, where no collective may be started.
        normal_end = status in ("completed", "budget_stop")
        self._run = None  # re-entrancy: a failing output must not end the run twice
        if run.sigterm_handler is not None:
            from codecarbon_callbacks.distributed import remove_sigterm_handler

            remove_sigterm_handler(run.sigterm_handler)
            run.sigterm_handler = None
        open_windows = run.overlapping.take_open() if run.overlapping is not None else []
        if run.current is not None:
            open_windows.append(run.current)
        run.current = None
        run.status = status
        result = None
        if run.started_here:
            result, captured = run_tracker.stop_tracker(
                run.tracker, run.combiner, status=status, window_status=window_status, log=logger
            )
            # after the windows closed earlier, built at stop() where outputs write them, else
            # when first read (summary())
            self._record_log.tail = captured
        elif normal_end or run.combiner is None or not run.combiner.distributed:
            try:
                for window in open_windows:
                    self._close(run, window, status=window_status)
            except Exception as e:  # never raise into training
                logger.warning("could not close the open windows at the end of the run: %s", e)
        # else: a given tracker in a failing distributed run: its windows stay open, its owner's
        # stop() closes them without any collective.
        if not run.started_here:  # hand a given tracker back as it was
            run_tracker.hand_back(run.tracker, run.previous_combiner, run.previous_writes)
        if run.stage == "fit" and self.verbose and self.is_writer:
            run_tracker.print_closing_line(run.stage, run.status, run.tracker, log=logger)
        return result

    def fail(self, error: BaseException | None) -> None:
        """Training raised: write the partial run and the open windows with a status."""
        status = "interrupted" if isinstance(error, (KeyboardInterrupt, SystemExit)) else "failed"
        if self._run is not None:
            logger.warning(
                "training stopped by %s: writing the partial run as %s",
                type(error).__name__ if error else "an error",
                status,
            )
        self.end_run(status=status)

    def update_info(self, info: Mapping[str, Any]) -> None:
        """Add what the framework knows and refresh the tracker's metadata.

        Known keys: ``framework_version``, ``class_path``, ``parameters`` (a count),
        ``layers``, ``epochs``, ``max_steps``, ``optimizer``, ``batch_size``, ``n_samples``,
        ``input_shape``, ``data_type``, ``pretrained``, ``foundation_model``, ``training_type``,
        ``nb_request``."""
        run = self._run
        if run is None:
            return
        run.framework_info.update({k: v for k, v in info.items() if v is not None})
        try:
            run.tracker.update_metadata(self.metadata())
        except Exception as e:
            logger.debug("could not update the tracker's metadata: %s", e)

    def set_plan(self, *, unit: str | None = None, planned: float | None = None) -> None:
        """What the run is configured for (units ``epoch`` or ``step``), when known late."""
        if self._run is None:
            return
        if unit is not None:
            self._run.unit = unit
        if planned is not None:
            self._run.planned = planned

    # -- metadata --------------------------------------------------------------------------

    def boamps_task(self) -> dict[str, Any]:
        """The BoAmps ``task`` (camelCase) of the current run (a fit outside one), built from
        the framework's information and the user's (:meth:`RunDescription.boamps_task`)."""
        run = self._run
        info = run.framework_info if run is not None else {}
        return self.description.boamps_task(run.stage if run is not None else "fit", info)

    def metadata(self) -> dict[str, Any]:
        """What the session adds to ``tracker.metadata`` (low-cardinality keys at the top)."""
        run = self._run
        if run is None:
            return self.description.metadata(None, {})
        return self.description.metadata(run.stage, run.framework_info)

    # -- windows ---------------------------------------------------------------------------

    @property
    def _records(self) -> list[Any]:
        """The run's window records so far, in the order they closed (see RecordLog)."""
        return self._record_log.records(self._run)

    def _open(self, kind: str, phase: str, name: str, epoch: int | None) -> OpenWindow:
        run = self._run
        assert run is not None
        # a run's first window starts at the start of the tracker the session started (ours)
        first = run.current is None and run.started_here and hasattr(run.tracker, "collect_windows")
        return open_window(run.tracker, kind, phase, name, epoch, at_start=first)

    def _close(
        self, run: SessionRun, window: OpenWindow, *, status: str = "completed"
    ) -> WindowRecord:
        record = run.tracker.close_window(window.window_id, status=status)
        self._records.append(record)
        run.closed.append(record)
        return record

    def _switch(
        self, kind: str, phase: str, name: str, epoch: int | None, *, pulled: bool = False
    ) -> None:
        """Close the open tiling window and open the next one (the windows tile the run).
        ``pulled``: the work counts were just read at this edge."""
        run = self._run
        if run is None:
            return
        try:
            previous = run.current
            switch = getattr(run.tracker, "switch_window", None)
            if previous is not None and run.later:
                if previous.phase == "train":
                    pulled = run.work.window_closed(previous.window_id, pull=not pulled) or pulled
                new_id = run.tracker.switch_window_later(
                    previous.window_id, kind, name, epoch=epoch, phase=phase, collect=True
                )
                run.closed.append(previous)
                run.current = OpenWindow(new_id, kind, phase, name, epoch)
            elif previous is not None and callable(switch):
                # An atomic switch (one snapshot ends one window and starts the next) when the
                # tracker has it.
                record, new_id = switch(previous.window_id, kind, name, epoch=epoch, phase=phase)
                self._records.append(record)
                run.closed.append(record)
                run.current = OpenWindow(new_id, kind, phase, name, epoch)
            else:  # no atomic switch: open first (a close writes outputs), leaving no gap
                run.current = self._open(kind, phase, name, epoch)
                if previous is not None:
                    self._close(run, previous)
            if phase == "train":
                run.work.window_opened(run.current.window_id, pull=not pulled)
        except Exception as e:  # never raise into training
            logger.warning("could not switch to the %s window %r: %s", phase, name, e)

    def update_counts(
        self,
        *,
        samples: int | None = None,
        tokens: int | None = None,
        optimizer_steps: int | None = None,
    ) -> None:
        """Training work since the fit began, cumulative over all ranks (None: unchanged).

        Train window records get their work and energy per unit, :meth:`end_epoch` the
        epoch's (``epoch_samples``, ``epoch_energy_per_sample_kwh``...; see metrics.WorkCounter).
        """
        if self._run is not None:
            self._run.work.update(samples=samples, tokens=tokens, optimizer_steps=optimizer_steps)

    def count_with(self, source: Callable[[], Mapping[str, int | None]] | None) -> None:
        """Pull the training work from ``source`` at each window and epoch edge of the open run
        instead of being told every batch: it returns :meth:`update_counts`' counts (cumulative,
        all ranks). The run forgets it when it ends."""
        if self._run is not None:
            self._run.work.source = source

    @property
    def current_phase(self) -> str | None:
        """The phase of the open tiling window (``train``, ``validation``...), or None."""
        run = self._run
        return run.current.phase if run is not None and run.current is not None else None

    @property
    def stage(self) -> str | None:
        """The stage of the open run (``fit``, ``validate``, ``test``, ``predict``), or None."""
        return self._run.stage if self._run is not None else None

    @property
    def epoch(self) -> int | None:
        """The index of the current (or last) training epoch of the open run, or None."""
        return self._run.epoch if self._run is not None else None

    @property
    def has_pending_resume(self) -> bool:
        """True when a loaded state waits for the next fit run."""
        return self._resume_state is not None

    def take_pending_resume(self) -> dict[str, Any] | None:
        """The loaded state waiting for the next fit run, removed from this session."""
        state, self._resume_state = self._resume_state, None
        return state

    @property
    def in_epoch(self) -> bool:
        """True between begin_epoch() and end_epoch()."""
        return self._run is not None and self._run.in_epoch

    def begin_epoch(self, epoch: int) -> None:
        """A training epoch begins: its train window opens."""
        run = self._run
        if run is None:
            return
        run.epoch = int(epoch)
        run.in_epoch = True
        run.closed = []
        run.epoch_cache = None
        run.work.epoch_began()
        self._switch("epoch", "train", f"epoch {epoch}", run.epoch, pulled=True)

    def begin_phase(self, phase: str, name: str | None = None) -> None:
        """An evaluation pass begins inside a run (``validation``; ``other`` for checkpoints)."""
        run = self._run
        if run is None or (
            run.current is not None and run.current.phase == phase and phase != "other"
        ):
            return
        epoch = run.epoch
        self._switch(
            "phase",
            phase,
            name or (f"{phase} epoch {epoch}" if epoch is not None else phase),
            epoch,
        )

    def end_phase(self, *, training_continues: bool | None = None) -> dict[str, float]:
        """The evaluation pass ends; returns its figures (``val_energy_kwh``...).

        Args:
            training_continues: True when training goes on in the same epoch after this pass
                (mid-epoch validation); by default, whether an epoch is open.
        """
        run = self._run
        if run is None or run.current is None:
            return {}
        ended = run.current
        continues = run.in_epoch if training_continues is None else training_continues
        if continues and run.in_epoch and run.epoch is not None:
            self._switch("epoch", "train", f"epoch {run.epoch} (continued)", run.epoch)
        else:
            self._switch("phase", "other", "between phases", run.epoch)
        if ended.phase in ("train", "other") or not run.closed:
            return {}
        try:
            figures = self._record_log.figures(run.tracker, run.closed[-1])
        except Exception as e:  # never raise into training
            logger.warning("could not read the %s pass's figures: %s", ended.phase, e)
            return {}
        if figures.window_id != ended.window_id:
            return {}
        return phase_metrics(figures, ended.phase)

    def end_epoch(
        self, epoch: int, *, done: float | None = None, planned: float | None = None
    ) -> dict[str, float]:
        """A training epoch ends: returns the figures to log; forecasts and checks budgets.

        Args:
            epoch: the epoch's index.
            done: units done so far (in the run's unit; epochs by default: ``epoch + 1``).
            planned: units the run is configured for, if known.

        Returns:
            ``epoch_energy_kwh`` (train windows of the epoch; its validation passes are
            ``val_energy_kwh``), per-component energies, ``epoch_emissions_kg``,
            ``epoch_duration_s``, ``epoch_power_w``, cumulative ``total_*`` figures, and
            ``forecast_energy_kwh`` / ``forecast_emissions_kg`` from the second epoch on.
        """
        run = self._run
        if run is None:
            return {}
        run.in_epoch = False
        if run.current is not None and run.current.phase == "train":
            self._switch("phase", "other", f"after epoch {epoch}", epoch)
        # only this epoch's records: a scan of the whole run would grow with every epoch
        metrics = self.epoch_figures(epoch)
        metrics.update(totals_metrics(self._totals(run)))
        if planned is not None:
            run.planned = planned
        if run.unit == "epoch":
            self._progress(run, float(done if done is not None else epoch + 1), metrics)
        row = {"epoch": int(epoch), **metrics}
        self._epochs.append(row)
        return metrics

    def epoch_figures(self, epoch: int | None = None) -> dict[str, float]:
        """An epoch's figures so far (default: the current one's), from its closed windows only
        (no collective): ``epoch_*`` of its train windows (work and energy per unit included,
        the work counted when the latest of them closed) and ``val_*`` of its validation
        passes; empty outside a run."""
        run = self._run
        epoch = run.epoch if run is not None and epoch is None else epoch
        if run is None or epoch is None:
            return {}
        # the same windows as last time (a validation end, then the epoch's end): not summed again
        key = (epoch, len(run.closed))
        if run.epoch_cache is None or run.epoch_cache[0] != key:
            # the figures of the windows epoch_metrics() sums only (a window's own are read once)
            counted = [c for c in run.closed if c.epoch == epoch and c.phase in COUNTED_PHASES]
            try:
                figures = [self._record_log.figures(run.tracker, c) for c in counted]
            except Exception as e:  # never raise into training: no epoch figures this time
                logger.warning("could not read the epoch's figures: %s", e)
                return {}
            metrics = epoch_metrics(figures, epoch)
            metrics.update(run.work.epoch_figures(metrics["epoch_energy_kwh"]))
            run.epoch_cache = (key, metrics)
        return dict(run.epoch_cache[1])

    def totals_so_far(self) -> dict[str, float]:
        """``total_*`` as of the latest window edge, this rank's own (no collective)."""
        return run_tracker.totals_so_far(self._run.tracker if self._run is not None else None)

    def _totals(self, run: SessionRun) -> EmissionsData | Figures | None:
        """The run's totals so far: combined over ranks (a collective) in a distributed run.

        Call it only at points every rank reaches (run begin, epoch end, step-window close).
        """
        from codecarbon_callbacks.distributed import run_totals

        total, sync = run_totals(run.tracker, run.combiner)
        if sync is not None:
            run.last_sync = sync
        return total

    def on_step(self, step: int, *, planned_steps: float | None = None) -> dict[str, float]:
        """An optimizer step ended (global step count ``step``): step and time windows.

        Returns the figures of a step/time window that just closed (``window_energy_kwh``...,
        and the forecast when the run counts in steps), else an empty dict.
        """
        run = self._run
        if run is None or run.stage != "fit":
            return {}
        out: dict[str, float] = {}
        try:
            closed = (
                run.overlapping.on_step(step, run.epoch, self._records) if run.overlapping else 0
            )
            for record in self._records[len(self._records) - closed :]:
                out.update(window_metrics(record))
        except Exception as e:
            logger.warning("step window failed at step %s: %s", step, e)
            return {}
        if out:
            out.update(totals_metrics(self._totals(run)))
            if planned_steps is not None:
                run.planned = planned_steps
            if run.unit == "step":
                self._progress(run, float(step), out)
        return out

    # -- forecast and budget ---------------------------------------------------------------

    def _progress(self, run: SessionRun, done: float, metrics: dict[str, float]) -> None:
        """A new point of progress: forecast into ``metrics``, and a stop when over budget."""
        verdict = advance(
            run.points,
            done,
            metrics,
            planned=run.planned,
            unit=run.unit,
            budget=Budget(self.max_energy_kwh, self.max_emissions_kg),
            forecast_warned=run.forecast_warned,
            log=logger,
        )
        if verdict is None:
            return
        if verdict.forecast is not None:
            self.last_forecast = dict(verdict.forecast)
        run.forecast_warned = run.forecast_warned or bool(verdict.forecast_over)
        if verdict.stop_reason and not self.stop_requested:
            self.stop_requested = True
            self.stop_reason = verdict.stop_reason
            logger.warning("%s", self.stop_reason)
            try:
                run.tracker.update_metadata({"budget_stop_reason": self.stop_reason})
            except Exception:
                pass

    # -- reading ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The run's totals and per-window and per-epoch figures, from memory (no file read)."""
        return run_tracker.run_summary(
            self.tracker,
            self._records,
            framework=self.framework,
            stage=self._run.stage if self._run is not None else None,
            epochs=[dict(e) for e in self._epochs],
            forecast=dict(self.last_forecast) if self.last_forecast else None,
            stop_reason=self.stop_reason,
        )


__all__ = [
    "EPOCH_METRIC_KEYS",
    "EmissionsSession",
    "FRAMEWORK_EXTRAS",
    "RUN_STAGES",
    "checkpoint_arguments",
    "configuration_key",
    "dataset_info",
    "guess_data_type",
    "install_hint",
    "missing_framework_error",
    "pretrained_name",
    "shape_string",
    "torch_model_info",
]

"""Energy and emissions per epoch for the Hugging Face ``Trainer``.

Example:
    >>> from transformers import Trainer, TrainingArguments
    >>> from codecarbon_callbacks.transformers import EmissionsCallback
    >>> callback = EmissionsCallback(country_iso_code="FRA", task_family="text classification")
    >>> trainer = Trainer(model=model, args=args, train_dataset=train)  # doctest: +SKIP
    >>> callback.attach(trainer)  # placed first; figures reach report_to  # doctest: +SKIP
    >>> trainer.train()  # doctest: +SKIP

Either way of adding the callback puts the figures in ``trainer.state.log_history`` and sends
them to every ``report_to`` integration's ``on_log``, each record with ``epoch_index`` (our
0-based epoch, as in ``emissions_windows.csv`` and ``report``) next to the Trainer's ``epoch``
(its progress, 1.0 at the end of the first epoch). ``attach(trainer)`` is the recommended way:
evaluation and prediction windows then start exactly when ``evaluate()`` / ``predict()`` are
called, and an exception in ``train()`` is recorded with its status. Passing the callback in
``Trainer(callbacks=[...])`` also works: evaluation windows are then derived from the Trainer's
events, and a crash is written as ``incomplete`` at exit. See docs/callbacks.md for every limit.

Supported transformers versions: ``SUPPORTED_TRANSFORMERS`` (``>=4.40,<6``); with another one the
callback warns once (``CodeCarbonCallbacksWarning``) and carries on.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
import math
import sys
import weakref
from types import FrameType
from typing import Any, ClassVar

from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning

from codecarbon_callbacks.introspect import dataset_info, torch_model_info
from codecarbon_callbacks.options import CallbackOptions, end_eval_run
from codecarbon_callbacks.session import EmissionsSession, missing_framework_error

try:
    import transformers as _transformers
    from transformers import TrainerCallback as _TrainerCallback
    from transformers.trainer_callback import DefaultFlowCallback as _DefaultFlowCallback
    from transformers.trainer_callback import ExportableState as _ExportableState
except ImportError as _error:  # pragma: no cover - exercised in a subprocess test
    raise missing_framework_error("transformers", __name__, _error) from _error
if importlib.util.find_spec("accelerate") is None:  # the Trainer needs it; found, not imported
    raise missing_framework_error("accelerate", __name__)

logger = logging.getLogger(__name__)

#: the transformers versions this adapter supports (a PEP 440 specifier): from the minimum the
#: ``transformers`` extra installs (pyproject.toml; stateful callbacks, ``ExportableState``, which
#: resuming a run needs) up to the current major, 5.x, on which the suite runs. A next major may
#: change what ``_TrainerWrapper`` relies on (the methods it wraps, ``callback_handler``,
#: ``stateful_callbacks``, ``DefaultFlowCallback``): outside this range the adapter warns once
#: and carries on.
SUPPORTED_TRANSFORMERS = ">=4.40,<6"

#: what this adapter has warned about once (warn_once's keys), per process
_WARNED: set[tuple[str, str]] = set()


class _TrainerWrapper:
    """Everything this adapter does to the Hugging Face ``Trainer`` from outside its callback
    interface, and the state that needs: one instance, held by ``EmissionsCallback``.

    - ``attach``: put a callback first in a Trainer's callback list and wrap that Trainer's
      ``train``, ``evaluate`` and ``predict`` (on the instance, once for every attached callback)
      so that evaluation windows open when they are called and an exception is recorded with its
      status;
    - the Trainer each session was attached to (``trainer_of``), for ``Trainer.log``;
    - per model, the sessions of the callbacks that the latest Trainer built for it was given,
      in order, with that Trainer's initial ``TrainerState`` (a new one means a new Trainer).
      When it resumes, the Trainer rebuilds stateful callbacks from their saved arguments; a
      rebuilt one takes over the session of the callback with its configuration
      (``sessions_of``), never another callback's;
    - ``check_version``: a warning, once, outside ``SUPPORTED_TRANSFORMERS``.

    Only weak references are kept: a Trainer, a model or a session that nothing else holds goes.
    """

    def __init__(self) -> None:
        self._sessions_by_model: weakref.WeakKeyDictionary[
            Any, tuple[Any, list[EmissionsSession]]
        ] = weakref.WeakKeyDictionary()
        self._trainer_by_session: weakref.WeakKeyDictionary[EmissionsSession, Any] = (
            weakref.WeakKeyDictionary()
        )

    @staticmethod
    def check_version(version: str | None = None) -> bool:
        """Whether ``version`` (default: the installed transformers') is supported; warns once
        (``CodeCarbonCallbacksWarning``) when it is not."""
        from packaging.specifiers import SpecifierSet  # a dependency of transformers
        from packaging.version import InvalidVersion, Version

        version = str(_transformers.__version__ if version is None else version)
        try:
            supported = SpecifierSet(SUPPORTED_TRANSFORMERS).contains(
                Version(version), prereleases=True
            )
        except InvalidVersion:
            supported = False
        if not supported:
            warn_once(
                f"transformers-version-{version}",
                "transformers %s is outside the versions codecarbon_callbacks.transformers "
                "supports (%s): attach(), evaluation windows and resuming from a checkpoint "
                "may not work. Install a supported version, or report the problem.",
                version,
                SUPPORTED_TRANSFORMERS,
                log=logger,
                category=CodeCarbonCallbacksWarning,
            )
        return supported

    def register(self, model: Any, trainer_state: Any, session: EmissionsSession) -> None:
        """``session`` belongs to a callback of the Trainer whose initial state is
        ``trainer_state``, built for ``model``."""
        if model is None:
            return
        try:
            owner, sessions = self._sessions_by_model.get(model, (None, []))
            if owner is not trainer_state:  # a new Trainer for this model: the latest one wins
                owner, sessions = trainer_state, []
            if not any(known is session for known in sessions):
                sessions.append(session)
            self._sessions_by_model[model] = (owner, sessions)
        except TypeError:  # a model that cannot be weakly referenced
            pass

    def sessions_of(self, model: Any) -> list[EmissionsSession]:
        """The sessions registered for ``model`` by the latest Trainer built for it."""
        try:
            return self._sessions_by_model.get(model, (None, []))[1]
        except TypeError:
            return []

    def trainer_of(self, session: EmissionsSession) -> Any:
        """The Trainer ``session``'s callback was attached to (None without ``attach``)."""
        return self._trainer_by_session.get(session)

    def attach(self, trainer: Any, callback: EmissionsCallback) -> None:
        """Put ``callback`` first in ``trainer``'s callbacks and wrap the Trainer (once)."""
        handler = trainer.callback_handler
        if callback in handler.callbacks:
            handler.callbacks.remove(callback)
        handler.callbacks.insert(0, callback)
        self._trainer_by_session[callback.session] = trainer
        self.register(
            getattr(trainer, "model", None), getattr(trainer, "state", None), callback.session
        )
        attached = getattr(trainer, "_codecarbon_callbacks_attached", None)
        if attached is None:
            attached = []
            trainer._codecarbon_callbacks_attached = attached
            self._wrap(trainer, attached)
        if not any(ref() is callback for ref in attached):
            attached.append(weakref.ref(callback))

    @staticmethod
    def _wrap(trainer: Any, attached: list[weakref.ref[EmissionsCallback]]) -> None:
        """Wrap ``trainer.train``, ``evaluate`` and ``predict`` once for every attached callback."""

        def wrap(name: str, stage: str | None) -> None:
            original = getattr(trainer, name)

            @functools.wraps(original)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                callbacks = [c for c in (ref() for ref in attached) if c is not None]
                if stage is not None:
                    # evaluate(eval_dataset=None, ...) / predict(test_dataset, ...)
                    data = (
                        args[0] if args else kwargs.get("eval_dataset", kwargs.get("test_dataset"))
                    )
                    for callback in callbacks:
                        callback._eval_called(trainer, stage, data)
                try:
                    return original(*args, **kwargs)
                except BaseException as error:
                    for callback in callbacks:
                        session = callback.session
                        if session.running and (stage is None or session.stage != "fit"):
                            session.fail(error)
                    raise

            setattr(trainer, name, wrapper)

        wrap("train", None)
        wrap("evaluate", "validate")
        wrap("predict", "predict")


def _calling_handler(callback: Any) -> Any:
    """The Trainer's ``CallbackHandler`` running the current hook of ``callback`` (found on the
    call stack: its ``call_event`` is the hook's caller), or None. Without ``attach()`` it is
    how the figures reach every callback's ``on_log``, as ``Trainer.log`` sends them."""
    from transformers.trainer_callback import CallbackHandler

    frame: FrameType | None = sys._getframe(1)
    for _ in range(8):
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        if isinstance(owner, CallbackHandler) and any(c is callback for c in owner.callbacks):
            return owner
        frame = frame.f_back
    return None


def _tokens_counted(args: Any) -> bool:
    """Whether the Trainer counts input tokens (``include_num_input_tokens_seen``: ``"all"``,
    ``"non_padding"`` or True; ``"no"`` or False is off)."""
    value = getattr(args, "include_num_input_tokens_seen", False)
    return bool(value) and value != "no"


def _report_to(args: Any) -> list[str]:
    report_to = getattr(args, "report_to", None) or []
    if isinstance(report_to, str):
        report_to = [report_to]
    return [str(r) for r in report_to if r not in ("none", None)]


class EmissionsCallback(_TrainerCallback, _ExportableState):
    """A ``transformers.TrainerCallback`` that measures energy and emissions per epoch and phase.

    Args:
        tracker: an existing ``EmissionsTracker`` to use instead of creating one; the callback
            starts it if it is not running and stops only what it started.
        task_family: BoAmps ``taskFamily`` (e.g. ``"text classification"``).
        task_stage: BoAmps ``taskStage`` (default: ``training``, ``finetuning`` when the model was
            loaded with ``from_pretrained``, ``inference`` for evaluate/predict runs).
        task: BoAmps task fields overriding the automatic ones (camelCase dict).
        dataset: BoAmps dataset dict(s) overriding the automatic one.
        max_energy_kwh: stop training (``control.should_training_stop``) before this energy is
            exceeded.
        max_emissions_kg: the same for emissions in kg CO2eq.
        window_every_n_steps: also record a step window every n optimizer steps (long epochs,
            ``max_steps`` runs); budgets and forecasts then count steps.
        window_every_seconds: also record a time window every so many seconds.
        verbose: print one line when ``fit`` ends, on rank zero: the run's energy (kWh),
            emissions (kg CO2eq) and where its reports are; False prints nothing.
        **tracker_kwargs: the tracker's parameters (``country_iso_code="FRA"`` makes it offline).

    Resuming: the callback is stateful (``ExportableState``): its run_id and cumulative totals
    are saved in ``trainer_state.json`` and restored when the Trainer is built with
    ``TrainingArguments(restore_callback_states_from_checkpoint=True)`` and trained with
    ``resume_from_checkpoint``. The Trainer then rebuilds the callback from its saved arguments;
    the rebuilt one takes over the session of the callback it replaces (the one with the same
    configuration), so several callbacks in one Trainer each keep their own run. No secret is
    saved: ``api_key``, ``electricitymaps_api_token`` and URLs that carry credentials or a token
    are left out of ``trainer_state.json`` (which ``push_to_hub`` uploads); they come from the
    callback's own arguments or environment.
    """

    #: the Trainer wrapping and its state, shared by every callback of this class
    _trainers: ClassVar[_TrainerWrapper] = _TrainerWrapper()

    def __init__(
        self,
        tracker: Any = None,
        *,
        task_family: str | None = None,
        task_stage: str | None = None,
        task: Any = None,
        dataset: Any = None,
        max_energy_kwh: float | None = None,
        max_emissions_kg: float | None = None,
        window_every_n_steps: int | None = None,
        window_every_seconds: float | None = None,
        verbose: bool = True,
        **tracker_kwargs: Any,
    ) -> None:
        options = CallbackOptions(
            tracker=tracker,
            task_family=task_family,
            task_stage=task_stage,
            task=task,
            dataset=dataset,
            max_energy_kwh=max_energy_kwh,
            max_emissions_kg=max_emissions_kg,
            window_every_n_steps=window_every_n_steps,
            window_every_seconds=window_every_seconds,
            verbose=verbose,
            tracker_kwargs=tracker_kwargs,
        )
        self.session = EmissionsSession("transformers", options=options)
        self._trainers.check_version()
        #: the configuration this callback stands for (the saved one, when the Trainer rebuilt
        #: it): a rebuilt callback takes over the session of the callback with this key
        self.configuration_key = self.session.configuration_key()
        #: set when the Trainer restores our state into a callback it rebuilt
        self._rebuilt = False
        self._pending_eval_stage: str | None = None
        self._last_step = -1
        #: samples per optimizer step (all ranks), the training set's size, and where the
        #: current epoch began (global step, samples): energy per sample, per step, per token
        self._step_samples: int | None = None
        self._n_train: int | None = None
        self._epoch_start = (0, 0)
        self._samples = 0

    # -- public -----------------------------------------------------------------------------

    @property
    def tracker(self) -> Any:
        """The tracker of the current or last run (None before training starts)."""
        return self.session.tracker

    def summary(self) -> dict[str, Any]:
        """The run's totals and per-window and per-epoch figures (no file read)."""
        return self.session.summary()

    def attach(self, trainer: Any) -> EmissionsCallback:
        """Add this callback to ``trainer`` first, and let it log through ``trainer.log``.

        Placed first, it runs before the ``report_to`` integrations; logging through
        ``Trainer.log`` puts the figures in ``trainer.state.log_history`` and sends them to
        every integration's ``on_log``. ``trainer.train``, ``evaluate`` and ``predict`` are
        wrapped (on this instance only) so that evaluation windows start when they are called
        and an exception is recorded with its status (``failed``, ``interrupted``).

        Returns:
            self, for chaining.
        """
        self._trainers.attach(trainer, self)
        self._check_report_to(trainer.args)
        return self

    # -- ExportableState: JSON state in trainer_state.json ------------------------------------

    def state(self) -> dict[str, Any]:
        """What the Trainer saves in ``trainer_state.json``: arguments without secrets, the
        configuration's key and the run's state (run_id, cumulative totals)."""
        return {
            "args": self.session.checkpoint_arguments(),
            "attributes": {
                "configuration_key": self.session.configuration_key(),
                "resume_state": self.session.state_dict(),
            },
        }

    @property
    def resume_state(self) -> dict[str, Any]:
        """The run's state (run_id, cumulative totals); setting it resumes that run."""
        return self.session.state_dict()

    @resume_state.setter
    def resume_state(self, value: dict[str, Any]) -> None:
        # The Trainer sets it on a callback it rebuilt from a checkpoint.
        self._rebuilt = True
        if value and value.get("tracker"):
            self.session.load_state_dict(value)

    # -- helpers ----------------------------------------------------------------------------

    def _trainer(self) -> Any:
        return self._trainers.trainer_of(self.session)

    def _eval_called(self, trainer: Any, stage: str, data: Any = None) -> None:
        """trainer.evaluate()/predict() was called (attach() only): open its window now."""
        session = self.session
        if session.stage == "fit":
            if stage == "validate":
                session.begin_phase("validation")
            return
        if session.running:
            return
        self._begin_eval_run(
            trainer.args,
            trainer.state,
            getattr(trainer, "model", None),
            stage,
            data if data is not None else getattr(trainer, "eval_dataset", None),
        )

    def _begin_eval_run(
        self, args: Any, state: Any, model: Any, stage: str, data: Any = None
    ) -> None:
        info: dict[str, Any] = {"framework_version": _transformers.__version__}
        if model is not None:
            info.update(torch_model_info(model))
        if data is not None and not isinstance(data, dict):
            info.update(
                dataset_info(data, batch_size=getattr(args, "per_device_eval_batch_size", None))
            )
            if "n_samples" in info:
                info["nb_request"] = info["n_samples"]
        self.session.begin_run(stage, rank=int(getattr(args, "process_index", 0) or 0), info=info)

    def _check_report_to(self, args: Any) -> None:
        report_to = _report_to(args)
        if "codecarbon" in report_to:
            warn_once(
                "codecarbon",
                "the Trainer's own CodeCarbon integration is active too "
                "(report_to includes 'codecarbon'): "
                "two trackers would measure the same run. Remove 'codecarbon' from report_to.",
                log=logger,
                seen=_WARNED,
            )

    def _log(self, args: Any, state: Any, control: Any, metrics: dict[str, float]) -> None:
        """Figures into ``log_history`` and every callback's ``on_log`` (the ``report_to``
        integrations'), through ``Trainer.log`` when attached, else as it does, through the
        handler running this hook; with ``epoch_index`` when an epoch is known."""
        if not metrics or not getattr(state, "is_world_process_zero", True):
            return
        metrics = dict(metrics)
        if self.session.epoch is not None:
            metrics["epoch_index"] = self.session.epoch
        trainer = self._trainer()
        handler = None if trainer is not None else _calling_handler(self)
        # Trainer.log and the handler's on_log reset control flags the loop still needs
        flags = {
            f.name: getattr(control, f.name)
            for f in (dataclasses.fields(control) if dataclasses.is_dataclass(control) else ())
        }
        try:
            if trainer is not None:
                trainer.log(metrics)
                return
            entry: dict[str, Any] = dict(metrics)
            if getattr(state, "epoch", None) is not None:
                entry["epoch"] = state.epoch
            entry["step"] = state.global_step
            state.log_history.append(entry)
            if handler is not None:
                handler.on_log(args, state, control, dict(entry))
        except Exception as e:
            logger.warning("could not log energy figures: %s", e)
        finally:
            for key, value in flags.items():
                setattr(control, key, value)

    def _count(self, args: Any, state: Any) -> None:
        """The fit's work so far: samples from the optimizer steps and the batch size (an
        epoch's capped at the training set's size), optimizer steps, and input tokens when
        the Trainer counts them."""
        step = int(state.global_step)
        samples = None
        if self._step_samples:
            start_step, start_samples = self._epoch_start
            in_epoch = (step - start_step) * self._step_samples
            if self._n_train:
                in_epoch = min(in_epoch, self._n_train)
            samples = self._samples = start_samples + in_epoch
        tokens = int(state.num_input_tokens_seen) if _tokens_counted(args) else None
        self.session.update_counts(samples=samples, tokens=tokens, optimizer_steps=step)

    def _latest_saved_state(self, trainer_state: Any) -> dict[str, Any] | None:
        """The run state last saved for our configuration in the checkpoint's trainer state.

        With several callbacks of one class, the Trainer keeps a list that it appends to at each
        save, after the states it had when training began, and restores the first entries: a
        rebuilt callback takes the latest entry with its configuration instead.
        """
        saved = getattr(trainer_state, "stateful_callbacks", None) or {}
        entries = saved.get(type(self).__name__) if isinstance(saved, dict) else None
        if isinstance(entries, dict):
            entries = [entries]
        for entry in reversed(entries if isinstance(entries, list) else []):
            attributes = entry.get("attributes") if isinstance(entry, dict) else None
            if not isinstance(attributes, dict):
                continue
            resume_state = attributes.get("resume_state")
            if (
                attributes.get("configuration_key") == self.configuration_key
                and isinstance(resume_state, dict)
                and resume_state.get("tracker")
            ):
                return resume_state
        return None

    def _session_to_adopt(self, model: Any) -> EmissionsSession | None:
        """The session of the callback a rebuilt one replaces: of the latest Trainer built for
        this model, the first one not running with our configuration (or its only one), never a
        running one (another callback's run)."""
        sessions = self._trainers.sessions_of(model)
        if any(known is self.session for known in sessions):
            return None
        free = [known for known in sessions if not known.running]
        same = [known for known in free if known.configuration_key() == self.configuration_key]
        if same:
            return same[0]
        if len(sessions) == 1 and free:  # one callback, whose arguments changed since the save
            return free[0]
        if sessions:
            logger.debug(
                "no callback of this Trainer has the configuration %s: the rebuilt "
                "callback keeps its own session",
                self.configuration_key,
            )
        return None

    def _adopt(self, model: Any, trainer_state: Any) -> None:
        """The Trainer rebuilt us from a checkpoint: take over the session of the callback we
        replace, and resume the run last saved for our configuration."""
        if not self._rebuilt:
            return
        self._rebuilt = False
        pending = self.session.take_pending_resume()
        pending = self._latest_saved_state(trainer_state) or pending
        other = self._session_to_adopt(model) if model is not None else None
        if other is not None:
            self.session = other
        if pending:
            self.session.load_state_dict(pending)

    @staticmethod
    def _epoch(state: Any) -> int:
        return int(math.floor((state.epoch or 0.0) + 1e-9))

    @staticmethod
    def _predict_flow(event: str, args: Any, state: Any, control: Any) -> Any:
        """What the Trainer's default flow will decide at this event (evaluate? save?)."""
        try:
            predicted = dataclasses.replace(control)
            result = getattr(_DefaultFlowCallback(), event)(args, state, predicted)
            return result if result is not None else predicted
        except Exception:
            return control

    # -- events -----------------------------------------------------------------------------

    def on_init_end(
        self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any
    ) -> None:
        self._trainers.register(model, state, self.session)
        self._check_report_to(args)

    def on_train_begin(
        self,
        args: Any,
        state: Any,
        control: Any,
        model: Any = None,
        optimizer: Any = None,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        self._adopt(model, state)
        self._check_report_to(args)
        info: dict[str, Any] = {"framework_version": _transformers.__version__}
        if model is not None:
            info.update(torch_model_info(model))
        if optimizer is not None:
            inner = getattr(optimizer, "optimizer", optimizer)
            info["optimizer"] = type(inner).__name__
        num_epochs = getattr(state, "num_train_epochs", None) or getattr(
            args, "num_train_epochs", None
        )
        if num_epochs:
            info["epochs"] = int(math.ceil(num_epochs))
        dataset = getattr(train_dataloader, "dataset", None)
        if dataset is not None:
            info.update(
                dataset_info(dataset, batch_size=getattr(args, "per_device_train_batch_size", None))
            )
        self._plan_counts(args, state, info.get("n_samples"))
        steps_first = bool(self.session.window_every_n_steps or self.session.window_every_seconds)
        unit, planned, done = "epoch", (float(num_epochs) if num_epochs else None), 0.0
        done = float(self._epoch(state))
        if steps_first and (getattr(state, "max_steps", None) or 0) > 0:
            unit, planned, done = "step", float(state.max_steps), float(state.global_step)
        self.session.begin_run(
            "fit",
            rank=int(getattr(args, "process_index", 0) or 0),
            info=info,
            unit=unit,
            planned=planned,
            done=done,
        )
        self._last_step = -1
        if getattr(args, "eval_on_start", False):
            self.session.begin_phase("validation")

    def _plan_counts(self, args: Any, state: Any, n_train: Any) -> None:
        try:
            self._step_samples = (
                int(args.per_device_train_batch_size)
                * int(args.gradient_accumulation_steps)
                * int(getattr(args, "world_size", 1) or 1)
            )
        except (AttributeError, TypeError, ValueError):
            self._step_samples = None
        self._n_train = n_train if isinstance(n_train, int) else None
        self._epoch_start, self._samples = (int(state.global_step), 0), 0
        if not _tokens_counted(args):
            warn_once(
                "tokens-off",
                "energy per token is left empty: the Trainer does not count input tokens. "
                "Turn it on with TrainingArguments(include_num_input_tokens_seen=True).",
                log=logger,
                level=logging.INFO,
            )

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._epoch_start = (int(state.global_step), self._samples)
        self.session.begin_epoch(self._epoch(state))

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        session = self.session
        if not session.running:
            return
        step = int(state.global_step)
        self._count(args, state)
        if (
            session.window_every_n_steps or session.window_every_seconds
        ) and step != self._last_step:
            self._last_step = step
            metrics = session.on_step(
                step, planned_steps=float(state.max_steps) if state.max_steps else None
            )
            self._log(args, state, control, metrics)
            if session.stop_requested:
                control.should_training_stop = True
        flow = self._predict_flow("on_step_end", args, state, control)
        if control.should_evaluate or flow.should_evaluate:
            session.begin_phase("validation")
        elif control.should_save or flow.should_save:
            session.begin_phase("other", "checkpoint")

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        session = self.session
        if not session.running:
            return
        epoch = session.epoch if session.epoch is not None else max(0, self._epoch(state) - 1)
        metrics = session.end_epoch(epoch, done=epoch + 1)
        if session.stop_requested:
            control.should_training_stop = True
        flow = self._predict_flow("on_epoch_end", args, state, control)
        if control.should_evaluate or flow.should_evaluate:
            session.begin_phase("validation")
        self._log(args, state, control, metrics)

    def on_prediction_step(
        self,
        args: Any,
        state: Any,
        control: Any,
        model: Any = None,
        eval_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        session = self.session
        if session.running:
            if session.stage == "fit" and session.current_phase != "validation":
                session.begin_phase(
                    "validation"
                )  # an evaluation nobody announced: late by one batch
            return
        # A standalone evaluate()/predict() without attach(): the first batch tells it began.
        self._begin_eval_run(
            args, state, model, "validate", getattr(eval_dataloader, "dataset", None)
        )

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
    ) -> None:
        self._end_evaluation(args, state, control, "eval")

    def on_predict(
        self, args: Any, state: Any, control: Any, metrics: Any = None, **kwargs: Any
    ) -> None:
        self._end_evaluation(args, state, control, "predict")

    def _end_evaluation(self, args: Any, state: Any, control: Any, prefix: str) -> None:
        session = self.session
        if not session.running:
            return
        if session.stage == "fit":
            continues = (
                session.in_epoch and not control.should_save and not control.should_training_stop
            )
            metrics = session.end_phase(training_continues=continues)
            self._log(
                args, state, control, {k.replace("val_", "eval_", 1): v for k, v in metrics.items()}
            )
            return
        self._log(args, state, control, end_eval_run(session, prefix))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        session = self.session
        if session.running and session.in_epoch and session.current_phase == "other":
            session.end_phase(training_continues=True)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.session.end_run()


__all__ = ["EmissionsCallback"]

"""Energy and emissions per epoch for Keras 3 (any backend; tested on torch and JAX).

Example:
    >>> import keras
    >>> from codecarbon_callbacks.keras import EmissionsCallback
    >>> callback = EmissionsCallback(country_iso_code="FRA", task_family="image classification")
    >>> history = model.fit(x, y, epochs=3, callbacks=[callback])  # doctest: +SKIP
    >>> history.history["epoch_energy_kwh"]  # doctest: +SKIP

The figures are added to each epoch's ``logs``, so ``History.history`` and every callback after
this one get them all; the progress bar shows only ``progress_bar_keys`` of them (two by
default). Only epoch-level hooks are used: batch-level hooks would disable Keras' asynchronous
dispatch. Keras has no exception hook: a ``fit`` that raises leaves its run open, and it is
written with status ``incomplete`` when the process exits (or when the next run begins).
See docs/callbacks.md.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from codecarbon_callbacks_core._shared import write_json_atomic

from codecarbon_callbacks.introspect import TORCH_QUANTIZATION, guess_data_type
from codecarbon_callbacks.metrics import EPOCH_METRIC_KEYS, VAL_METRIC_KEYS, WORK_UNITS
from codecarbon_callbacks.options import CallbackOptions, end_eval_run
from codecarbon_callbacks.session import EmissionsSession, missing_framework_error

try:
    import keras as _keras
# ValueError: keras' own error for a KERAS_BACKEND that names no backend
except (ImportError, ValueError) as _error:  # pragma: no cover - exercised in a subprocess test
    raise missing_framework_error("keras", __name__, _error) from _error

logger = logging.getLogger(__name__)

#: the energy figures on the progress bar by default (all of them stay in ``logs``/``History``)
DEFAULT_PROGRESS_BAR_KEYS = ("epoch_energy_kwh", "epoch_emissions_kg")
#: every figure name an epoch's logs can hold
FIGURE_KEYS = frozenset(
    EPOCH_METRIC_KEYS
    + VAL_METRIC_KEYS
    + ("forecast_energy_kwh", "forecast_emissions_kg")
    + tuple(f"epoch_{k}" for k in (*WORK_UNITS, *WORK_UNITS.values()))
)


def _progress_bar_keys(keys: Any) -> frozenset[str] | None:
    """``progress_bar_keys`` checked: None (all figures) or figure names (ValueError else)."""
    if keys is None:
        return None
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise ValueError(f"progress_bar_keys must be a list of figure names or None, got {keys!r}")
    unknown = [k for k in keys if k not in FIGURE_KEYS]
    if unknown:
        raise ValueError(
            f"progress_bar_keys: unknown figure(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(FIGURE_KEYS))})"
        )
    return frozenset(keys)


def _fit_frames(callback: Any) -> tuple[Any, Any]:
    """The ``CallbackList`` running this hook and the epoch iterator of the ``fit`` that made it
    (found on the call stack), each None when not found."""
    from keras.callbacks import CallbackList

    callbacks = iterator = None
    frame: FrameType | None = sys._getframe(1)
    for _ in range(6):
        if frame is None:
            break
        owner = frame.f_locals.get("self")
        if isinstance(owner, CallbackList) and any(c is callback for c in owner.callbacks):
            callbacks = owner
        elif callbacks is not None and "epoch_iterator" in frame.f_locals:
            iterator = frame.f_locals["epoch_iterator"]
            break
        frame = frame.f_back
    return callbacks, iterator


class EmissionsCallback(_keras.callbacks.Callback):
    """A Keras 3 ``Callback`` that measures energy and emissions per epoch and phase.

    Args:
        tracker: an existing ``EmissionsTracker`` to use instead of creating one; the callback
            starts it if it is not running and stops only what it started.
        task_family: BoAmps ``taskFamily`` (e.g. ``"image classification"``).
        task_stage: BoAmps ``taskStage`` (default: ``training``, ``inference`` for
            evaluate/predict).
        task: BoAmps task fields overriding the automatic ones (camelCase dict).
        dataset: BoAmps dataset dict(s) overriding the automatic one.
        max_energy_kwh: stop training (``model.stop_training``) before this energy is exceeded.
        max_emissions_kg: the same for emissions in kg CO2eq.
        window_every_n_steps: not available with Keras (it needs batch hooks); pass
            ``steps_per_epoch`` to ``fit`` for shorter epochs instead.
        window_every_seconds: not available with Keras, for the same reason.
        state_path: a JSON file where the run's state (run_id, cumulative totals) is written at
            each epoch's end and read at ``fit`` begin, to resume a run; put it beside
            ``BackupAndRestore``'s ``backup_dir``. It is deleted when ``fit`` completes, as
            ``BackupAndRestore`` deletes its backup.
        progress_bar_keys: the figures the progress bar shows (default
            ``("epoch_energy_kwh", "epoch_emissions_kg")``; None: all of them). ``logs``,
            ``History`` and the other callbacks get every figure either way.
        verbose: print one line when ``fit`` ends, on rank zero: the run's energy (kWh),
            emissions (kg CO2eq) and where its reports are; False prints nothing.
        **tracker_kwargs: the tracker's parameters (``country_iso_code="FRA"`` makes it offline).
    """

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
        state_path: str | os.PathLike[str] | None = None,
        progress_bar_keys: Sequence[str] | None = DEFAULT_PROGRESS_BAR_KEYS,
        verbose: bool = True,
        **tracker_kwargs: Any,
    ) -> None:
        super().__init__()
        self.progress_bar_keys = _progress_bar_keys(progress_bar_keys)
        for name, value in (
            ("window_every_n_steps", window_every_n_steps),
            ("window_every_seconds", window_every_seconds),
        ):
            if value is not None:
                raise ValueError(
                    f"{name} is not available with Keras: it needs batch-level hooks, which "
                    "disable Keras' asynchronous dispatch. Pass steps_per_epoch to fit() for "
                    "shorter epochs instead."
                )
        options = CallbackOptions(
            tracker=tracker,
            task_family=task_family,
            task_stage=task_stage,
            task=task,
            dataset=dataset,
            max_energy_kwh=max_energy_kwh,
            max_emissions_kg=max_emissions_kg,
            verbose=verbose,
            tracker_kwargs=tracker_kwargs,
        )
        self.session = EmissionsSession("keras", options=options)
        self.state_path = os.fspath(state_path) if state_path is not None else None
        self._in_fit = False
        #: work counted from the fit's optimizer iterations: (samples per batch, samples per
        #: epoch), the iterations at fit begin and epoch begin, the samples so far
        self._batch: tuple[int | None, int | None] = (None, None)
        self._iterations = (0, 0)
        self._samples = 0

    # -- public -----------------------------------------------------------------------------

    @property
    def tracker(self) -> Any:
        """The tracker of the current or last run (None before training starts)."""
        return self.session.tracker

    def summary(self) -> dict[str, Any]:
        """The run's totals and per-window and per-epoch figures (no file read)."""
        return self.session.summary()

    def state_dict(self) -> dict[str, Any]:
        """The run's state (run_id, cumulative totals) as JSON-able data."""
        return self.session.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the run saved by state_dict() at the next ``fit``."""
        self.session.load_state_dict(state)

    # -- helpers ----------------------------------------------------------------------------

    def _info(self, stage: str) -> dict[str, Any]:
        model = self.model
        info: dict[str, Any] = {"framework_version": str(getattr(_keras, "__version__", ""))}
        if model is None:
            return info
        info["class_path"] = f"{type(model).__module__}.{type(model).__qualname__}"
        try:
            info["parameters"] = int(model.count_params())
        except Exception:
            pass
        try:
            info["layers"] = len([layer for layer in model.layers if layer.weights])
        except Exception:
            pass
        policy = getattr(getattr(model, "dtype_policy", None), "name", None)
        if policy:
            info["quantization"] = TORCH_QUANTIZATION.get(str(policy))
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and stage == "fit":
            info["optimizer"] = type(optimizer).__name__
        params = self.params or {}
        if stage == "fit" and isinstance(params.get("epochs"), int):
            info["epochs"] = params["epochs"]
        try:
            inputs = model.inputs
            if inputs:
                first = inputs[0]
                shape = tuple(first.shape)
                info["input_shape"] = (
                    "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"
                )

                class _Sample:  # a sample without the batch axis, for the type guess
                    def __init__(self, shape: tuple[Any, ...], dtype: Any) -> None:
                        self.shape = tuple(-1 if d is None else d for d in shape)
                        self.dtype = dtype

                info["data_type"] = guess_data_type(_Sample(shape[1:], getattr(first, "dtype", "")))
        except Exception:
            pass
        return info

    def _write_state(self) -> None:
        if not self.state_path or not self.session.is_writer:
            return
        try:
            write_json_atomic(self.state_path, self.session.state_dict())
        except Exception as e:  # a state file failing must not stop training
            logger.warning("could not write the emissions state file %s: %s", self.state_path, e)

    def _read_state(self) -> None:
        if not self.state_path or not os.path.exists(self.state_path):
            return
        try:
            with open(self.state_path) as handle:
                state = json.load(handle)
            self.session.load_state_dict(state)
            logger.info(
                "resuming emissions run %s from %s",
                (state.get("tracker") or {}).get("run_id"),
                self.state_path,
            )
        except Exception as e:
            logger.warning(
                "could not resume from the emissions state file %s: %s", self.state_path, e
            )

    def _filter_progress_bar(self, callbacks: Any) -> None:
        """Let this fit's progress bar show only ``progress_bar_keys`` of our figures (its
        ``on_epoch_end`` gets a filtered copy of ``logs``; everything else gets them all)."""
        bar = getattr(callbacks, "_progbar", None)
        if bar is None or self.progress_bar_keys is None:
            return
        original = getattr(bar, "_codecarbon_on_epoch_end", None) or bar.on_epoch_end
        shown = self.progress_bar_keys

        def on_epoch_end(epoch: int, logs: dict[str, Any] | None = None) -> None:
            hidden = FIGURE_KEYS - shown
            original(epoch, {k: v for k, v in (logs or {}).items() if k not in hidden})

        bar._codecarbon_on_epoch_end = original  # a bar the user gave is wrapped once
        bar.on_epoch_end = on_epoch_end

    def _plan_counts(self, iterator: Any) -> None:
        """Samples per batch and per epoch from the fit's data adapter (arrays: exact; a
        dataset without a batch size: unknown), and the optimizer's iterations so far."""
        adapter = getattr(iterator, "data_adapter", None)
        batch = getattr(adapter, "batch_size", None)
        batches = getattr(adapter, "num_batches", None)
        per_epoch = None
        if isinstance(batch, int) and isinstance(batches, int):
            partial = getattr(adapter, "partial_batch_size", None)
            per_epoch = (batches - 1) * batch + (partial or batch)
        self._batch = (batch if isinstance(batch, int) else None, per_epoch)
        self._iterations = (self._optimizer_iterations(),) * 2
        self._samples = 0

    def _optimizer_iterations(self) -> int:
        try:
            return int(_keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        except Exception:
            return 0

    def _count_epoch(self) -> None:
        """The epoch's optimizer steps and samples, into the session before the epoch ends."""
        now = self._optimizer_iterations()
        fit_start, epoch_start = self._iterations
        batch, per_epoch = self._batch
        samples = None
        if batch is not None:
            epoch_samples = (now - epoch_start) * batch
            self._samples += epoch_samples if per_epoch is None else min(epoch_samples, per_epoch)
            samples = self._samples
        self._iterations = (fit_start, now)
        self.session.update_counts(samples=samples, optimizer_steps=now - fit_start)

    # -- fit ----------------------------------------------------------------------------------

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = True
        callbacks, iterator = _fit_frames(self)
        self._filter_progress_bar(callbacks)
        self._plan_counts(iterator)
        self._read_state()
        epochs = (self.params or {}).get("epochs")
        self.session.begin_run(
            "fit",
            rank=0,
            info=self._info("fit"),
            unit="epoch",
            planned=float(epochs) if isinstance(epochs, int) else None,
            done=float(getattr(self.model, "_initial_epoch", 0) or 0),
        )

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._iterations = (self._iterations[0], self._optimizer_iterations())
        self.session.begin_epoch(int(epoch))

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._in_fit:
            self._count_epoch()  # the epoch's training part ends here
            self.session.begin_phase("validation")
        else:
            self.session.begin_run("test", rank=0, info=self._info("test"))

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._in_fit:
            self.session.end_phase(training_continues=False)
            return
        self._end_eval_run("test", logs)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self.session.current_phase == "train":  # no validation pass closed the training
            self._count_epoch()
        metrics = self.session.end_epoch(int(epoch), done=int(epoch) + 1)
        if logs is not None and metrics:
            # no validation pass -> 0, so that History's val lists line up with the epochs; the
            # forecast only from the second epoch (no NaN): its History lists start there
            for key in VAL_METRIC_KEYS:
                metrics.setdefault(key, 0.0)
            logs.update(metrics)
        self._write_state()
        if self.session.stop_requested and self.model is not None:
            self.model.stop_training = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = False
        self.session.end_run()
        if self.state_path and os.path.exists(self.state_path):
            try:
                os.remove(self.state_path)
            except OSError as e:
                logger.debug("could not remove %s: %s", self.state_path, e)

    # -- evaluate, predict ----------------------------------------------------------------------

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self._in_fit:
            self.session.begin_run("predict", rank=0, info=self._info("predict"))

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        if not self._in_fit:
            self._end_eval_run("predict", logs)

    def _end_eval_run(self, prefix: str, logs: dict[str, Any] | None) -> None:
        metrics = end_eval_run(self.session, prefix)
        if logs is not None:
            logs.update(metrics)


__all__ = ["EmissionsCallback"]

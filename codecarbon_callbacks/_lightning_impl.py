"""The one implementation behind ``codecarbon_callbacks.lightning`` and ``.pytorch_lightning``.

Lightning's Trainer only accepts callbacks of its own package (``lightning.pytorch.Callback`` or
``pytorch_lightning.Callback``), so each adapter module defines its class from this mixin and its
package's ``Callback``. This module imports no framework: the hooks only use the objects Lightning
passes in.
"""

from __future__ import annotations

import array
import functools
import logging
import math
from typing import Any

from codecarbon_callbacks.batch_size import SampleCounter
from codecarbon_callbacks.introspect import dataset_info, torch_model_info
from codecarbon_callbacks.options import CallbackOptions, end_eval_run
from codecarbon_callbacks.session import EmissionsSession

logger = logging.getLogger(__name__)


@functools.cache
def _extract_batch_size() -> Any:
    """Lightning's ``extract_batch_size``, imported once (it runs at every training batch)."""
    try:
        from lightning.pytorch.utilities.data import extract_batch_size
    except ImportError:  # the pytorch_lightning package alone
        from pytorch_lightning.utilities.data import extract_batch_size
    return extract_batch_size


def _lightning_batch_size(batch: Any) -> int:
    """Lightning's own walk, for batches without a stable path to their first tensor."""
    return int(_extract_batch_size()(batch))


def _fixed_loader(trainer: Any) -> Any:
    """The training loader, for :meth:`SampleCounter.use` to count its batches where its
    batching is fixed; None where the samples must be read from each batch: loaders reloaded
    during the fit, or a fit resumed from a checkpoint (it may begin in the middle of an
    epoch). Several training loaders are not a DataLoader: use() reads them per batch."""
    try:
        if getattr(trainer, "ckpt_path", None) or getattr(
            trainer, "reload_dataloaders_every_n_epochs", 0
        ):
            return None
        return getattr(trainer, "train_dataloader", None)  # SampleCounter.use() checks it
    except Exception:  # introspection is best effort: read each batch
        return None


def _resumes_mid_epoch(trainer: Any) -> bool:
    """Whether this fit resumes inside an epoch with training left in it (a checkpoint saved
    during the epoch), where Lightning calls no ``on_train_epoch_start``: its restart stage
    (set by ``on_train_start``), and training batches left (a checkpoint saved at a batch's end
    resumes after it, or runs the next epoch whole when it was the last; one saved at the
    epoch's validation end has none left)."""
    try:
        loop = trainer.fit_loop
        if not loop.restarted_mid_epoch:
            return False
        epoch_loop = loop.epoch_loop
        if epoch_loop.restarted_on_train_batch_end:
            return True
        return bool(epoch_loop.batch_progress.current.completed < trainer.num_training_batches)
    except Exception:  # another Lightning: the epoch begins at its next start hook
        return False


def _first_loader(loaders: Any) -> Any:
    if loaders is None:
        return None
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    if isinstance(loaders, dict):
        return next(iter(loaders.values()), None)
    iterables = getattr(loaders, "iterables", None)  # CombinedLoader
    if iterables is not None and iterables is not loaders:
        return _first_loader(iterables)
    return loaders


def _loader_info(loader: Any) -> dict[str, Any]:
    loader = _first_loader(loader)
    if loader is None:
        return {}
    try:
        return dataset_info(
            getattr(loader, "dataset", None), batch_size=getattr(loader, "batch_size", None)
        )
    except Exception as e:  # introspection is best effort
        logger.debug("could not describe the dataloader: %s", e)
        return {}


class LightningEmissionsMixin:
    """Hooks of the Lightning callback; see ``codecarbon_callbacks.lightning.EmissionsCallback``."""

    #: framework name for metadata, set by each adapter
    _framework_name = "lightning"
    #: the framework's version, set by each adapter
    _framework_version = ""

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
        super().__init__()
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
        self.session = EmissionsSession(self._framework_name, options=options)
        self._last_logged_step = -1
        #: training samples this rank saw in the fit
        self._samples = SampleCounter(fallback=_lightning_batch_size)
        #: the fit's world size (read once per fit: a property chain through the strategy)
        self._world = 1
        #: whether the session has step or time windows (read once per fit)
        self._step_windows = False
        #: the figures' last values and their tensors (see _set_callback_metrics)
        self._tensors: dict[str, tuple[float, Any]] = {}
        self._state_key: str | None = None

    # -- public -----------------------------------------------------------------------------

    @property
    def tracker(self) -> Any:
        """The tracker of the current or last run (None before training starts)."""
        return self.session.tracker

    def summary(self) -> dict[str, Any]:
        """The run's totals and per-window and per-epoch figures (no file read)."""
        return self.session.summary()

    # -- helpers ----------------------------------------------------------------------------

    def _info(self, trainer: Any, pl_module: Any, stage: str) -> dict[str, Any]:
        info: dict[str, Any] = {"framework_version": self._framework_version}
        info.update(torch_model_info(pl_module))
        if stage == "fit":
            max_epochs = getattr(trainer, "max_epochs", None)
            if isinstance(max_epochs, int) and max_epochs > 0:
                info["epochs"] = max_epochs
        return info

    def _plan(self, trainer: Any) -> tuple[str, float | None]:
        max_steps = getattr(trainer, "max_steps", -1) or -1
        max_epochs = getattr(trainer, "max_epochs", None)
        steps_first = bool(self.session.window_every_n_steps or self.session.window_every_seconds)
        if max_steps > 0 and steps_first:
            return "step", float(max_steps)
        epochs: float | None = (
            float(max_epochs) if isinstance(max_epochs, int) and max_epochs > 0 else None
        )
        if max_steps > 0:
            try:
                per_epoch = float(trainer.num_training_batches) / max(
                    1, trainer.accumulate_grad_batches
                )
                if math.isfinite(per_epoch) and per_epoch > 0:
                    by_steps = math.ceil(max_steps / per_epoch)
                    epochs = min(epochs, by_steps) if epochs is not None else by_steps
            except Exception:
                pass
        return "epoch", epochs

    @staticmethod
    def _step(trainer: Any) -> int:
        try:
            return int(trainer.fit_loop.epoch_loop._batches_that_stepped)
        except Exception:
            return int(getattr(trainer, "global_step", 0))

    def _log(self, trainer: Any, metrics: dict[str, float], step: int | None = None) -> None:
        """Send figures to every logger of the trainer, on rank zero, at the epoch's step."""
        if not metrics or not getattr(trainer, "is_global_zero", True):
            return
        step = self._step(trainer) if step is None else step
        for trainer_logger in getattr(trainer, "loggers", []) or []:
            try:
                trainer_logger.log_metrics(dict(metrics), step=step)
            except Exception as e:  # a logger failing must not stop training
                logger.warning(
                    "could not log energy figures to %s: %s", type(trainer_logger).__name__, e
                )

    def _publish(self, trainer: Any, pl_module: Any, metrics: dict[str, float]) -> None:
        """A train epoch's figures (every rank, float64, combined over ranks already): into
        ``trainer.callback_metrics`` and ``logged_metrics`` for the monitoring callbacks that run
        after this hook (EarlyStopping, ModelCheckpoint), and to every logger at the step of
        Lightning's own epoch figures (the last batch's step: Lightning logs its epoch-end figures
        one step back), with ``epoch`` as Lightning adds it.

        Not through ``LightningModule.log``: it costs about 0.1-0.2 ms a key (a copy and a device
        move of the logged results per call), some 4 ms an epoch for our 26 figures."""
        self._set_callback_metrics(trainer, metrics, logged=True)
        if getattr(trainer, "loggers", None):
            step = max(0, self._step(trainer) - 1)
            self._log(trainer, {**metrics, "epoch": int(trainer.current_epoch)}, step=step)

    def _set_callback_metrics(
        self, trainer: Any, metrics: dict[str, float], *, logged: bool = False
    ) -> None:
        """Figures into ``trainer.callback_metrics`` (float64 tensors) where ``log`` is not
        allowed (``on_validation_end``): callbacks checking after this one see them."""
        try:
            import torch

            # A figure unchanged since the last call (the epoch's end repeats its validation
            # end's) keeps its tensor; the others get one tensor over a buffer of doubles (a
            # third of torch.tensor()'s cost from a list), then a 0-d view each (a third of the
            # cost of a tensor per value). Tensors are never changed in place.
            cache = self._tensors
            fresh = [k for k, v in metrics.items() if k not in cache or cache[k][0] != v]
            if fresh:
                buffer = array.array("d", [metrics[k] for k in fresh])
                values = torch.frombuffer(buffer, dtype=torch.float64)
                cache.update((k, (metrics[k], t)) for k, t in zip(fresh, values.unbind()))
            tensors = {k: cache[k][1] for k in metrics}
            trainer.callback_metrics.update(tensors)
            if logged:
                trainer.logged_metrics.update(tensors)
        except Exception as e:
            logger.debug("could not set the energy figures in callback_metrics: %s", e)

    def _counts(self, trainer: Any) -> dict[str, int | None]:
        """The fit's work so far, read by the session at window and epoch edges: samples over
        all ranks (this rank's times the world size; None when no batch had a tensor) and
        optimizer steps."""
        samples = self._samples.samples
        return {
            "samples": samples * self._world if samples is not None else None,
            "optimizer_steps": int(trainer.global_step),
        }

    def _warn_if_not_alone(self, trainer: Any) -> None:
        """Several EmissionsCallbacks in one trainer each write their own reports, but they log
        their figures under the same keys: ``callback_metrics`` and the loggers hold the last
        one's. Said once per process, with the package's warning category."""
        others = [
            c
            for c in getattr(trainer, "callbacks", None) or []
            if c is not self and isinstance(c, LightningEmissionsMixin)
        ]
        if others:
            from codecarbon_callbacks_core._shared import warn_once
            from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning

            warn_once(
                "lightning-several-callbacks",
                "%d EmissionsCallbacks in one trainer: each writes its own reports, but their "
                "figures share the same keys in callback_metrics and the loggers, where the last "
                "one's win; monitor or log energy with one of them",
                len(others) + 1,
                log=logger,
                category=CodeCarbonCallbacksWarning,
            )

    @staticmethod
    def _fn(trainer: Any) -> str:
        fn = getattr(getattr(trainer, "state", None), "fn", None)
        return str(getattr(fn, "value", fn) or "")

    # -- fit --------------------------------------------------------------------------------

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._warn_if_not_alone(trainer)
        unit, planned = self._plan(trainer)
        done = (
            float(getattr(trainer, "current_epoch", 0) or 0)
            if unit == "epoch"
            else float(trainer.global_step)
        )
        self.session.begin_run(
            "fit",
            rank=int(getattr(trainer, "global_rank", 0) or 0),
            info=self._info(trainer, pl_module, "fit"),
            unit=unit,
            planned=planned,
            done=done,
        )
        self._last_logged_step = -1
        self._samples.reset()
        self._tensors = {}
        self._world = int(getattr(trainer, "world_size", 1) or 1)
        self._step_windows = bool(
            self.session.window_every_n_steps or self.session.window_every_seconds
        )
        self.session.count_with(functools.partial(self._counts, trainer))

    def on_sanity_check_start(self, trainer: Any, pl_module: Any) -> None:
        self.session.begin_phase("validation", "sanity check")

    def on_sanity_check_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.end_phase(training_continues=False)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        info: dict[str, Any] = {}
        optimizers = getattr(trainer, "optimizers", None) or []
        if optimizers:
            info["optimizer"] = type(optimizers[0]).__name__
        info.update(_loader_info(getattr(trainer, "train_dataloader", None)))
        self.session.update_info(info)
        unit, planned = self._plan(trainer)  # num_training_batches is known from here on
        self.session.set_plan(unit=unit, planned=planned)
        self._samples.use(_fixed_loader(trainer))
        if _resumes_mid_epoch(trainer):  # Lightning calls no on_train_epoch_start for it
            self.on_train_epoch_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._samples.epoch_began()
        self.session.begin_epoch(int(trainer.current_epoch))

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # the batch's samples only (one integer added, or a few item lookups): the session reads
        # the counts at edges
        samples = self._samples
        if samples.fast:
            samples.epoch_batches += 1
            if (
                samples.epoch_batches == samples.last_batch
                or samples.batch_sampler.batch_size != samples.batch_size
            ):
                samples.check(batch)  # the epoch's last batch, or the batch size was changed
        else:
            samples.batch(batch)
        if not self._step_windows:
            return
        step = int(trainer.global_step)
        if step == self._last_logged_step:
            return  # gradient accumulation: several batches per optimizer step
        self._last_logged_step = step
        max_steps = getattr(trainer, "max_steps", -1)
        metrics = self.session.on_step(
            step, planned_steps=float(max_steps) if max_steps and max_steps > 0 else None
        )
        self._log(trainer, metrics)
        if self.session.stop_requested:
            trainer.should_stop = True

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if getattr(trainer, "sanity_checking", False):
            return
        if self._fn(trainer) == "validate":
            self.session.begin_run(
                "validate",
                rank=int(getattr(trainer, "global_rank", 0) or 0),
                info={
                    **self._info(trainer, pl_module, "validate"),
                    **_loader_info(getattr(trainer, "val_dataloaders", None)),
                },
            )
            return
        self.session.begin_phase("validation")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if getattr(trainer, "sanity_checking", False):
            return
        if self._fn(trainer) == "validate":
            self._end_eval_run(trainer, "val")
            return
        try:
            continues = not bool(trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
        except Exception:
            continues = False
        # The epoch's validation passes are logged together with the epoch (val_energy_kwh);
        # a monitor checking at validation end sees this pass and the epoch's training so far,
        # and the run's totals so far (total_*: there from the first validation on).
        self.session.end_phase(training_continues=continues)
        figures = self.session.epoch_figures()
        figures.update(self.session.totals_so_far())
        self._set_callback_metrics(trainer, figures)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        epoch = int(trainer.current_epoch)
        metrics = self.session.end_epoch(epoch, done=epoch + 1)
        if metrics:
            self._publish(trainer, pl_module, metrics)
        if self.session.stop_requested:
            trainer.should_stop = True

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.end_run()
        self._samples.loader = None  # the fit's data is not kept alive by the callback

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.session.fail(exception)
        self._samples.loader = None

    # -- test, predict ------------------------------------------------------------------------

    def _end_eval_run(self, trainer: Any, prefix: str) -> None:
        metrics = end_eval_run(self.session, prefix)
        if metrics:
            self._log(trainer, metrics, step=int(getattr(trainer, "global_step", 0)))

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        info = {
            **self._info(trainer, pl_module, "test"),
            **_loader_info(getattr(trainer, "test_dataloaders", None)),
        }
        if "n_samples" in info:
            info["nb_request"] = info["n_samples"]
        self.session.begin_run("test", rank=int(getattr(trainer, "global_rank", 0) or 0), info=info)

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._end_eval_run(trainer, "test")

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        info = {
            **self._info(trainer, pl_module, "predict"),
            **_loader_info(getattr(trainer, "predict_dataloaders", None)),
        }
        if "n_samples" in info:
            info["nb_request"] = info["n_samples"]
        self.session.begin_run(
            "predict", rank=int(getattr(trainer, "global_rank", 0) or 0), info=info
        )

    def on_predict_end(self, trainer: Any, pl_module: Any) -> None:
        self.session.end_run()

    # -- checkpoints ----------------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        """Where Lightning keeps this callback's state in a checkpoint: the class and a digest of
        its configuration (``EmissionsSession.configuration_key``), so that several callbacks
        with different configurations (output folders, projects) fit in one Trainer, each
        resuming its own run; the same arguments give the same key in the resumed process."""
        # read at every hook call of every callback (Lightning's profiler names the call with
        # it): built once
        key = self._state_key
        if key is None:
            key = f"{type(self).__qualname__}{{'config': {self.session.configuration_key()!r}}}"
            self._state_key = key
        return key

    def state_dict(self) -> dict[str, Any]:
        """JSON-able state saved in Lightning checkpoints: run_id and cumulative totals (never
        an argument, so never a secret)."""
        return self.session.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume the run saved in a checkpoint (same run_id, totals carried over)."""
        self.session.load_state_dict(state_dict)

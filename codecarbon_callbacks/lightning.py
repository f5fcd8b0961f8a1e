"""Energy and emissions per epoch for PyTorch Lightning (the ``lightning`` package).

Example:
    >>> import lightning.pytorch as pl
    >>> from codecarbon_callbacks.lightning import EmissionsCallback
    >>> callback = EmissionsCallback(country_iso_code="FRA", task_family="image classification")
    >>> trainer = pl.Trainer(max_epochs=3, callbacks=[callback])  # doctest: +SKIP
    >>> trainer.fit(model, datamodule)  # doctest: +SKIP
    >>> callback.summary()["totals"]["energy_kwh"]  # doctest: +SKIP

Users of the older ``pytorch_lightning`` package import
``codecarbon_callbacks.pytorch_lightning.EmissionsCallback`` instead: Lightning's Trainer only
accepts its own package's callbacks. See docs/callbacks.md.
"""

from __future__ import annotations

from codecarbon_callbacks.session import missing_framework_error

try:
    import lightning as _lightning
    from lightning.pytorch import Callback as _Callback
except ImportError as _error:  # pragma: no cover - exercised in a subprocess test
    raise missing_framework_error("lightning", __name__, _error) from _error

from codecarbon_callbacks._lightning_impl import LightningEmissionsMixin


class EmissionsCallback(LightningEmissionsMixin, _Callback):
    """A ``lightning.pytorch.Callback`` that measures energy and emissions per epoch and phase.

    Args:
        tracker: an existing ``EmissionsTracker`` to use instead of creating one; the callback
            starts it if it is not running and stops only what it started.
        task_family: BoAmps ``taskFamily`` (e.g. ``"image classification"``).
        task_stage: BoAmps ``taskStage`` (default: ``training``, ``finetuning`` when a pretrained
            model is detected, ``inference`` for test/predict).
        task: BoAmps task fields overriding the automatic ones (camelCase dict).
        dataset: BoAmps dataset dict(s) overriding the automatic one.
        max_energy_kwh: stop training (``trainer.should_stop``) before this energy is exceeded.
        max_emissions_kg: the same for emissions in kg CO2eq.
        window_every_n_steps: also record a step window every n optimizer steps.
        window_every_seconds: also record a time window every so many seconds.
        verbose: print one line when ``fit`` ends, on rank zero: the run's energy (kWh),
            emissions (kg CO2eq) and where its reports are; False prints nothing.
        **tracker_kwargs: the tracker's parameters (``country_iso_code="FRA"`` makes it offline).

    Example:
        >>> callback = EmissionsCallback(  # doctest: +SKIP
        ...     country_iso_code="FRA", output_dir="runs"
        ... )
    """

    _framework_name = "lightning"
    _framework_version = str(getattr(_lightning, "__version__", ""))


__all__ = ["EmissionsCallback"]

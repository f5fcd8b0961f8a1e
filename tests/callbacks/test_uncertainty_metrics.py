"""The framework logs carry an uncertainty next to each energy figure; ranks combine theirs in
quadrature (issue 16)."""

from __future__ import annotations

import time

import pytest
from codecarbon_callbacks_core.records import EmissionsData

from codecarbon_callbacks.distributed import combine_records
from codecarbon_callbacks.session import EmissionsSession


def test_epoch_metrics_put_an_uncertainty_next_to_each_energy(tracker_kwargs):
    session = EmissionsSession("custom", **tracker_kwargs)
    assert session.begin_run("fit", info={"epochs": 1}, planned=1)
    session.begin_epoch(0)
    time.sleep(0.05)
    session.begin_phase("validation")
    time.sleep(0.01)
    session.end_phase(training_continues=False)
    metrics = session.end_epoch(0, done=1, planned=1)
    session.end_run()
    energy_keys = [k for k in metrics if k.endswith("energy_kwh")]
    assert {"epoch_energy_kwh", "val_energy_kwh", "total_energy_kwh"} <= set(energy_keys)
    for key in energy_keys:
        partner = key.replace("energy_kwh", "energy_uncertainty_kwh")
        assert partner in metrics, partner
        # this machine: a constant CPU and the RAM model, both with wide bounds; no GPU (0)
        assert metrics[partner] <= 10 * metrics[key], (key, metrics)
        assert (metrics[partner] > 0) == (metrics[key] > 0), (key, metrics)
    assert metrics["epoch_emissions_uncertainty_kg"] > 0


def test_ranks_combine_their_uncertainties_in_quadrature():
    ranks = [
        {"rank": r, "machine": "m", "energy_consumed": 1.0, "energy_consumed_uncertainty_kwh": u}
        for r, u in enumerate((0.03, 0.04))
    ]
    combined = combine_records(ranks, EmissionsData())
    assert combined.energy_consumed == pytest.approx(2.0)
    assert combined.energy_consumed_uncertainty_kwh == pytest.approx(0.05)

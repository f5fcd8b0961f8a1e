"""forecast.py: the warm-up rule, the forecast at the planned count, the budget reasons."""

from __future__ import annotations

import pytest

from codecarbon_callbacks.forecast import Budget, Progress, judge, outlook, over_budget


def test_warm_up_window_is_left_out_of_the_rates() -> None:
    points = [Progress(0, 0.0, 0.0)]
    first = outlook(points, Progress(1, 10.0, 1.0), planned=5)
    assert first is not None and first.forecast is None  # warm-up: no forecast yet
    assert (first.window_units, first.next_energy_kwh, first.next_emissions_kg) == (1, 20.0, 2.0)
    second = outlook(points, Progress(2, 13.0, 1.3), planned=5)
    assert second is not None
    # rates from the windows after the warm-up: 3 kWh and 0.3 kg per unit
    assert second.next_energy_kwh == pytest.approx(16.0)
    assert second.forecast == pytest.approx(
        {"forecast_energy_kwh": 22.0, "forecast_emissions_kg": 2.2}
    )
    assert outlook(points, Progress(2, 14.0, 1.4), planned=5) is None  # no unit done since
    assert len(points) == 4
    past_plan = outlook(points, Progress(6, 26.0, 2.6), planned=5)
    assert past_plan is not None and past_plan.forecast is None


def test_over_budget_names_each_limit_passed() -> None:
    assert over_budget(1.0, 1.0, max_energy_kwh=None, max_emissions_kg=None) is None
    assert over_budget(1.0, 1.0, max_energy_kwh=1.0, max_emissions_kg=2.0) is None
    assert over_budget(2.0, 3.0, max_energy_kwh=1.0, max_emissions_kg=2.0) == (
        "2 kWh > max_energy_kwh=1; 3 kg > max_emissions_kg=2"
    )


def test_judge_forecasts_warns_once_asked_and_says_why_to_stop(caplog) -> None:
    import logging

    log = logging.getLogger("test.forecast")
    points = [Progress(0, 0.0, 0.0), Progress(1, 10.0, 1.0)]
    budget = Budget(max_energy_kwh=15.0)
    with caplog.at_level(logging.INFO, logger="test.forecast"):
        verdict = judge(
            points, Progress(2, 13.0, 1.3), planned=5, unit="epoch", budget=budget, log=log
        )
    assert verdict is not None and verdict.forecast is not None
    assert verdict.forecast_over is not None and "max_energy_kwh=15" in verdict.forecast_over
    # the next epoch would bring it to 16 kWh > 15: stop now, saying so
    assert verdict.stop_reason is not None and "16 kWh" in verdict.stop_reason
    assert any("forecast to exceed" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="test.forecast"):
        again = judge(
            points,
            Progress(3, 16.0, 1.6),
            planned=5,
            unit="epoch",
            budget=budget,
            forecast_warned=True,
            log=log,
        )
    assert again is not None and again.stop_reason is not None
    assert not any("forecast to exceed" in r.getMessage() for r in caplog.records)
    assert judge(points, Progress(3, 17.0, 1.7), planned=5, unit="epoch", budget=budget) is None

"""Progress, forecast and budget: how far a run has come, where it is heading, when to stop.

A run's progress is a list of :class:`Progress` points (units done, in epochs or steps, with the
cumulative energy and emissions at that point). :func:`outlook` turns the points into the rates
that forecast the run's end and the figures after the next window; :func:`over_budget` compares
figures with the limits. Nothing here holds a session or a tracker: the session keeps the points,
logs, and asks the trainer to stop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass


@dataclass
class Progress:
    """One point of the run's progress: units done (epochs or steps) and cumulative figures."""

    done: float
    energy_kwh: float
    emissions_kg: float


@dataclass(frozen=True)
class Outlook:
    """Where the run stands after a new point and where it is heading.

    Attributes:
        window_units: units in the window that just ended (epochs or steps).
        next_energy_kwh: the run's energy (kWh) after one more window like it.
        next_emissions_kg: the run's emissions (kg CO2eq) after one more window like it.
        forecast: ``forecast_energy_kwh`` (kWh) and ``forecast_emissions_kg`` (kg CO2eq) at
            ``planned`` units, once the rates are steady (after the warm-up window) and the
            planned count is known and not yet passed; else None.
    """

    window_units: float
    next_energy_kwh: float
    next_emissions_kg: float
    forecast: dict[str, float] | None


def outlook(points: list[Progress], point: Progress, planned: float | None) -> Outlook | None:
    """Append ``point`` to ``points`` and return the outlook, or None when no unit was done since
    the previous point (``points`` must hold the run's first point).

    The first window is warm-up: rates come from the windows after it, when there are any; until
    then from the last window alone, and no forecast is made.
    """
    previous = points[-1]
    points.append(point)
    done, energy, emissions = point.done, point.energy_kwh, point.emissions_kg
    if done <= previous.done:
        return None
    window_units = done - previous.done
    if len(points) >= 3 and done > points[1].done:
        base = points[1]
        energy_rate = (energy - base.energy_kwh) / (done - base.done)
        emissions_rate = (emissions - base.emissions_kg) / (done - base.done)
        steady = True
    else:
        energy_rate = (energy - previous.energy_kwh) / window_units
        emissions_rate = (emissions - previous.emissions_kg) / window_units
        steady = False
    forecast = None
    if steady and planned is not None and planned >= done:
        remaining = planned - done
        forecast = {
            "forecast_energy_kwh": energy + energy_rate * remaining,
            "forecast_emissions_kg": emissions + emissions_rate * remaining,
        }
    return Outlook(
        window_units=window_units,
        next_energy_kwh=energy + energy_rate * window_units,
        next_emissions_kg=emissions + emissions_rate * window_units,
        forecast=forecast,
    )


def over_budget(
    energy_kwh: float,
    emissions_kg: float,
    *,
    max_energy_kwh: float | None,
    max_emissions_kg: float | None,
) -> str | None:
    """Why ``energy_kwh`` (kWh) and ``emissions_kg`` (kg CO2eq) exceed the limits (None: a
    limit not set), or None when they do not."""
    reasons = []
    if max_energy_kwh is not None and energy_kwh > max_energy_kwh:
        reasons.append(f"{energy_kwh:.6g} kWh > max_energy_kwh={max_energy_kwh:g}")
    if max_emissions_kg is not None and emissions_kg > max_emissions_kg:
        reasons.append(f"{emissions_kg:.6g} kg > max_emissions_kg={max_emissions_kg:g}")
    return "; ".join(reasons) or None


@dataclass(frozen=True)
class Budget:
    """A run's limits, each None when not set: energy (kWh) and emissions (kg CO2eq)."""

    max_energy_kwh: float | None = None
    max_emissions_kg: float | None = None

    def over(self, energy_kwh: float, emissions_kg: float) -> str | None:
        """Why these figures exceed the limits, or None (see :func:`over_budget`)."""
        return over_budget(
            energy_kwh,
            emissions_kg,
            max_energy_kwh=self.max_energy_kwh,
            max_emissions_kg=self.max_emissions_kg,
        )


@dataclass(frozen=True)
class Verdict:
    """What a new point of progress means for the run.

    Attributes:
        forecast: as :attr:`Outlook.forecast`.
        forecast_over: why the forecast exceeds the budget, or None.
        stop_reason: why training should stop now (the next window would exceed the budget),
            a sentence for the user, or None.
    """

    forecast: dict[str, float] | None
    forecast_over: str | None
    stop_reason: str | None


def judge(
    points: list[Progress],
    point: Progress,
    *,
    planned: float | None,
    unit: str,
    budget: Budget,
    forecast_warned: bool = False,
    log: logging.Logger | None = None,
) -> Verdict | None:
    """Append ``point`` to ``points`` (as :func:`outlook`) and weigh the outlook against the
    budget; None when no unit (``unit``: ``epoch`` or ``step``) was done since the last point.

    With ``log``, the forecast is logged there (INFO), and that it exceeds the budget (WARNING)
    unless ``forecast_warned`` (the run was told already).
    """
    ahead = outlook(points, point, planned)
    if ahead is None:
        return None
    forecast = ahead.forecast
    forecast_over = None
    if forecast is not None:
        forecast_over = budget.over(
            forecast["forecast_energy_kwh"], forecast["forecast_emissions_kg"]
        )
        if log is not None:
            log.info(
                "forecast for %g %ss: %.6g kWh, %.6g kg CO2eq (%.6g kWh so far)",
                planned,
                unit,
                forecast["forecast_energy_kwh"],
                forecast["forecast_emissions_kg"],
                point.energy_kwh,
            )
            if forecast_over and not forecast_warned:
                log.warning("the run is forecast to exceed its budget: %s", forecast_over)
    over = budget.over(ahead.next_energy_kwh, ahead.next_emissions_kg)
    reason = None
    if over:
        reason = (
            f"budget: after {point.done:g} {unit}s the run has used {point.energy_kwh:.6g} kWh, "
            f"{point.emissions_kg:.6g} kg CO2eq; the next {ahead.window_units:g} {unit}(s) would "
            f"bring it to {ahead.next_energy_kwh:.6g} kWh, {ahead.next_emissions_kg:.6g} kg "
            f"CO2eq: {over}. Asking the trainer to stop."
        )
    return Verdict(forecast, forecast_over, reason)


def advance(
    points: list[Progress],
    done: float,
    metrics: dict[str, float],
    *,
    planned: float | None,
    unit: str,
    budget: Budget,
    forecast_warned: bool = False,
    log: logging.Logger | None = None,
) -> Verdict | None:
    """A new point of progress at ``done`` units, from the run's totals in ``metrics``
    (``total_energy_kwh``, ``total_emissions_kg``): :func:`judge`, with the forecast added
    to ``metrics``. None without totals or when no unit was done since the last point."""
    if "total_energy_kwh" not in metrics:
        return None
    point = Progress(done, metrics["total_energy_kwh"], metrics["total_emissions_kg"])
    verdict = judge(
        points,
        point,
        planned=planned,
        unit=unit,
        budget=budget,
        forecast_warned=forecast_warned,
        log=log,
    )
    if verdict is not None and verdict.forecast is not None:
        metrics.update(verdict.forecast)
    return verdict


__all__ = ["Budget", "Outlook", "Progress", "Verdict", "advance", "judge", "outlook", "over_budget"]

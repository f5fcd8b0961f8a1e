"""Fan-out: one delta baseline per output per run, seeded by a resume, deferrable; guarded calls."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
from codecarbon_callbacks_core import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.output.base import DEFER_DELTA, BaseOutput
from codecarbon_callbacks_core.output.fanout import OutputFanout
from codecarbon_callbacks_core.records import ADDITIVE_FIELDS, EmissionsData, totals_from_state
from output_records import make_total


class Taker(BaseOutput):
    """Records (method, total, delta); defers every delta shorter than ``min_duration``."""

    def __init__(self, min_duration: float = 0.0) -> None:
        self.calls: list[tuple[str, EmissionsData, EmissionsData]] = []
        self.min_duration = min_duration

    def _take(self, method, total, delta):
        if delta.duration < self.min_duration:
            return DEFER_DELTA
        self.calls.append((method, total, delta))
        return None

    def out(self, total, delta):
        return self._take("out", total, delta)

    def live_out(self, total, delta):
        return self._take("live_out", total, delta)


def at(seconds: float, run_id: str = "r") -> EmissionsData:
    """Cumulative totals at ``seconds``: 1 mWh and 0.1 g per second."""
    return make_total(
        run_id=run_id,
        duration=seconds,
        cpu_energy=seconds * 1e-6,
        gpu_energy=0.0,
        ram_energy=0.0,
        energy_consumed=seconds * 1e-6,
        emissions=seconds * 1e-7,
        water_consumed=0.0,
    )


def test_each_output_has_its_own_baseline_over_live_and_out() -> None:
    every, slow = Taker(), Taker(min_duration=2.0)
    fanout = OutputFanout([every, slow])
    fanout.begin_run("r")
    for seconds in (1.0, 2.5, 3.0):
        fanout.live_out(at(seconds))
    fanout.out(at(5.0))
    assert [d.duration for _, _, d in every.calls] == pytest.approx([1.0, 1.5, 0.5, 2.0])
    # the slow one deferred 1.0 s, then took 2.5 s in one delta, deferred 0.5, then took 2.5
    assert [d.duration for _, _, d in slow.calls] == pytest.approx([2.5, 2.5])
    for taker in (every, slow):
        assert sum(d.energy_consumed for _, _, d in taker.calls) == pytest.approx(5e-6)
        assert sum(d.emissions for _, _, d in taker.calls) == pytest.approx(5e-7)


def test_a_resumed_run_hands_only_the_new_part() -> None:
    taker = Taker()
    fanout = OutputFanout([taker])
    state = {"cpu_energy_kwh": 10e-6, "emissions_kg": 10e-7, "duration_s": 10.0}
    fanout.begin_run("r", resumed_from=totals_from_state(state, run_id="r"))
    fanout.out(at(12.0))
    ((_, total, delta),) = taker.calls
    assert total.duration == 12.0 and delta.duration == pytest.approx(2.0)
    assert delta.energy_consumed == pytest.approx(2e-6) and delta.emissions == pytest.approx(2e-7)
    fanout.begin_run("next")  # a new run starts from zero again
    fanout.out(at(1.0, "next"))
    assert taker.calls[-1][2].duration == pytest.approx(1.0)


def test_a_failing_output_is_reported_once_and_the_others_still_get_the_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(BaseOutput):
        def out(self, total, delta):
            raise OSError("disk full")

    taker = Taker()
    fanout = OutputFanout([Broken(), taker])
    fanout.begin_run("r")
    with caplog.at_level(logging.DEBUG, logger="codecarbon_callbacks_core.output.fanout"):
        fanout.out(at(1.0))
        fanout.out(at(2.0))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "Broken.out" in warnings[0].getMessage()
    assert "disk full" in warnings[0].getMessage()
    assert [d.duration for _, _, d in taker.calls] == pytest.approx([1.0, 1.0])
    # a new fan-out (a new tracker) warns again about its own outputs
    again = OutputFanout([Broken()])
    with caplog.at_level(logging.WARNING):
        again.out(at(1.0))
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


class DiskFull(BaseOutput):
    def out(self, total, delta):
        raise OSError("disk full")


def test_a_failing_output_reaches_the_user_once_per_process() -> None:
    with pytest.warns(CodeCarbonCallbacksWarning, match="DiskFull.out failed.*disk full") as first:
        fanout = OutputFanout([DiskFull()])
        fanout.out(at(1.0))
        fanout.out(at(2.0))
    assert len(first) == 1
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        OutputFanout([DiskFull()]).out(at(1.0))  # a new tracker's fan-out: logged, not warned
    assert later == []


def test_an_output_failing_on_a_rank_other_than_zero_warns_no_one(tmp_path: Path) -> None:
    from codecarbon_callbacks_core import OfflineEmissionsTracker
    from core.constant_power import components

    def run(**kwargs):
        tracker = OfflineEmissionsTracker(
            country_iso_code="FRA",
            output_dir=str(tmp_path),
            output_methods=[],
            output_handlers=[DiskFull()],
            components=components(),
            measure_power_secs=60,
            **kwargs,
        )
        tracker.start()
        tracker.stop()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run(writes_outputs=False)
        assert [w for w in caught if w.category is CodeCarbonCallbacksWarning] == []
        run()
        run()
    assert [str(w.message) for w in caught if w.category is CodeCarbonCallbacksWarning] == [
        "output DiskFull.out failed (training goes on): OSError: disk full"
    ]


def test_the_delta_fields_are_the_additive_ones() -> None:
    taker = Taker()
    fanout = OutputFanout([taker])
    fanout.begin_run("r")
    first, second = at(1.0), at(3.0)
    second.cpu_power = 123.0
    fanout.out(first)
    fanout.out(second)
    delta = taker.calls[-1][2]
    for name in ADDITIVE_FIELDS:
        assert getattr(delta, name) == pytest.approx(getattr(second, name) - getattr(first, name))
    assert delta.cpu_power == 123.0  # powers are the latest figures, not differences


def test_an_output_without_live_out_gets_every_change_in_its_out_deltas() -> None:
    class OutOnly(BaseOutput):
        def __init__(self) -> None:
            self.deltas: list[EmissionsData] = []

        def out(self, total, delta):
            self.deltas.append(delta)

    only = OutOnly()
    fanout = OutputFanout([only])
    fanout.begin_run("r")
    for seconds in (1.0, 2.0, 3.0):
        fanout.live_out(at(seconds))  # not its method: its baseline stays
    fanout.out(at(3.5))
    fanout.live_out(at(5.0))
    fanout.out(at(6.0))
    assert [d.duration for d in only.deltas] == pytest.approx([3.5, 2.5])
    assert sum(d.energy_consumed for d in only.deltas) == pytest.approx(6e-6)

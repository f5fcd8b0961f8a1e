"""LocationLookup against real loopback HTTP servers (http.server in a thread): geo-IP success,
Electricity Maps success, HTTP 500s, bad answers and hanging servers. The caller is never blocked
longer than the bound it asks for."""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from codecarbon_callbacks_core import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.intensity import LocationLookup, resolve_offline
from codecarbon_callbacks_core.intensity.data import intensity_tables
from codecarbon_callbacks_core.intensity.online import (
    STOP_JOIN_TIMEOUT_S,
    THREAD_NAME,
    IntensityLookupError,
    fetch_electricitymaps_intensity,
    fetch_geo_location,
)

# GeoJS's documented shape (latitude/longitude are strings "for historic reasons")
GEO_CALIFORNIA = {
    "ip": "203.0.113.7",
    "country_code3": "USA",
    "country_code": "US",
    "country": "United States",
    "region": "California",
    "city": "San Francisco",
    "latitude": "37.7749",
    "longitude": "-122.4194",
    "timezone": "America/Los_Angeles",
    "continent_code": "NA",
    "organization_name": "AS64496 Example",
    "accuracy": 5,
}
GEO_FRANCE = {
    "country_code3": "FRA",
    "country_code": "FR",
    "country": "France",
    "region": "Île-de-France",
    "latitude": "48.85",
    "longitude": "2.35",
}
# Electricity Maps v3 carbon-intensity/latest documented fields
EM_ANSWER = {
    "zone": "US-CAL-CISO",
    "carbonIntensity": 187,
    "datetime": "2026-11-28T20:00:00.000Z",
    "updatedAt": "2026-11-28T19:55:00.000Z",
    "emissionFactorType": "lifecycle",
    "isEstimated": True,
    "estimationMethod": "TIME_SLICER_AVERAGE",
}


@dataclass
class Route:
    status: int = 200
    body: Any = None
    delay_s: float = 0.0
    raw: bytes | None = None


@dataclass
class Loopback:
    base_url: str
    routes: dict[str, Route]
    requests: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, path: str) -> str:
        return self.base_url + path

    def hits(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    routes: dict[str, Route] = {}
    state = Loopback(base_url="", routes=routes)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            state.requests.append(
                {
                    "path": parsed.path,
                    "query": parse_qs(parsed.query),
                    "headers": dict(self.headers),
                }
            )
            route = routes.get(parsed.path, Route(status=404, body={"error": "no route"}))
            if route.delay_s:
                state.release.wait(route.delay_s)  # released at teardown
            data = route.raw if route.raw is not None else json.dumps(route.body).encode()
            try:
                self.send_response(route.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()


def make_lookup(loopback: Loopback, **kwargs: Any) -> LocationLookup:
    kwargs.setdefault("geo_url", loopback.url("/geo"))
    kwargs.setdefault("electricitymaps_url", loopback.url("/v3/carbon-intensity/latest"))
    kwargs.setdefault("timeout_s", 3.0)
    return LocationLookup(**kwargs)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


# --- geo-IP --------------------------------------------------------------------------------


def test_geo_lookup_feeds_the_offline_tables(loopback: Loopback) -> None:
    loopback.routes["/geo"] = Route(body=GEO_CALIFORNIA)
    lookup = make_lookup(loopback)
    _, start_s = timed(lookup.start)
    assert start_s < 0.1
    result = lookup.result(timeout_s=5)
    expected = resolve_offline(country_iso_code="USA", region="California")
    assert result is not None
    assert result.source == "region:USA-CA" and result.g_per_kwh == expected.g_per_kwh
    assert result.country_iso_code == "USA" and result.region == "california"
    assert (result.latitude, result.longitude) == (37.7749, -122.4194)
    assert lookup.failure is None and len(loopback.hits("/geo")) == 1
    assert not loopback.hits("/v3/carbon-intensity/latest")  # no token, no call


def test_geo_lookup_country_without_subnational_data(loopback: Loopback) -> None:
    loopback.routes["/geo"] = Route(body=GEO_FRANCE)
    result = make_lookup(loopback).start().result(timeout_s=5)
    assert result is not None and result.source.startswith("country:FRA")
    assert result.g_per_kwh == intensity_tables().countries["FRA"].g_per_kwh


def test_geo_http_500_gives_world_average_with_warning(
    loopback: Loopback, caplog: pytest.LogCaptureFixture
) -> None:
    loopback.routes["/geo"] = Route(status=500, body={"message": "boom"})
    with caplog.at_level(logging.WARNING):
        lookup = make_lookup(loopback).start()
        result = lookup.result(timeout_s=5)
    assert result is not None and result.source == "world_average"
    assert result.country_iso_code is None  # never a silent default country
    assert result.g_per_kwh == intensity_tables().world.g_per_kwh
    assert "HTTP 500" in caplog.text and "geo-IP" in caplog.text
    assert lookup.failure is not None and "HTTP 500" in lookup.failure


def test_failed_lookup_reaches_the_user_once_as_a_warning(loopback: Loopback) -> None:
    loopback.routes["/geo"] = Route(status=500, body={"message": "boom"})
    with pytest.warns(CodeCarbonCallbacksWarning, match="HTTP 500.*world_average") as first:
        make_lookup(loopback).start().result(timeout_s=5)
    assert len(first) == 1
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        for _ in range(2):
            assert make_lookup(loopback).start().result(timeout_s=5).source == "world_average"
    assert later == []


def test_failed_lookup_without_user_warning_is_logged_only(
    loopback: Loopback, caplog: pytest.LogCaptureFixture
) -> None:
    loopback.routes["/geo"] = Route(status=500, body={"message": "boom"})
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = make_lookup(loopback, user_warning=False).start().result(timeout_s=5)
    assert result is not None and result.source == "world_average"
    assert caught == [] and "HTTP 500" in caplog.text


@pytest.mark.parametrize(
    "route",
    [
        Route(raw=b"<html>not json</html>"),
        Route(body={"country_code3": "", "country_code": "", "region": ""}),
        Route(body={"country_code3": "ZZZ"}),
        Route(body=["a", "list"]),
    ],
)
def test_geo_bad_answers_give_world_average(loopback: Loopback, route: Route) -> None:
    loopback.routes["/geo"] = route
    result = make_lookup(loopback).start().result(timeout_s=5)
    assert result is not None and result.source == "world_average"
    assert result.country_iso_code is None


def test_fetch_geo_location_parses_documented_shape(loopback: Loopback) -> None:
    loopback.routes["/geo"] = Route(body=GEO_CALIFORNIA)
    geo = fetch_geo_location(loopback.url("/geo"), timeout_s=2)
    assert geo.country_iso_code == "USA" and geo.country_2letter_iso_code == "US"
    assert geo.region == "California" and geo.latitude == pytest.approx(37.7749)
    loopback.routes["/geo"] = Route(body={"country_code": "de", "country": "Germany"})
    assert fetch_geo_location(loopback.url("/geo"), timeout_s=2).country_iso_code == "DEU"


# --- Electricity Maps ----------------------------------------------------------------------


def test_electricitymaps_with_geo_coordinates(loopback: Loopback) -> None:
    loopback.routes["/geo"] = Route(body=GEO_CALIFORNIA)
    loopback.routes["/v3/carbon-intensity/latest"] = Route(body=EM_ANSWER)
    result = (
        make_lookup(loopback, electricitymaps_api_token="secret-token").start().result(timeout_s=5)
    )
    assert result is not None
    assert result.source == "electricitymaps" and result.g_per_kwh == EM_ANSWER["carbonIntensity"]
    assert result.country_iso_code == "USA" and result.region == "california"
    (hit,) = loopback.hits("/v3/carbon-intensity/latest")
    headers = {k.lower(): v for k, v in hit["headers"].items()}
    assert headers["auth-token"] == "secret-token"
    assert hit["query"] == {"lat": ["37.7749"], "lon": ["-122.4194"]}


def test_electricitymaps_zone_from_given_country(loopback: Loopback) -> None:
    loopback.routes["/v3/carbon-intensity/latest"] = Route(
        body={**EM_ANSWER, "zone": "FR", "carbonIntensity": 31.5}
    )
    result = (
        make_lookup(loopback, electricitymaps_api_token="t", country_iso_code="FRA")
        .start()
        .result(timeout_s=5)
    )
    assert result is not None and result.source == "electricitymaps"
    assert result.g_per_kwh == 31.5 and result.country_iso_code == "FRA"
    assert not loopback.hits("/geo")  # the country was given: no geo-IP
    (hit,) = loopback.hits("/v3/carbon-intensity/latest")
    assert hit["query"] == {"zone": ["FR"]}


def test_electricitymaps_locates_by_ip_when_geo_fails(loopback: Loopback) -> None:
    loopback.routes["/geo"] = Route(status=503, body={})
    loopback.routes["/v3/carbon-intensity/latest"] = Route(
        body={**EM_ANSWER, "zone": "DE", "carbonIntensity": 350}
    )
    result = make_lookup(loopback, electricitymaps_api_token="t").start().result(timeout_s=5)
    assert result is not None and result.source == "electricitymaps"
    assert result.g_per_kwh == 350 and result.country_iso_code == "DEU"
    (hit,) = loopback.hits("/v3/carbon-intensity/latest")
    assert hit["query"] == {}


def test_electricitymaps_http_500_falls_back_to_tables(
    loopback: Loopback, caplog: pytest.LogCaptureFixture
) -> None:
    loopback.routes["/geo"] = Route(body=GEO_FRANCE)
    loopback.routes["/v3/carbon-intensity/latest"] = Route(status=500, body={"error": "internal"})
    with caplog.at_level(logging.WARNING):
        result = make_lookup(loopback, electricitymaps_api_token="t").start().result(timeout_s=5)
    assert result is not None and result.source.startswith("country:FRA")
    assert "Electricity Maps" in caplog.text and "HTTP 500" in caplog.text


def test_electricitymaps_bad_token_and_geo_down_gives_world_average(
    loopback: Loopback, caplog: pytest.LogCaptureFixture
) -> None:
    loopback.routes["/geo"] = Route(status=500, body={})
    loopback.routes["/v3/carbon-intensity/latest"] = Route(
        status=401, body={"message": "Invalid token"}
    )
    with caplog.at_level(logging.WARNING):
        result = make_lookup(loopback, electricitymaps_api_token="bad").start().result(timeout_s=5)
    assert result is not None and result.source == "world_average"
    assert result.country_iso_code is None
    assert "Invalid token" in caplog.text


@pytest.mark.parametrize(
    "body",
    [
        {"zone": "FR"},
        {"carbonIntensity": None},
        {"carbonIntensity": "high"},
        {"carbonIntensity": -5},
    ],
)
def test_electricitymaps_missing_value_is_a_failure(loopback: Loopback, body: Any) -> None:
    loopback.routes["/v3/carbon-intensity/latest"] = Route(body=body)
    with pytest.raises(IntensityLookupError, match="carbonIntensity"):
        fetch_electricitymaps_intensity(
            "t", url=loopback.url("/v3/carbon-intensity/latest"), zone="FR", timeout_s=2
        )


def test_forced_value_skips_electricitymaps(loopback: Loopback) -> None:
    loopback.routes["/geo"] = Route(body=GEO_FRANCE)
    loopback.routes["/v3/carbon-intensity/latest"] = Route(body=EM_ANSWER)
    result = (
        make_lookup(loopback, electricitymaps_api_token="t", force_carbon_intensity_g_co2e_kwh=42)
        .start()
        .result(timeout_s=5)
    )
    assert result is not None and result.source == "forced" and result.g_per_kwh == 42
    assert result.country_iso_code == "FRA"  # location still filled in for the report
    assert not loopback.hits("/v3/carbon-intensity/latest")


def test_known_location_without_token_needs_no_network(loopback: Loopback) -> None:
    lookup = make_lookup(loopback, cloud_provider="aws", cloud_region="eu-west-3").start()
    assert lookup.done()
    result = lookup.result()
    assert result is not None and result.source == "cloud:aws:eu-west-3 (CCF grid factor)"
    assert loopback.requests == []


# --- bounded: never blocks the caller ------------------------------------------------------


def test_hanging_geo_server_never_blocks_the_caller(
    loopback: Loopback, caplog: pytest.LogCaptureFixture
) -> None:
    loopback.routes["/geo"] = Route(body=GEO_FRANCE, delay_s=30)
    lookup = make_lookup(loopback, timeout_s=0.6)
    _, start_s = timed(lookup.start)
    assert start_s < 0.1
    first, first_s = timed(lambda: lookup.result(timeout_s=0))
    assert first is None and first_s < 0.1
    waited, waited_s = timed(lambda: lookup.result(timeout_s=0.2))
    assert waited is None and 0.15 < waited_s < 0.6
    with caplog.at_level(logging.WARNING):
        final, final_s = timed(lambda: lookup.result(timeout_s=5))
    # answered at the bound (0.6 s after start), not after the server's 30 s
    assert final is not None and final.source == "world_average"
    assert final_s < 1.5  # bound 0.6 s; the server would hang 30 s
    assert "did not finish within" in caplog.text or "no answer" in caplog.text
    # once answered, the answer is stable and immediate
    again, again_s = timed(lambda: lookup.result(timeout_s=0))
    assert again == final and again_s < 0.05


def test_hanging_electricitymaps_falls_back_within_the_bound(loopback: Loopback) -> None:
    loopback.routes["/geo"] = Route(body=GEO_CALIFORNIA)
    loopback.routes["/v3/carbon-intensity/latest"] = Route(body=EM_ANSWER, delay_s=30)
    lookup = make_lookup(loopback, electricitymaps_api_token="t", timeout_s=0.8).start()
    result, elapsed_s = timed(lambda: lookup.result(timeout_s=5))
    assert result is not None and elapsed_s < 2.0  # bound 0.8 s; the server hangs 30 s
    assert result.source == "region:USA-CA"  # the geo answer still counts


def test_result_after_deadline_answers_without_waiting(loopback: Loopback) -> None:
    loopback.routes["/geo"] = Route(body=GEO_FRANCE, delay_s=30)
    lookup = make_lookup(loopback, timeout_s=0.3).start()
    time.sleep(0.4)
    result, elapsed_s = timed(lambda: lookup.result(timeout_s=0))
    assert result is not None and result.source == "world_average" and elapsed_s < 0.2


def test_stop_is_bounded(loopback: Loopback) -> None:
    loopback.routes["/geo"] = Route(body=GEO_FRANCE, delay_s=30)
    lookup = make_lookup(loopback, timeout_s=10).start()
    _, stop_s = timed(lambda: lookup.stop(timeout_s=0.1))
    assert 0.1 <= stop_s < 0.3
    result = lookup.result(timeout_s=0)
    assert result is not None and result.source == "world_average"


def test_thread_is_a_daemon(loopback: Loopback) -> None:
    loopback.routes["/geo"] = Route(body=GEO_FRANCE, delay_s=30)
    lookup = make_lookup(loopback, timeout_s=0.5).start()
    threads = [t for t in threading.enumerate() if t.name == "codecarbon-callbacks-location-lookup"]
    assert threads and all(t.daemon for t in threads)
    lookup.stop()


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan"), "3"])
def test_bad_timeout_is_rejected(timeout_s: Any) -> None:
    with pytest.raises(ValueError, match="timeout_s"):
        LocationLookup(timeout_s=timeout_s)


def test_bad_forced_value_is_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="force_carbon_intensity_g_co2e_kwh"):
        LocationLookup(force_carbon_intensity_g_co2e_kwh=-3)


def test_forced_value_with_known_location_needs_no_network(loopback: Loopback) -> None:
    loopback.routes["/v3/carbon-intensity/latest"] = Route(body=EM_ANSWER)
    lookup = make_lookup(
        loopback,
        electricitymaps_api_token="t",
        country_iso_code="DE",
        force_carbon_intensity_g_co2e_kwh=10.5,
    ).start()
    assert lookup.done()
    result = lookup.result()
    assert result is not None and result.source == "forced" and result.g_per_kwh == 10.5
    assert result.country_iso_code == "DEU" and loopback.requests == []


def test_electricitymaps_value_is_not_reported_as_world_average(
    loopback: Loopback, caplog: pytest.LogCaptureFixture
) -> None:
    # Antarctica: a known country without OWID data; the live value must be used, quietly
    loopback.routes["/geo"] = Route(
        body={
            "country_code3": "ATA",
            "country_code": "AQ",
            "country": "Antarctica",
            "latitude": "-77.8",
            "longitude": "166.7",
        }
    )
    loopback.routes["/v3/carbon-intensity/latest"] = Route(
        body={**EM_ANSWER, "zone": "AQ", "carbonIntensity": 600}
    )
    with caplog.at_level(logging.WARNING):
        result = make_lookup(loopback, electricitymaps_api_token="t").start().result(timeout_s=5)
    assert result is not None and result.source == "electricitymaps"
    assert result.g_per_kwh == 600 and result.country_iso_code == "ATA"
    assert "world average" not in caplog.text


# --- through the online EmissionsTracker ---------------------------------------------------


def test_online_tracker_uses_the_background_location(
    loopback: Loopback, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from codecarbon_callbacks_core.intensity import online
    from core.constant_power import components

    from codecarbon_callbacks import EmissionsTracker

    loopback.routes["/geo"] = Route(body=GEO_CALIFORNIA)
    monkeypatch.setattr(online, "GEO_JS_URL", loopback.url("/geo"))
    tracker = EmissionsTracker(
        output_dir=str(tmp_path), output_methods=[], components=components(), measure_power_secs=60
    )
    _, start_s = timed(tracker.start)
    try:
        assert start_s < 2.0  # the lookup runs in the background
        deadline = time.monotonic() + 3
        while not loopback.hits("/geo") and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # loopback answers in ms; leave the thread time to publish
    finally:
        tracker.stop()
    data = tracker.final_emissions_data
    expected = resolve_offline(country_iso_code="USA", region="CA")
    assert data is not None and len(loopback.hits("/geo")) == 1
    assert data.carbon_intensity_source == expected.source
    assert data.carbon_intensity_g_per_kwh == expected.g_per_kwh
    assert data.country_iso_code == "USA" and data.region == "california"
    assert data.emissions == pytest.approx(
        data.energy_consumed * data.pue * expected.g_per_kwh / 1000, rel=1e-9
    )


def _online_run(tmp_path: Any, **kwargs: Any) -> Any:
    """An online tracker whose location lookup fails (the geo-IP answers 500): world average."""
    from codecarbon_callbacks_core.tracker import EmissionsTracker, resolve_tracker_config
    from core.constant_power import components

    config = resolve_tracker_config(
        {"output_dir": str(tmp_path), "output_methods": [], "measure_power_secs": 60}, offline=False
    )
    tracker = EmissionsTracker.from_config(config, components=components(), **kwargs)
    tracker.start()
    assert tracker._lookup is not None
    tracker._lookup.result(timeout_s=5)  # the geo-IP's 500 has come back
    tracker.stop()
    assert tracker.final_emissions_data.carbon_intensity_source == "world_average"
    return tracker


def test_online_tracker_world_average_warns_once_on_the_writing_rank_only(
    loopback: Loopback,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from codecarbon_callbacks_core.intensity import online

    loopback.routes["/geo"] = Route(status=500, body={"message": "boom"})
    monkeypatch.setattr(online, "GEO_JS_URL", loopback.url("/geo"))
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _online_run(tmp_path, writes_outputs=False)  # a rank other than zero: logs only
        assert caught == [] and "world_average" in caplog.text
        _online_run(tmp_path)  # rank zero, or a single process
        _online_run(tmp_path)  # a second tracker of the same process
    assert [(w.category, "world_average" in str(w.message)) for w in caught] == [
        (CodeCarbonCallbacksWarning, True)
    ]


def _lookup_threads() -> list[threading.Thread]:
    """Live lookup threads: a bare lookup's (THREAD_NAME) and trackers' (THREAD_NAME-<run>)."""
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME) and t.is_alive()]


def _tracker(loopback: Loopback, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A real online tracker whose geo-IP lookup goes to ``loopback`` (the module's URL)."""
    from codecarbon_callbacks_core import EmissionsTracker
    from codecarbon_callbacks_core.intensity import online
    from core.constant_power import components

    monkeypatch.setattr(online, "GEO_JS_URL", loopback.url("/geo"))
    monkeypatch.setattr(online, "ELECTRICITYMAPS_URL", loopback.url("/em"))
    for name in ("CODECARBON_COUNTRY_ISO_CODE", "CODECARBON_ELECTRICITYMAPS_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return EmissionsTracker(
        output_dir=str(tmp_path), components=components(), project_name="lookup-thread"
    )


def test_the_trackers_stop_ends_a_slow_lookup_thread(
    loopback: Loopback, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # longer than the lookup's own STOP_JOIN_TIMEOUT_S, within the lookup's bound (3 s) and
    # stop()'s: stop() waits for the thread with what is left of its own deadline
    loopback.routes["/geo"] = Route(body=GEO_FRANCE, delay_s=STOP_JOIN_TIMEOUT_S + 0.7)
    tracker = _tracker(loopback, tmp_path, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracker.start()
        threads = _lookup_threads()
        # named after its run, like the tracker's other threads
        assert [t.name for t in threads] == [tracker.thread_name("location-lookup")]
        assert tracker.run_id[:8] in threads[0].name
        tracker.stop()
    assert _lookup_threads() == []
    assert loopback.hits("/geo")


def test_a_lookup_stuck_in_a_request_is_reported_once_and_left_as_a_daemon(
    loopback: Loopback,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from codecarbon_callbacks_core import _shared

    loopback.routes["/geo"] = Route(body=GEO_FRANCE, delay_s=30)
    monkeypatch.setattr(_shared, "_warned", set())
    caplog.set_level(logging.DEBUG, logger="codecarbon_callbacks_core")
    trackers = []
    for _ in range(2):
        tracker = _tracker(loopback, tmp_path, monkeypatch)
        trackers.append(tracker)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tracker.start()
            _, stop_s = timed(lambda: tracker.stop(timeout_s=0.5))
        assert stop_s < 0.5 + 1.0  # stop()'s bound wins over the lookup's (3 s)
    left = _lookup_threads()
    assert left and all(t.daemon for t in left)
    reports = [r for r in caplog.records if "location lookup thread" in r.getMessage()]
    assert [r.levelno for r in reports] == [logging.INFO, logging.DEBUG]  # once, then quiet
    assert trackers[0].thread_name("location-lookup") in reports[0].getMessage()

"""Online location and carbon-intensity lookup, in the background.

The online ``EmissionsTracker`` does not know where it runs. ``LocationLookup`` finds out in a
daemon thread, never delaying the caller:

1. geo-IP: the provider CodeCarbon 3.3 uses, GeoJS (``https://get.geojs.io/v1/ip/geo.json``,
   response fields ``country_code3``, ``country_code``, ``country``, ``region`` and ``latitude`` /
   ``longitude`` as strings);
2. with an Electricity Maps token: ``GET /v3/carbon-intensity/latest`` with the ``auth-token``
   header and ``lat``/``lon`` (or ``zone`` = the country's alpha-2 code; with neither the API
   locates the caller by IP); the response's ``carbonIntensity`` is in gCO2eq/kWh;
3. otherwise, or when Electricity Maps fails: the bundled tables for the country and region found
   (``resolve_offline``'s rules), and when nothing is found, the world average with a warning,
   never a silent default country.

The whole lookup is bounded by ``timeout_s`` (each HTTP request gets what is left of it, and once
the deadline passes ``result()`` answers with the fallback even if a request hangs). URLs and the
HTTP session are injectable, so tests run against loopback servers. ``requests`` is imported
inside the functions that use it.

Example:
    >>> lookup = LocationLookup(timeout_s=2.0).start()    # doctest: +SKIP
    >>> lookup.result(timeout_s=0)  # None while running  # doctest: +SKIP
    >>> lookup.result(timeout_s=5).source                 # doctest: +SKIP
    'country:FRA (OWID 2024)'
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning, IntensityLookupError
from codecarbon_callbacks_core.intensity.data import intensity_tables
from codecarbon_callbacks_core.intensity.lookup import (
    SOURCE_ELECTRICITYMAPS,
    IntensityResult,
    UnknownLocationError,
    _resolve,
    _validate_forced,
    normalize_country_code,
)

logger = logging.getLogger(__name__)

#: CodeCarbon 3.3's geo-IP endpoint (``codecarbon/input.py``: ``geo_js_url``).
GEO_JS_URL = "https://get.geojs.io/v1/ip/geo.json"
#: Electricity Maps' latest carbon intensity (API v3), as CodeCarbon 3.3 queries it.
ELECTRICITYMAPS_URL = "https://api.electricitymaps.com/v3/carbon-intensity/latest"
#: Default bound of the whole background lookup, seconds.
DEFAULT_TIMEOUT_S = 3.0
#: how long ``LocationLookup.stop()`` waits for its thread, seconds (a request in progress is
#: not interrupted: past this the thread is reported once and left, a daemon that ends by
#: itself within the lookup's own bound)
STOP_JOIN_TIMEOUT_S = 0.5
#: the default name of the lookup's thread (a tracker's adds its run id: see ``thread_name``)
THREAD_NAME = "codecarbon-callbacks-location-lookup"


@dataclass(frozen=True)
class GeoLocation:
    """Where the geo-IP service places this machine."""

    country_iso_code: str | None
    country_2letter_iso_code: str | None
    country_name: str | None
    region: str | None
    latitude: float | None
    longitude: float | None


def _get_json(
    url: str,
    *,
    timeout_s: float,
    session: Any = None,
    params: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    what: str,
) -> Any:
    """GET ``url`` and decode JSON; any failure becomes IntensityLookupError naming ``what``."""
    import requests  # lazy: never imported by `import codecarbon_callbacks_core`

    getter = session if session is not None else requests
    try:
        response = getter.get(url, params=params, headers=headers, timeout=max(timeout_s, 0.001))
    except requests.Timeout as e:
        raise IntensityLookupError(f"{what}: no answer from {url} within {timeout_s:.1f} s") from e
    except requests.RequestException as e:
        raise IntensityLookupError(f"{what}: request to {url} failed: {e}") from e
    if response.status_code != 200:
        detail = ""
        try:
            body = response.json()
            if isinstance(body, dict):
                detail = str(body.get("error") or body.get("message") or "")
        except ValueError:
            detail = response.text[:200]
        raise IntensityLookupError(
            f"{what}: HTTP {response.status_code} from {url}" + (f": {detail}" if detail else "")
        )
    try:
        return response.json()
    except ValueError as e:
        raise IntensityLookupError(f"{what}: {url} did not answer JSON") from e


def _float_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fetch_geo_location(
    url: str = GEO_JS_URL, *, timeout_s: float = DEFAULT_TIMEOUT_S, session: Any = None
) -> GeoLocation:
    """Ask the geo-IP service (GeoJS response shape) where this machine is.

    Raises:
        IntensityLookupError: the request failed, or the answer names no usable country.
    """
    body = _get_json(url, timeout_s=timeout_s, session=session, what="geo-IP lookup")
    if not isinstance(body, dict):
        raise IntensityLookupError(f"geo-IP lookup: unexpected answer from {url}: {body!r:.200}")
    iso3: str | None = None
    for key in ("country_code3", "country_code"):
        code = body.get(key)
        if isinstance(code, str) and code.strip():
            try:
                iso3 = normalize_country_code(code, parameter=key)
                break
            except UnknownLocationError as e:
                logger.debug("geo-IP lookup: %s", e)
    if iso3 is None:
        raise IntensityLookupError(
            f"geo-IP lookup: {url} gave no known country code "
            f"(country_code3={body.get('country_code3')!r}, "
            f"country_code={body.get('country_code')!r})"
        )
    code = intensity_tables().codes_by_iso3.get(iso3)
    region = body.get("region")
    return GeoLocation(
        country_iso_code=iso3,
        country_2letter_iso_code=code.iso2 if code else None,
        country_name=body.get("country") or (code.name if code else None),
        region=region.strip() if isinstance(region, str) and region.strip() else None,
        latitude=_float_or_none(body.get("latitude")),
        longitude=_float_or_none(body.get("longitude")),
    )


def fetch_electricitymaps_intensity(
    token: str,
    *,
    url: str = ELECTRICITYMAPS_URL,
    latitude: float | None = None,
    longitude: float | None = None,
    zone: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    session: Any = None,
) -> tuple[float, dict[str, Any]]:
    """The latest grid carbon intensity from Electricity Maps, gCO2eq/kWh, and the raw answer.

    Location: ``lat``/``lon`` when both are given, else ``zone``, else none (the API then
    locates the caller by IP).

    Raises:
        IntensityLookupError: HTTP error, bad token, or no ``carbonIntensity`` in the answer.
    """
    params: dict[str, Any] = {}
    if latitude is not None and longitude is not None:
        params = {"lat": latitude, "lon": longitude}
    elif zone:
        params = {"zone": zone}
    body = _get_json(
        url,
        timeout_s=timeout_s,
        session=session,
        params=params,
        headers={"auth-token": token},
        what="Electricity Maps",
    )
    value = body.get("carbonIntensity") if isinstance(body, dict) else None
    number = _float_or_none(value)
    if number is None or number < 0 or isinstance(value, bool):
        raise IntensityLookupError(
            f"Electricity Maps: no valid carbonIntensity in the answer (carbonIntensity={value!r})"
        )
    return number, body


class LocationLookup:
    """Find the carbon intensity for where this process runs, in a background daemon thread.

    ``start()`` returns at once; ``result(timeout_s)`` waits at most ``timeout_s`` and returns
    None while the lookup is still running within its bound. Once ``timeout_s`` (given here) has
    passed since ``start()``, ``result()`` always answers: the lookup's result, or the fallback
    (the bundled table for what is known, else the world average) with a warning.

    Location hints given here (country, region, cloud) are used as ``resolve_offline`` uses them;
    the geo-IP lookup runs only when no country or cloud region is given. A forced intensity wins
    over everything (the lookup then only fills in the location for the report).

    Args:
        electricitymaps_api_token: token for Electricity Maps; None/empty: no live intensity.
        force_carbon_intensity_g_co2e_kwh: forced intensity, gCO2eq/kWh.
        country_iso_code, region, cloud_provider, cloud_region: known location, if any.
        geo_url: geo-IP endpoint (GeoJS response shape); default: the module's ``GEO_JS_URL``,
            read when the lookup is constructed.
        electricitymaps_url: Electricity Maps ``carbon-intensity/latest`` endpoint; default:
            the module's ``ELECTRICITYMAPS_URL``, read when the lookup is constructed.
        timeout_s: bound of the whole lookup, seconds.
        session: object with ``get(url, params=, headers=, timeout=)`` (a ``requests.Session``);
            default: the ``requests`` module.
        user_warning: a failed lookup (and a fallback to the world average) is logged and, the
            first time in this process, issued as a ``CodeCarbonCallbacksWarning``; False logs
            it only (a distributed run's ranks other than zero).
        thread_name: the background thread's name; None: :data:`THREAD_NAME` (a tracker's
            ends with its run id).

    Example:
        >>> lookup = LocationLookup(country_iso_code="FRA")  # no token: no network needed
        >>> lookup.start().result(timeout_s=1).source
        'country:FRA (OWID 2024)'
    """

    def __init__(
        self,
        *,
        electricitymaps_api_token: str | None = None,
        force_carbon_intensity_g_co2e_kwh: float | None = None,
        country_iso_code: str | None = None,
        region: str | None = None,
        cloud_provider: str | None = None,
        cloud_region: str | None = None,
        geo_url: str | None = None,
        electricitymaps_url: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        session: Any = None,
        user_warning: bool = True,
        thread_name: str | None = None,
    ) -> None:
        if (
            not isinstance(timeout_s, (int, float))
            or isinstance(timeout_s, bool)
            or not math.isfinite(timeout_s)
            or timeout_s <= 0
        ):
            raise ValueError(f"timeout_s={timeout_s!r}: expected a number of seconds > 0")
        if force_carbon_intensity_g_co2e_kwh is not None:
            force_carbon_intensity_g_co2e_kwh = _validate_forced(force_carbon_intensity_g_co2e_kwh)
        self.token = electricitymaps_api_token or None
        self.hints: dict[str, Any] = {
            "force_carbon_intensity_g_co2e_kwh": force_carbon_intensity_g_co2e_kwh,
            "country_iso_code": country_iso_code,
            "region": region,
            "cloud_provider": cloud_provider,
            "cloud_region": cloud_region,
        }
        # Defaults read at construction (not at import), so a test can point them at loopback.
        self.geo_url = geo_url or GEO_JS_URL
        self.electricitymaps_url = electricitymaps_url or ELECTRICITYMAPS_URL
        self.timeout_s = float(timeout_s)
        self.session = session
        self.user_warning = bool(user_warning)
        #: the background thread's name (a tracker's includes its run id)
        self.thread_name = thread_name or THREAD_NAME
        self._done = threading.Event()
        self._lock = threading.RLock()
        self._result: IntensityResult | None = None
        self._thread: threading.Thread | None = None
        self._deadline: float | None = None
        self._stopped = False
        self.geo: GeoLocation | None = None
        #: Why the live lookup did not give the answer (None when it did).
        self.failure: str | None = None

    # -- public -----------------------------------------------------------------------------

    def start(self) -> LocationLookup:
        """Start the background lookup (once); returns self at once."""
        with self._lock:
            if self._thread is not None or self._done.is_set():
                return self
            self._deadline = time.monotonic() + self.timeout_s
            if not self._needs_network():
                # Everything is known: answer now, no thread.
                self._finish(self._offline_result(None))
                return self
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def done(self) -> bool:
        return self._done.is_set()

    def result(self, timeout_s: float = 0.0) -> IntensityResult | None:
        """The result, waiting at most ``timeout_s``; None if the lookup is still within its bound.

        Never raises and never waits longer than ``timeout_s``.
        """
        if self._done.wait(timeout=max(0.0, timeout_s)):
            return self._result
        deadline = self._deadline
        if deadline is not None and time.monotonic() >= deadline:
            self._fail(f"the lookup did not finish within {self.timeout_s:.1f} s", geo=self.geo)
            return self._result
        return None

    def stop(self, timeout_s: float = STOP_JOIN_TIMEOUT_S) -> None:
        """Stop waiting for the lookup: later results of the thread are ignored, and the thread
        ends. Waits at most ``timeout_s`` seconds for it (no lock held); a thread still in a
        network call after that is reported once (a log line) and left behind, a daemon that
        ends by itself within the lookup's ``timeout_s``. Never raises."""
        self._stopped = True
        thread = self._thread
        if not self._done.is_set() and thread is not None:
            self._fail("the tracker stopped before the lookup finished", geo=self.geo)
        if thread is None or thread is threading.current_thread():
            return
        thread.join(max(0.0, timeout_s))
        if thread.is_alive():
            warn_once(
                "location-lookup-not-stopped",
                "the location lookup thread %s is still in a network call after %.1f s; "
                "leaving it behind (daemon; it ends within %.1f s of its start)",
                thread.name,
                timeout_s,
                self.timeout_s,
                log=logger,
                level=logging.INFO,
            )

    # -- internals --------------------------------------------------------------------------

    def _needs_network(self) -> bool:
        hints = self.hints
        location_known = bool(hints["country_iso_code"] or hints["cloud_region"])
        if hints["force_carbon_intensity_g_co2e_kwh"] is not None:
            return not location_known  # the value is fixed; geo-IP only fills in the report
        if self.token:
            return True
        return not (location_known or hints["region"])

    def _remaining_s(self) -> float:
        assert self._deadline is not None
        return self._deadline - time.monotonic()

    def _finish(self, result: IntensityResult, failure: str | None = None) -> bool:
        """Record the final result once (first caller wins); log a failure before anyone can
        read the result, so the warning always precedes the answer."""
        with self._lock:
            if self._done.is_set():
                return False
            self._result = result
            if failure is not None:
                self.failure = failure
                warn_once(
                    f"intensity-fallback:{result.source}",
                    "Carbon intensity: %s; using %s (%.1f gCO2eq/kWh).",
                    failure,
                    result.source,
                    result.g_per_kwh,
                    log=logger,
                    category=CodeCarbonCallbacksWarning if self.user_warning else None,
                )
            self._done.set()
            return True

    def _offline_result(self, geo: GeoLocation | None, *, warn: bool = True) -> IntensityResult:
        hints = dict(self.hints)
        latitude = longitude = None
        if geo is not None:
            latitude, longitude = geo.latitude, geo.longitude
            if not (hints["country_iso_code"] or hints["cloud_region"]):
                hints["country_iso_code"] = geo.country_iso_code
                hints["region"] = hints["region"] or geo.region
        return _resolve(
            strict=False,
            latitude=latitude,
            longitude=longitude,
            warn=warn,
            user_warning=self.user_warning,
            **hints,
        )

    def _fail(self, reason: str, geo: GeoLocation | None) -> None:
        if self._done.is_set():
            return
        try:
            fallback = self._offline_result(geo, warn=False)
        except Exception as e:  # noqa: BLE001 - never raise from here: last resort, world average
            logger.debug("fallback lookup failed: %s", e)
            fallback = _resolve(strict=False, warn=False)
        self._finish(fallback, failure=reason)

    def _run(self) -> None:
        geo: GeoLocation | None = None
        try:
            hints = self.hints
            location_given = bool(hints["country_iso_code"] or hints["cloud_region"])
            if not location_given:
                try:
                    geo = fetch_geo_location(
                        self.geo_url, timeout_s=self._remaining_s(), session=self.session
                    )
                    self.geo = geo
                except IntensityLookupError as e:
                    if not self.token:
                        self._fail(f"{e}; location unknown", geo=None)
                        return
                    logger.warning(
                        "Carbon intensity: %s; asking Electricity Maps to locate "
                        "this machine by IP.",
                        e,
                    )
            if self._stopped:
                return
            if self.token and hints["force_carbon_intensity_g_co2e_kwh"] is None:
                self._electricitymaps(geo)
                return
            self._finish(self._offline_result(geo))
        except Exception as e:  # noqa: BLE001 - the thread must never die silently
            self._fail(f"location lookup failed unexpectedly ({type(e).__name__}: {e})", geo)

    def _electricitymaps(self, geo: GeoLocation | None) -> None:
        assert self.token is not None
        # Where: the user's country (or the cloud region's) > geo-IP coordinates > caller's IP.
        known = None
        try:
            known = (
                self._offline_result(None, warn=False)
                if (self.hints["country_iso_code"] or self.hints["cloud_region"])
                else None
            )
        except UnknownLocationError:
            known = None
        zone = None
        latitude = longitude = None
        if known is not None and known.country_iso_code:
            code = intensity_tables().codes_by_iso3.get(known.country_iso_code)
            zone = code.iso2 if code else None
        elif geo is not None:
            latitude, longitude = geo.latitude, geo.longitude
            zone = geo.country_2letter_iso_code
        try:
            g_per_kwh, body = fetch_electricitymaps_intensity(
                self.token,
                url=self.electricitymaps_url,
                latitude=latitude,
                longitude=longitude,
                zone=zone,
                timeout_s=self._remaining_s(),
                session=self.session,
            )
        except IntensityLookupError as e:
            self._fail(str(e), geo)
            return
        # Location for the report: what we know, else the zone Electricity Maps answered for.
        base = known
        if base is None:
            if geo is None:
                answered = body.get("zone") if isinstance(body, dict) else None
                if isinstance(answered, str) and answered:
                    try:
                        iso3 = normalize_country_code(answered.split("-")[0], "zone")
                        base = _resolve(strict=False, country_iso_code=iso3, warn=False)
                    except UnknownLocationError:
                        base = None
            else:
                base = self._offline_result(geo, warn=False)
        fields = base.to_dict() if base is not None else {}
        fields.update(g_per_kwh=g_per_kwh, source=SOURCE_ELECTRICITYMAPS, year=None)
        self._finish(IntensityResult(**fields))

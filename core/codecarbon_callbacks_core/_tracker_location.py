"""Where a tracker is: the offline location from its configuration (bundled tables, no network),
the background lookup's answer once it comes, and the one-time check of a tracker's parameters."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core.config import TrackerConfig, resolve_config
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning, ConfigError

if TYPE_CHECKING:
    from codecarbon_callbacks_core.intensity.lookup import IntensityResult
    from codecarbon_callbacks_core.intensity.online import LocationLookup


def has_location(config: TrackerConfig) -> bool:
    """Whether the configuration names a location (a country or a cloud provider)."""
    return bool(config.country_iso_code or config.country_2letter_iso_code or config.cloud_provider)


def resolve_location(
    config: TrackerConfig, *, offline: bool, user_warning: bool = True
) -> IntensityResult | None:
    """The carbon intensity of the configured location, from the bundled tables (no network).

    Returns an ``IntensityResult``, or None when no location is given and the online tracker
    will look it up. No location (offline) or a country without a figure gets the world
    average, with a warning once (``user_warning=False``: logged only, not issued as a
    ``CodeCarbonCallbacksWarning``).

    Raises:
        ConfigError: the location is unknown (with suggestions).
    """
    from codecarbon_callbacks_core.intensity.lookup import UnknownLocationError, resolve_offline

    located = has_location(config)
    # The offline tracker without a location runs on the world average (carbon intensity
    # source "world_average"), with a warning once, as CodeCarbon runs with no country.
    if not (located or config.force_carbon_intensity_g_co2e_kwh is not None or offline):
        return None
    try:
        return resolve_offline(
            force_carbon_intensity_g_co2e_kwh=config.force_carbon_intensity_g_co2e_kwh,
            country_iso_code=config.country_iso_code,
            region=config.region,
            cloud_provider=config.cloud_provider,
            cloud_region=config.cloud_region,
            country_2letter_iso_code=config.country_2letter_iso_code,
            user_warning=user_warning,
        )
    except UnknownLocationError as e:
        raise ConfigError(str(e)) from None


def resolve_tracker_config(arguments: Mapping[str, Any], *, offline: bool) -> TrackerConfig:
    """Resolve and check a tracker's parameters once, without building a tracker.

    The same checks as the constructor (arguments, ``CODECARBON_*`` variables, config files, the
    location); build trackers from the result with :meth:`BaseEmissionsTracker.from_config`.

    Raises:
        ConfigError: a bad value, named with its source.
    """
    config = resolve_config(arguments, offline=offline)
    # a check: the trackers built from it resolve again, and warn on the writing rank only
    resolve_location(config, offline=offline, user_warning=False)
    return config


def current_intensity(
    config: TrackerConfig,
    *,
    intensity: IntensityResult | None,
    location_known: bool,
    lookup: LocationLookup | None,
    log: logging.Logger | logging.LoggerAdapter,  # type: ignore[type-arg]
) -> tuple[IntensityResult, bool]:
    """The intensity to use now, and whether the location is known: the known location, else
    the background ``lookup``'s answer, else ``intensity`` so far, else the world average
    (provisional, until the lookup answers; a lookup that fails warns the user itself)."""
    from codecarbon_callbacks_core.intensity.lookup import resolve_offline

    if intensity is not None and (location_known or lookup is None):
        return intensity, location_known
    if lookup is not None:
        try:
            found = lookup.result(timeout_s=0)
        except Exception as e:  # the lookup is best effort
            log.debug("location lookup failed: %s", e)
            found = None
        if found is not None:
            return found, True
    if intensity is None:
        intensity = resolve_offline(
            force_carbon_intensity_g_co2e_kwh=config.force_carbon_intensity_g_co2e_kwh,
            user_warning=False,
        )
    return intensity, location_known


def start_location_lookup(
    config: TrackerConfig,
    *,
    thread_name: str,
    user_warning: bool,
    log: logging.Logger | logging.LoggerAdapter,  # type: ignore[type-arg]
    category: type[CodeCarbonCallbacksWarning] | None,
) -> LocationLookup | None:
    """Start the online tracker's background location lookup on a thread named
    ``thread_name``; None (with a warning once, of ``category``) when it cannot start: the
    world average is used then."""
    try:
        from codecarbon_callbacks_core.intensity.online import LocationLookup

        lookup = LocationLookup(
            electricitymaps_api_token=config.electricitymaps_api_token,
            force_carbon_intensity_g_co2e_kwh=config.force_carbon_intensity_g_co2e_kwh,
            user_warning=user_warning,
            thread_name=thread_name,
        )
        lookup.start()
    except Exception as e:
        warn_once(
            "location-lookup-not-started",
            "could not look the location up (%s); using the world average carbon intensity. "
            "Give country_iso_code to be exact.",
            e,
            log=log,
            category=category,
        )
        return None
    return lookup


class LocationMixin:
    """The tracker's location and carbon intensity: resolved at construction when given, else
    looked up in the background; :class:`~codecarbon_callbacks_core.tracker.
    BaseEmissionsTracker` holds the state (declared below for the type checker)."""

    config: TrackerConfig
    intensity: IntensityResult | None
    _location_known: bool
    _offline: bool
    _writes_outputs: bool
    _lookup: LocationLookup | None
    _log: logging.LoggerAdapter  # type: ignore[type-arg]

    if TYPE_CHECKING:

        @property
        def _user_warning(self) -> type[CodeCarbonCallbacksWarning] | None: ...

        def thread_name(self, role: str) -> str: ...

    def _init_location(self) -> None:
        """Resolve the offline location now (fast, no network), so a bad one fails here."""
        self.intensity = resolve_location(
            self.config, offline=self._offline, user_warning=self._writes_outputs
        )
        self._location_known = self.intensity is not None and has_location(self.config)

    def _current_intensity(self) -> IntensityResult:
        """The intensity to use now: known location, else the background lookup, else world."""
        intensity = self.intensity
        if intensity is not None and (self._location_known or self._lookup is None):
            return intensity  # settled (current_intensity()'s own first case, without a call)
        self.intensity, self._location_known = current_intensity(
            self.config,
            intensity=self.intensity,
            location_known=self._location_known,
            lookup=self._lookup,
            log=self._log,
        )
        return self.intensity

    def _start_location_lookup(self) -> None:
        if self._offline or self._location_known or self._lookup is not None:
            return
        self._lookup = start_location_lookup(
            self.config,
            thread_name=self.thread_name("location-lookup"),
            user_warning=self._writes_outputs,
            log=self._log,
            category=self._user_warning,
        )

"""Carbon intensity of electricity: forced value, live Electricity Maps, or the bundled tables
(cloud region > sub-national region > country > world average).

``lookup`` is offline and stdlib-only; ``online`` (geo-IP and Electricity Maps in a background
thread) is imported on first use of its names.

Example:
    >>> from codecarbon_callbacks_core.intensity import resolve_offline
    >>> resolve_offline(country_iso_code="DE").country_iso_code
    'DEU'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from codecarbon_callbacks_core.intensity.lookup import (
    IntensityResult,
    UnknownLocationError,
    has_country_data,
    is_known_country,
    known_cloud_regions,
    known_regions,
    normalize_cloud_provider,
    normalize_country_code,
    resolve_offline,
    world_average,
)

_ONLINE = (
    "LocationLookup",
    "GeoLocation",
    "IntensityLookupError",
    "fetch_geo_location",
    "fetch_electricitymaps_intensity",
    "GEO_JS_URL",
    "ELECTRICITYMAPS_URL",
)

__all__ = [
    "ELECTRICITYMAPS_URL",
    "GEO_JS_URL",
    "GeoLocation",
    "IntensityResult",
    "LocationLookup",
    "IntensityLookupError",
    "UnknownLocationError",
    "fetch_electricitymaps_intensity",
    "fetch_geo_location",
    "has_country_data",
    "is_known_country",
    "known_cloud_regions",
    "known_regions",
    "normalize_cloud_provider",
    "normalize_country_code",
    "resolve_offline",
    "world_average",
]

if TYPE_CHECKING:  # pragma: no cover
    from codecarbon_callbacks_core.intensity.online import (
        ELECTRICITYMAPS_URL,
        GEO_JS_URL,
        GeoLocation,
        IntensityLookupError,
        LocationLookup,
        fetch_electricitymaps_intensity,
        fetch_geo_location,
    )


def __getattr__(name: str) -> Any:
    if name in _ONLINE:
        value = getattr(importlib.import_module("codecarbon_callbacks_core.intensity.online"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Offline carbon-intensity lookup: forced value > cloud region > sub-national region > country >
world average, from the bundled tables (no network, ever).

Example:
    >>> from codecarbon_callbacks_core.intensity.lookup import resolve_offline
    >>> result = resolve_offline(country_iso_code="fr")
    >>> result.country_iso_code, result.source
    ('FRA', 'country:FRA (OWID 2024)')
    >>> resolve_offline(cloud_provider="gcp", cloud_region="europe-west9").on_cloud
    True
"""

from __future__ import annotations

import difflib
import logging
import math
import re
from dataclasses import asdict, dataclass
from typing import Any

from codecarbon_callbacks_core._shared import warn_once
from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning, UnknownLocationError
from codecarbon_callbacks_core.intensity.data import (
    CLOUD_PROVIDERS,
    WORLD,
    CloudRegionIntensity,
    RegionIntensity,
    cloud_region_key,
    fold,
    intensity_tables,
)

logger = logging.getLogger(__name__)

SOURCE_FORCED = "forced"
SOURCE_ELECTRICITYMAPS = "electricitymaps"
SOURCE_WORLD_AVERAGE = "world_average"

#: Spellings accepted for ``cloud_provider`` (any case) -> our provider key.
CLOUD_PROVIDER_ALIASES: dict[str, str] = {
    "aws": "aws",
    "amazon": "aws",
    "amazon web services": "aws",
    "azure": "azure",
    "microsoft": "azure",
    "microsoft azure": "azure",
    "gcp": "gcp",
    "google": "gcp",
    "google cloud": "gcp",
    "google cloud platform": "gcp",
    "gcloud": "gcp",
}

# A zone or availability-zone name -> its region: GCP "us-central1-a", AWS "us-east-1a".
_ZONE_SUFFIX = {
    "gcp": re.compile(r"^(?P<region>.*\d)-[a-z]$"),
    "aws": re.compile(r"^(?P<region>.*\d)[a-z]$"),
}


@dataclass(frozen=True)
class IntensityResult:
    """The carbon intensity used for a run and where it comes from.

    Attributes:
        g_per_kwh: grid carbon intensity, gCO2eq per kWh.
        source: how it was found: ``"forced"``, ``"electricitymaps"``,
            ``"cloud:aws:us-east-1 (CCF grid factor)"``, ``"cloud:gcp:europe-west9 (Google 2024)"``,
            ``"region:USA-CA"``, ``"country:FRA (OWID 2024)"`` or ``"world_average"``.
        country_iso_code: ISO 3166-1 alpha-3 code, or None when unknown.
        country_name: the country's name, or None.
        region: sub-national region (lower-case name, as CodeCarbon writes it) or a cloud region's
            location, or None.
        cloud_provider: ``"aws"``, ``"azure"``, ``"gcp"`` or None.
        cloud_region: the cloud region as spelled in the bundled table, or None.
        on_cloud: whether a cloud region was given.
        year: the year the figure refers to, when known.
        latitude, longitude: from a geo-IP lookup, when one was made.
        uncertainty_g_per_kwh: the 95 % half-width of ``g_per_kwh`` where its source states
            one, else None (none of the bundled tables, nor Electricity Maps, states one).

    Example:
        >>> r = IntensityResult(g_per_kwh=50.0, source="forced")
        >>> r.emissions_kg(2.0)
        0.1
    """

    g_per_kwh: float
    source: str
    country_iso_code: str | None = None
    country_name: str | None = None
    region: str | None = None
    cloud_provider: str | None = None
    cloud_region: str | None = None
    on_cloud: bool = False
    year: int | None = None
    latitude: float | None = None
    longitude: float | None = None
    uncertainty_g_per_kwh: float | None = None

    @property
    def kg_per_kwh(self) -> float:
        return self.g_per_kwh / 1000.0

    def emissions_kg(self, energy_kwh: float) -> float:
        """kg CO2eq for ``energy_kwh`` of electricity at this intensity."""
        return energy_kwh * self.g_per_kwh / 1000.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# validation helpers (public)


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _country_name(iso3: str) -> str:
    """OWID's short name where it has the country, else the ISO common name."""
    tables = intensity_tables()
    country = tables.countries.get(iso3)
    return country.name if country else tables.codes_by_iso3[iso3].name


def _country_suggestions(text: str) -> list[str]:
    tables = intensity_tables()
    upper = text.strip().upper()
    codes = list(tables.codes_by_iso3) + list(tables.iso3_by_iso2)
    iso3s = [
        tables.iso3_by_iso2.get(m, m) if len(m) == 2 else m
        for m in difflib.get_close_matches(upper, codes, n=6, cutoff=0.6)
    ]
    iso3s += [
        tables.iso3_by_name[name]
        for name in difflib.get_close_matches(
            fold(text), list(tables.iso3_by_name), n=3, cutoff=0.75
        )
    ]
    unique = list(dict.fromkeys(iso3s))[:5]
    return [f"{iso3} ({_country_name(iso3)})" for iso3 in unique]


def normalize_country_code(value: str, parameter: str = "country_iso_code") -> str:
    """The ISO 3166-1 alpha-3 code for an alpha-2 or alpha-3 code or a country name (any case).

    ``"WORLD"`` is accepted and returned as is.

    Raises:
        UnknownLocationError: naming ``parameter``, with close matches, for anything else.
    """
    if not isinstance(value, str) or not value.strip():
        raise UnknownLocationError(
            parameter,
            value,
            "expected an ISO 3166-1 alpha-3 code such as 'FRA' or an alpha-2 "
            "code such as 'FR' (any case).",
        )
    tables = intensity_tables()
    text = value.strip()
    upper = text.upper()
    if upper == WORLD:
        return WORLD
    if len(upper) == 3 and upper in tables.codes_by_iso3:
        return upper
    if len(upper) == 2 and upper in tables.iso3_by_iso2:
        return tables.iso3_by_iso2[upper]
    by_name = tables.iso3_by_name.get(fold(text))
    if by_name is not None:
        return by_name
    raise UnknownLocationError(
        parameter,
        value,
        "not a known country; give an ISO 3166-1 alpha-3 code (e.g. 'FRA') or "
        "alpha-2 code (e.g. 'FR'), any case.",
        _country_suggestions(text),
    )


def is_known_country(code: str) -> bool:
    """Whether ``code`` is an ISO 3166-1 alpha-2/alpha-3 code or name we know (any case).

    A known country may still lack intensity data; it then gets the world average.
    """
    try:
        normalize_country_code(code)
    except UnknownLocationError:
        return False
    return True


def has_country_data(code: str) -> bool:
    """Whether the bundled OWID table has an intensity for this (known) country."""
    try:
        return normalize_country_code(code) in intensity_tables().countries
    except UnknownLocationError:
        return False


def normalize_cloud_provider(value: str, parameter: str = "cloud_provider") -> str:
    """``"aws"``, ``"azure"`` or ``"gcp"`` for any accepted spelling (CLOUD_PROVIDER_ALIASES)."""
    provider = CLOUD_PROVIDER_ALIASES.get(fold(value)) if isinstance(value, str) else None
    if provider is None:
        raise UnknownLocationError(
            parameter,
            value,
            f"not a known cloud provider; accepted: {', '.join(CLOUD_PROVIDERS)} (any case).",
        )
    return provider


def known_cloud_regions(provider: str) -> tuple[str, ...]:
    """The cloud regions of ``provider`` (``"aws"``, ``"azure"``, ``"gcp"``) in the bundled table,
    spelled as the table spells them, sorted."""
    key = normalize_cloud_provider(provider, parameter="provider")
    return tuple(
        sorted(
            (row.region for row in intensity_tables().cloud_regions.get(key, {}).values()),
            key=str.lower,
        )
    )


def known_regions(country_iso_code: str) -> tuple[str, ...]:
    """The sub-national regions with data for a country, as ``"CODE (Name)"``; empty if none."""
    iso3 = normalize_country_code(country_iso_code)
    rows = {row.region_code: row for row in intensity_tables().regions.get(iso3, {}).values()}
    return tuple(f"{code} ({row.region_name})" for code, row in sorted(rows.items()))


def _find_cloud_region(provider: str, region: str) -> CloudRegionIntensity | None:
    table = intensity_tables().cloud_regions.get(provider, {})
    row = table.get(cloud_region_key(provider, region))
    if row is None and provider in _ZONE_SUFFIX:
        match = _ZONE_SUFFIX[provider].match(region.strip().lower())
        if match:
            row = table.get(cloud_region_key(provider, match.group("region")))
    return row


def _cloud_region_suggestions(provider: str | None, region: str) -> list[str]:
    tables = intensity_tables()
    providers = [provider] if provider else list(CLOUD_PROVIDERS)
    out: list[str] = []
    for p in providers:
        table = tables.cloud_regions.get(p, {})
        for key in difflib.get_close_matches(
            cloud_region_key(p, region), list(table), n=4, cutoff=0.6
        ):
            out.append(table[key].region if provider else f"{p}:{table[key].region}")
    return out


def _region_suggestions(iso3s: list[str], region: str) -> list[str]:
    tables = intensity_tables()
    out: list[str] = []
    for iso3 in iso3s:
        table = tables.regions.get(iso3, {})
        for key in difflib.get_close_matches(fold(region), list(table), n=3, cutoff=0.6):
            row = table[key]
            label = f"{row.region_code} ({row.region_name}, {iso3})"
            if label not in out:
                out.append(label)
    return out


def _find_region(iso3s: list[str], region: str) -> list[RegionIntensity]:
    tables = intensity_tables()
    key = fold(region)
    found = [tables.regions[i][key] for i in iso3s if key in tables.regions.get(i, {})]
    return found


# ---------------------------------------------------------------------------------------------
# the lookup


def world_average(**location: Any) -> IntensityResult:
    """The OWID world average, carrying whatever location fields are given."""
    world = intensity_tables().world
    return IntensityResult(
        g_per_kwh=world.g_per_kwh, source=SOURCE_WORLD_AVERAGE, year=world.year, **location
    )


def _validate_forced(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or number < 0:
        raise ValueError(
            f"force_carbon_intensity_g_co2e_kwh={value!r}: expected a finite number >= 0 "
            "(gCO2eq per kWh)."
        )
    return number


def resolve_offline(
    *,
    force_carbon_intensity_g_co2e_kwh: float | None = None,
    country_iso_code: str | None = None,
    region: str | None = None,
    cloud_provider: str | None = None,
    cloud_region: str | None = None,
    country_2letter_iso_code: str | None = None,
    user_warning: bool = True,
) -> IntensityResult:
    """The carbon intensity for a location from the bundled tables, without network.

    Precedence: forced value > cloud region > sub-national region (US state, Canadian province)
    > country > world average. Every argument is validated even when a higher-precedence one
    decides the value, so a typo never goes unnoticed.

    Args:
        force_carbon_intensity_g_co2e_kwh: use this value (gCO2eq/kWh); location fields are
            still resolved for the report.
        country_iso_code: ISO 3166-1 alpha-3 or alpha-2 code or a country name, any case.
        region: state/province code or name (``"CA"``, ``"california"``, ``"Québec"``). With a
            country that has no sub-national data (anything but USA and CAN) it is kept for the
            report and the country value is used. Without a country, it is looked up among the
            US states and Canadian provinces.
        cloud_provider: ``"aws"``, ``"azure"`` or ``"gcp"`` (aliases accepted); needs
            ``cloud_region``.
        cloud_region: the provider's region name (``"us-east-1"``, ``"westeurope"``,
            ``"europe-west9"``); zones such as ``"us-central1-a"`` map to their region.
        country_2letter_iso_code: ISO alpha-2 code; used when ``country_iso_code`` is not given.
        user_warning: a fallback to the world average is logged and, the first time in this
            process, issued as a
            :class:`~codecarbon_callbacks_core.errors.CodeCarbonCallbacksWarning`; False logs it
            only (a distributed run's ranks other than zero).

    Returns:
        An IntensityResult. With no location at all, or a country the tables have no figure
        for: the world average (gCO2eq/kWh, OWID), with a warning.

    Raises:
        UnknownLocationError: an unknown country, region, cloud provider or cloud region; the
            message names the parameter and suggests close matches.
        ValueError: a forced intensity that is not a finite number >= 0.
    """
    return _resolve(
        force_carbon_intensity_g_co2e_kwh=force_carbon_intensity_g_co2e_kwh,
        country_iso_code=country_iso_code,
        region=region,
        cloud_provider=cloud_provider,
        cloud_region=cloud_region,
        country_2letter_iso_code=country_2letter_iso_code,
        strict=True,
        user_warning=user_warning,
    )


def _resolve(
    *,
    force_carbon_intensity_g_co2e_kwh: float | None = None,
    country_iso_code: str | None = None,
    region: str | None = None,
    cloud_provider: str | None = None,
    cloud_region: str | None = None,
    country_2letter_iso_code: str | None = None,
    strict: bool = True,
    latitude: float | None = None,
    longitude: float | None = None,
    warn: bool = True,
    user_warning: bool = True,
) -> IntensityResult:
    """resolve_offline, plus: ``strict=False`` (geo-IP input) logs and skips an unknown region or
    country instead of raising; ``warn=False`` silences the world-average warnings (for callers
    that warn themselves or only want the location fields); ``user_warning=False`` logs them
    without issuing a :class:`CodeCarbonCallbacksWarning`."""
    forced = (
        None
        if force_carbon_intensity_g_co2e_kwh is None
        else _validate_forced(force_carbon_intensity_g_co2e_kwh)
    )
    iso3 = _resolve_country(country_iso_code, country_2letter_iso_code, strict=strict)
    provider, cloud = _resolve_cloud(cloud_provider, cloud_region, strict=strict)
    region_row, region_label, iso3 = _resolve_region(region, iso3, strict=strict)
    if cloud is not None and cloud.country_iso3:
        if iso3 is not None and iso3 != cloud.country_iso3:
            logger.warning(
                "Cloud region %s:%s is in %s, not in country_iso_code=%s; using the "
                "cloud region's country.",
                provider,
                cloud.region,
                cloud.country_iso3,
                iso3,
            )
        iso3 = cloud.country_iso3
    country_name = _country_name(iso3) if iso3 is not None and iso3 != WORLD else None
    location: dict[str, Any] = {
        "country_iso_code": iso3 if iso3 != WORLD else None,
        "country_name": country_name,
        "region": region_label,
        "cloud_provider": provider if cloud is not None else None,
        "cloud_region": cloud.region if cloud is not None else None,
        "on_cloud": cloud is not None,
        "latitude": latitude,
        "longitude": longitude,
    }
    if cloud is not None and location["region"] is None and cloud.dataset != "ccf_default_grid":
        location["region"] = cloud.location or None
    if forced is not None:
        return IntensityResult(g_per_kwh=forced, source=SOURCE_FORCED, **location)
    if cloud is not None:
        return _cloud_result(cloud, location)
    if region_row is not None:
        return IntensityResult(
            g_per_kwh=region_row.g_per_kwh,
            source=f"region:{region_row.country_iso3}-{region_row.region_code}",
            year=region_row.year,
            **location,
        )
    return _country_result(
        iso3, location, warn=warn, category=CodeCarbonCallbacksWarning if user_warning else None
    )


def _soft(error: UnknownLocationError, *, strict: bool) -> None:
    """Raise ``error`` when ``strict``; else log it (geo-IP input: the value is skipped)."""
    if strict:
        raise error
    logger.warning("Carbon intensity lookup: ignoring %s", error)


def _resolve_country(
    country_iso_code: str | None, country_2letter_iso_code: str | None, *, strict: bool
) -> str | None:
    """The ISO alpha-3 code of the given country codes (country_iso_code wins), or None."""
    iso3: str | None = None
    if country_iso_code is not None and not _blank(country_iso_code):
        try:
            iso3 = normalize_country_code(country_iso_code, "country_iso_code")
        except UnknownLocationError as error:
            _soft(error, strict=strict)
    if country_2letter_iso_code is None or _blank(country_2letter_iso_code):
        return iso3
    iso3_from_2: str | None = None
    try:
        iso3_from_2 = normalize_country_code(country_2letter_iso_code, "country_2letter_iso_code")
    except UnknownLocationError as error:
        _soft(error, strict=strict)
    if iso3 is None:
        return iso3_from_2
    if iso3_from_2 is not None and iso3_from_2 != iso3:
        logger.warning(
            "country_iso_code=%r and country_2letter_iso_code=%r name different countries; "
            "using country_iso_code (%s).",
            country_iso_code,
            country_2letter_iso_code,
            iso3,
        )
    return iso3


def _resolve_cloud(
    cloud_provider: str | None, cloud_region: str | None, *, strict: bool
) -> tuple[str | None, CloudRegionIntensity | None]:
    """(provider, the cloud region's row) of the given cloud location; (None, None) if none."""
    provider: str | None = None
    if cloud_provider is not None and not _blank(cloud_provider):
        try:
            provider = normalize_cloud_provider(cloud_provider)
        except UnknownLocationError as error:
            _soft(error, strict=strict)
    if cloud_region is None or _blank(cloud_region):
        if provider is not None:
            _soft(
                UnknownLocationError(
                    "cloud_region",
                    cloud_region,
                    f"cloud_provider={cloud_provider!r} needs a cloud_region (see "
                    f"known_cloud_regions({provider!r})).",
                ),
                strict=strict,
            )
        return None, None
    region_text = str(cloud_region)
    if provider is not None:
        cloud = _find_cloud_region(provider, region_text)
        if cloud is None:
            _soft(
                UnknownLocationError(
                    "cloud_region",
                    cloud_region,
                    f"not a known {provider} region (see known_cloud_regions({provider!r})).",
                    _cloud_region_suggestions(provider, region_text),
                ),
                strict=strict,
            )
        return provider, cloud
    if not _blank(cloud_provider):  # a provider was given but is unknown (skipped)
        return None, None
    return _cloud_of_any_provider(cloud_provider, cloud_region, strict=strict)


def _cloud_of_any_provider(
    cloud_provider: str | None, cloud_region: str, *, strict: bool
) -> tuple[str | None, CloudRegionIntensity | None]:
    """A cloud region given without its provider: the one provider that has it."""
    region_text = str(cloud_region)
    found = [
        row for p in CLOUD_PROVIDERS if (row := _find_cloud_region(p, region_text)) is not None
    ]
    if len(found) == 1:
        return found[0].provider, found[0]
    if len(found) > 1:
        _soft(
            UnknownLocationError(
                "cloud_provider",
                cloud_provider,
                f"cloud_region={cloud_region!r} exists for several providers; give "
                f"cloud_provider (one of {', '.join(r.provider for r in found)}).",
            ),
            strict=strict,
        )
    else:
        _soft(
            UnknownLocationError(
                "cloud_region",
                cloud_region,
                "not a known region of aws, azure or gcp.",
                _cloud_region_suggestions(None, region_text),
            ),
            strict=strict,
        )
    return None, None


def _resolve_region(
    region: str | None, iso3: str | None, *, strict: bool
) -> tuple[RegionIntensity | None, str | None, str | None]:
    """(the sub-national region's row, its label for the report, the country's alpha-3 code:
    ``iso3``, or the region's country when ``iso3`` is None)."""
    if region is None or _blank(region):
        return None, None, iso3
    tables = intensity_tables()
    region_text = str(region).strip()
    region_row: RegionIntensity | None = None
    if iso3 is not None and iso3 in tables.regions:
        found_regions = _find_region([iso3], region_text)
        if found_regions:
            region_row = found_regions[0]
        else:
            _soft(
                UnknownLocationError(
                    "region",
                    region,
                    f"not a known region of {iso3}; accepted: state/province code or name "
                    f"(see known_regions({iso3!r})).",
                    _region_suggestions([iso3], region_text),
                ),
                strict=strict,
            )
    elif iso3 is None:
        region_row = _region_of_any_country(region, region_text, strict=strict)
        if region_row is not None:
            iso3 = region_row.country_iso3
    else:
        logger.debug(
            "No sub-national data for %s; region %r is kept for the report only.",
            iso3,
            region_text,
        )
    label = region_row.region_name.lower() if region_row is not None else region_text.lower()
    return region_row, label, iso3


def _region_of_any_country(
    region: str, region_text: str, *, strict: bool
) -> RegionIntensity | None:
    """A region given without its country: the one country's region that matches it."""
    candidates = sorted(intensity_tables().regions)
    found_regions = _find_region(candidates, region_text)
    if len(found_regions) == 1:
        return found_regions[0]
    if len(found_regions) > 1:
        _soft(
            UnknownLocationError(
                "region",
                region,
                "matches regions of several countries; give country_iso_code too.",
                [f"{r.country_iso3}-{r.region_code}" for r in found_regions],
            ),
            strict=strict,
        )
    else:
        _soft(
            UnknownLocationError(
                "region",
                region,
                "not a known US state or Canadian province (sub-national data exists only "
                "for USA and CAN; give country_iso_code for other countries).",
                _region_suggestions(candidates, region_text),
            ),
            strict=strict,
        )
    return None


def _cloud_result(cloud: CloudRegionIntensity, location: dict[str, Any]) -> IntensityResult:
    if cloud.dataset == "ccf_default_grid":
        label = "CCF grid factor"
    else:
        label = f"Google {cloud.year}" if cloud.year else "Google"
    return IntensityResult(
        g_per_kwh=cloud.g_per_kwh,
        source=f"cloud:{cloud.provider}:{cloud.region} ({label})",
        year=cloud.year,
        **location,
    )


def _country_result(
    iso3: str | None,
    location: dict[str, Any],
    *,
    warn: bool,
    category: type[CodeCarbonCallbacksWarning] | None,
) -> IntensityResult:
    """The country's figure, else the world average (with a warning once when ``warn``)."""
    tables = intensity_tables()
    if iso3 is not None and iso3 != WORLD:
        country = tables.countries.get(iso3)
        if country is not None:
            return IntensityResult(
                g_per_kwh=country.g_per_kwh,
                source=f"country:{iso3} (OWID {country.year})",
                year=country.year,
                **location,
            )
        if warn:
            warn_once(
                f"world-average:{iso3}",
                "No carbon intensity data for %s (%s); using the world average %.1f gCO2eq/kWh.",
                iso3,
                location["country_name"],
                tables.world.g_per_kwh,
                log=logger,
                category=category,
            )
        return world_average(**location)
    if iso3 is None and warn:
        warn_once(
            "world-average:no-location",
            "No location known (no country, region or cloud region); using the world "
            "average carbon intensity %.1f gCO2eq/kWh. Give country_iso_code (or "
            "cloud_provider and cloud_region) to be exact.",
            tables.world.g_per_kwh,
            log=logger,
            category=category,
        )
    return world_average(**location)

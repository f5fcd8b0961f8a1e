"""Bundled carbon-intensity tables, loaded lazily (once, thread-safe) with the ``csv`` module.

The files live in ``core/codecarbon_callbacks_core/data/`` and are built by
``scripts/build_intensity_data.py``; ``intensity_data.md`` there gives sources, licences and
methods. Loading all four tables takes about a millisecond and happens on first use only.

Example:
    >>> from codecarbon_callbacks_core.intensity.data import intensity_tables
    >>> intensity_tables().countries["FRA"].name
    'France'
"""

from __future__ import annotations

import csv
import logging
import threading
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent.parent / "data"

COUNTRY_CODES_FILE = "country_codes.csv"
COUNTRIES_FILE = "intensity_countries.csv"
REGIONS_FILE = "intensity_regions.csv"
CLOUD_REGIONS_FILE = "cloud_regions.csv"

#: The key of the world-average row in ``intensity_countries.csv``.
WORLD = "WORLD"

CLOUD_PROVIDERS: tuple[str, ...] = ("aws", "azure", "gcp")


@dataclass(frozen=True)
class CountryCode:
    """One ISO 3166-1 country: alpha-2, alpha-3, a common name and the ISO name."""

    iso2: str
    iso3: str
    name: str
    iso_name: str


@dataclass(frozen=True)
class CountryIntensity:
    """OWID carbon intensity of electricity generation for a country (or WORLD), one year."""

    iso3: str
    iso2: str
    name: str
    year: int
    g_per_kwh: float
    generation_twh: float | None
    fossil_pct: float | None
    renewables_pct: float | None
    nuclear_pct: float | None


@dataclass(frozen=True)
class RegionIntensity:
    """Carbon intensity of a sub-national region (US state, Canadian province)."""

    country_iso3: str
    region_code: str
    region_name: str
    g_per_kwh: float
    year: int
    method: str


@dataclass(frozen=True)
class CloudRegionIntensity:
    """Grid carbon intensity of a cloud provider's region."""

    provider: str
    region: str
    g_per_kwh: float
    year: int | None
    country_iso3: str
    location: str
    dataset: str


@dataclass
class IntensityTables:
    """All bundled tables with the indexes the lookups use (keys are folded, see ``fold``)."""

    codes_by_iso3: dict[str, CountryCode] = field(default_factory=dict)
    iso3_by_iso2: dict[str, str] = field(default_factory=dict)
    iso3_by_name: dict[str, str] = field(default_factory=dict)
    countries: dict[str, CountryIntensity] = field(default_factory=dict)
    #: country iso3 -> folded code or name -> region
    regions: dict[str, dict[str, RegionIntensity]] = field(default_factory=dict)
    #: provider -> cloud_region_key(provider, region) -> region
    cloud_regions: dict[str, dict[str, CloudRegionIntensity]] = field(default_factory=dict)

    @property
    def world(self) -> CountryIntensity:
        return self.countries[WORLD]


def fold(text: str) -> str:
    """Lower-case, accent-free, single-spaced form of a name (``"Québec"`` -> ``"quebec"``)."""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(text.lower().replace("-", " ").replace("_", " ").split())


def cloud_region_key(provider: str, region: str) -> str:
    """The matching key of a cloud region: case-insensitive; for Azure also ignoring spaces,
    hyphens and underscores (Azure's display name ``East US`` is the location ``eastus``)."""
    key = region.strip().lower()
    if provider == "azure":
        key = key.replace(" ", "").replace("-", "").replace("_", "")
    return key


def _rows(name: str, data_dir: Path) -> Iterator[dict[str, str]]:
    with open(data_dir / name, newline="", encoding="utf-8") as f:
        yield from csv.DictReader(line for line in f if not line.startswith("#"))


def _optional_float(text: str) -> float | None:
    return float(text) if text.strip() else None


def load_tables(data_dir: Path = DATA_DIR) -> IntensityTables:
    """Read every table from ``data_dir`` (uncached; use ``intensity_tables()`` at run time)."""
    tables = IntensityTables()
    for row in _rows(COUNTRY_CODES_FILE, data_dir):
        code = CountryCode(row["iso2"], row["iso3"], row["name"], row["iso_name"])
        tables.codes_by_iso3[code.iso3] = code
        tables.iso3_by_iso2[code.iso2] = code.iso3
        for name in (code.name, code.iso_name):
            if name:
                tables.iso3_by_name.setdefault(fold(name), code.iso3)
    for row in _rows(COUNTRIES_FILE, data_dir):
        country = CountryIntensity(
            iso3=row["iso3"],
            iso2=row["iso2"],
            name=row["name"],
            year=int(row["year"]),
            g_per_kwh=float(row["g_per_kwh"]),
            generation_twh=_optional_float(row["generation_twh"]),
            fossil_pct=_optional_float(row["fossil_pct"]),
            renewables_pct=_optional_float(row["renewables_pct"]),
            nuclear_pct=_optional_float(row["nuclear_pct"]),
        )
        tables.countries[country.iso3] = country
        if country.iso3 != WORLD:
            # OWID's short names ("South Korea", "Russia") win over ISO's long ones.
            tables.iso3_by_name[fold(country.name)] = country.iso3
    for row in _rows(REGIONS_FILE, data_dir):
        region = RegionIntensity(
            country_iso3=row["country_iso3"],
            region_code=row["region_code"],
            region_name=row["region_name"],
            g_per_kwh=float(row["g_per_kwh"]),
            year=int(row["year"]),
            method=row["method"],
        )
        by_key = tables.regions.setdefault(region.country_iso3, {})
        by_key[fold(region.region_code)] = region
        by_key[fold(region.region_name)] = region
    for row in _rows(CLOUD_REGIONS_FILE, data_dir):
        cloud = CloudRegionIntensity(
            provider=row["provider"],
            region=row["region"],
            g_per_kwh=float(row["g_per_kwh"]),
            year=int(row["year"]) if row["year"] else None,
            country_iso3=row["country_iso3"],
            location=row["location"],
            dataset=row["dataset"],
        )
        tables.cloud_regions.setdefault(cloud.provider, {})[
            cloud_region_key(cloud.provider, cloud.region)
        ] = cloud
    if WORLD not in tables.countries:
        raise RuntimeError(f"{data_dir / COUNTRIES_FILE} has no {WORLD} row")
    return tables


_tables: IntensityTables | None = None
_tables_lock = threading.Lock()


def intensity_tables() -> IntensityTables:
    """The bundled tables, loaded on first call and cached for the process."""
    global _tables
    if _tables is None:
        with _tables_lock:
            if _tables is None:
                _tables = load_tables()
    return _tables

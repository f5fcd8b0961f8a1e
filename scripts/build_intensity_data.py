#!/usr/bin/env python
"""Build the bundled carbon-intensity data files from the reference data.

Reads ``../shared/reference/data`` (relative to the repository root) and writes our own compact
files into ``core/codecarbon_callbacks_core/data/``:

* ``country_codes.csv``        ISO 3166-1 alpha-2 <-> alpha-3 <-> name for every country
                               (from ``pycountry``, needed only by this script) plus Kosovo (XK/XKX)
* ``intensity_countries.csv``  OWID grid carbon intensity per country + WORLD (CC BY 4.0)
* ``intensity_regions.csv``    US states (eGRID via CodeCarbon, lbs/MWh -> g/kWh) and Canadian
                               provinces (CodeCarbon's 2023 mix x per-source factors)
* ``cloud_regions.csv``        AWS/Azure from CCF default grid factors, GCP from Google's own
                               region-carbon-info (latest year per region)
* ``intensity_data.md``        provenance, licences, attribution and methods (sidecar)

The output is deterministic (no timestamps): running the script twice gives identical files, and
the test suite checks that the bundled files equal a fresh build.

Usage::

    python scripts/build_intensity_data.py [--reference-dir DIR] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import unicodedata
from decimal import Decimal
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REFERENCE_DIR = REPO_ROOT.parent / "shared" / "reference" / "data"
DEFAULT_OUT_DIR = REPO_ROOT / "core" / "codecarbon_callbacks_core" / "data"

OWID_ATTRIBUTION = (
    "Our World in Data, Energy dataset (based on Ember and Energy Institute Statistical Review "
    "of World Energy)"
)

#: 1 lb = 453.592 g and 1 MWh = 1000 kWh, so lbs/MWh x 0.453592 = g/kWh.
LBS_PER_MWH_TO_G_PER_KWH = Decimal("0.453592")

#: Canadian mix keys -> key in CodeCarbon's carbon_intensity_per_source.json.
#: biomass and other have no factor in that file (see CANADA_UNFACTORED_SOURCES); tidal is a
#: water-driven source like hydro, and its share is 0 in every province of the 2023 file.
CANADA_SOURCE_TO_FACTOR_KEY: dict[str, str] = {
    "coal": "coal",
    "petroleum": "petroleum",
    "naturalGas": "natural_gas",
    "nuclear": "nuclear",
    "hydro": "hydroelectricity",
    "tidal": "hydroelectricity",
    "solar": "solar",
    "wind": "wind",
}
#: Sources with no factor in the per-source file; counted at 0 g/kWh (biogenic CO2 is reported
#: outside electricity-sector totals in national inventories). Documented in intensity_data.md.
CANADA_UNFACTORED_SOURCES: tuple[str, ...] = ("biomass", "other")

#: Kosovo has no ISO 3166-1 entry; XK/XKX are the user-assigned codes that geo-IP services and
#: the European Commission use. OWID has no intensity for it (its code is OWID_KOS).
EXTRA_COUNTRY_CODES: tuple[tuple[str, str, str], ...] = (("XK", "XKX", "Kosovo"),)

CCF_DATASET = "ccf_default_grid"
GOOGLE_DATASET = "google_region_carbon_info"


# --------------------------------------------------------------------------------------------
# helpers


def fold(text: str) -> str:
    """Lower-case, accent-free, single-spaced form of a name, for matching."""
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_only = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(ascii_only.lower().replace("-", " ").replace("_", " ").split())


def fmt(value: Decimal | float | str, decimals: int) -> str:
    """A number with a fixed number of decimals (half-even rounding, as Decimal does)."""
    quantum = Decimal(1).scaleb(-decimals)
    return str(Decimal(str(value)).quantize(quantum))


def plain(value: str) -> str:
    """A decimal string normalised (no exponent, no trailing zeros)."""
    number = Decimal(value)
    text = format(number.normalize(), "f")
    return text


def write_csv(
    path: Path, header_lines: list[str], columns: list[str], rows: list[dict[str, Any]]
) -> None:
    buffer = io.StringIO()
    for line in header_lines:
        buffer.write(f"# {line}\n" if line else "#\n")
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")


def provenance_header(title: str, sources: list[str]) -> list[str]:
    return [
        title,
        "Built by scripts/build_intensity_data.py; provenance and methods: intensity_data.md.",
        *sources,
        "Lines starting with '#' are comments.",
    ]


# --------------------------------------------------------------------------------------------
# builders


def build_country_codes() -> list[dict[str, str]]:
    import pycountry  # build-time only: the runtime reads the CSV

    rows = [
        {
            "iso2": c.alpha_2,
            "iso3": c.alpha_3,
            "name": getattr(c, "common_name", None) or c.name,
            "iso_name": c.name,
        }
        for c in pycountry.countries
    ]
    for iso2, iso3, name in EXTRA_COUNTRY_CODES:
        rows.append({"iso2": iso2, "iso3": iso3, "name": name, "iso_name": ""})
    rows.sort(key=lambda row: row["iso3"])
    iso2s = [row["iso2"] for row in rows]
    iso3s = [row["iso3"] for row in rows]
    assert len(set(iso2s)) == len(iso2s) and len(set(iso3s)) == len(iso3s), "duplicate codes"
    return rows


def build_countries(reference_dir: Path, codes: list[dict[str, str]]) -> list[dict[str, str]]:
    iso3_to_iso2 = {row["iso3"]: row["iso2"] for row in codes}
    rows: list[dict[str, str]] = []
    with open(reference_dir / "country_carbon_intensity.csv", newline="", encoding="utf-8") as f:
        for ref in csv.DictReader(f):
            iso3 = ref["iso_code"]
            if iso3 != "WORLD" and iso3 not in iso3_to_iso2:
                raise SystemExit(f"country {iso3} has no ISO 3166-1 alpha-2 code")

            def optional(value: str, decimals: int) -> str:
                return fmt(value, decimals) if value.strip() else ""

            rows.append(
                {
                    "iso3": iso3,
                    "iso2": iso3_to_iso2.get(iso3, ""),
                    "name": ref["country"],
                    "year": str(int(ref["year"])),
                    "g_per_kwh": fmt(ref["carbon_intensity_elec_g_per_kwh"], 3),
                    "generation_twh": optional(ref["electricity_generation_twh"], 2),
                    "fossil_pct": optional(ref["fossil_share_elec_pct"], 3),
                    "renewables_pct": optional(ref["renewables_share_elec_pct"], 3),
                    "nuclear_pct": optional(ref["nuclear_share_elec_pct"], 3),
                }
            )
    # WORLD last, countries by code
    rows.sort(key=lambda row: (row["iso3"] == "WORLD", row["iso3"]))
    return rows


def canada_intensity_g_per_kwh(mix: dict[str, float], factors: dict[str, Any]) -> Decimal:
    """Share-weighted mean of per-source factors: sum(share_s x factor_s) / total."""
    known = set(CANADA_SOURCE_TO_FACTOR_KEY) | set(CANADA_UNFACTORED_SOURCES) | {"total"}
    unknown = set(mix) - known
    if unknown:
        raise SystemExit(f"canada_energy_mix.json has unmapped sources: {sorted(unknown)}")
    weighted = Decimal(0)
    for source, factor_key in CANADA_SOURCE_TO_FACTOR_KEY.items():
        weighted += Decimal(str(mix.get(source, 0))) * Decimal(str(factors[factor_key]))
    return weighted / Decimal(str(mix["total"]))


def build_regions(reference_dir: Path) -> list[dict[str, str]]:
    import pycountry  # build-time only

    rows: list[dict[str, str]] = []
    usa = json.loads((reference_dir / "codecarbon" / "usa_emissions.json").read_text("utf-8"))
    us_names = {s.code.split("-")[1]: s.name for s in pycountry.subdivisions.get(country_code="US")}
    for key, entry in usa.items():
        if key in ("_unit", "usa"):  # unit description; national average (OWID covers USA)
            continue
        code = entry["regionCode"].upper()
        if fold(us_names[code]) != fold(key):
            raise SystemExit(f"US state {key!r}: code {code} is {us_names[code]!r} in ISO 3166-2")
        rows.append(
            {
                "country_iso3": "USA",
                "region_code": code,
                "region_name": us_names[code],
                "g_per_kwh": fmt(Decimal(str(entry["emissions"])) * LBS_PER_MWH_TO_G_PER_KWH, 3),
                "year": "2016",
                "method": "egrid_lbs_per_mwh",
            }
        )

    canada = json.loads(
        (reference_dir / "codecarbon" / "canada_energy_mix.json").read_text("utf-8")
    )
    factors = json.loads(
        (reference_dir / "codecarbon" / "carbon_intensity_per_source.json").read_text("utf-8")
    )
    ca_codes = {
        fold(s.name): s.code.split("-")[1] for s in pycountry.subdivisions.get(country_code="CA")
    }
    ca_names = {s.code.split("-")[1]: s.name for s in pycountry.subdivisions.get(country_code="CA")}
    for key, mix in canada.items():
        code = ca_codes.get(fold(key))
        if code is None:
            raise SystemExit(f"Canadian province {key!r} not found in ISO 3166-2:CA")
        rows.append(
            {
                "country_iso3": "CAN",
                "region_code": code,
                "region_name": ca_names[code],
                "g_per_kwh": fmt(canada_intensity_g_per_kwh(mix, factors), 3),
                "year": "2023",
                "method": "mix_x_per_source_factors",
            }
        )
    rows.sort(key=lambda row: (row["country_iso3"], row["region_code"]))
    return rows


def build_cloud_regions(reference_dir: Path) -> list[dict[str, str]]:
    with open(reference_dir / "cloud_region_intensity.csv", newline="", encoding="utf-8") as f:
        reference = list(csv.DictReader(f))
    rows: list[dict[str, str]] = []
    for ref in reference:
        if ref["provider"] in ("aws", "azure") and ref["dataset"] == CCF_DATASET:
            if ref["region"] == "Unknown":  # CCF's average of its listed regions, not a region
                continue
            rows.append(
                {
                    "provider": ref["provider"],
                    "region": ref["region"],
                    "g_per_kwh": plain(ref["g_per_kwh"]),
                    "year": ref["year"],
                    "country_iso3": ref["country_iso3"],
                    "location": ref["country_or_grid"],
                    "dataset": CCF_DATASET,
                }
            )
    latest: dict[str, dict[str, str]] = {}
    for ref in reference:
        if ref["provider"] == "gcp" and ref["dataset"] == GOOGLE_DATASET:
            kept = latest.get(ref["region"])
            if kept is None or int(ref["year"]) > int(kept["year"]):
                latest[ref["region"]] = ref
    for region, ref in latest.items():
        rows.append(
            {
                "provider": "gcp",
                "region": region,
                "g_per_kwh": plain(ref["g_per_kwh"]),
                "year": ref["year"],
                "country_iso3": ref["country_iso3"],
                "location": ref["location"],
                "dataset": GOOGLE_DATASET,
            }
        )
    rows.sort(key=lambda row: (row["provider"], row["region"].lower()))
    lowered = [(row["provider"], row["region"].lower()) for row in rows]
    assert len(set(lowered)) == len(lowered), "cloud regions collide case-insensitively"
    return rows


# --------------------------------------------------------------------------------------------
# sidecar


def sidecar_markdown(
    countries: list[dict[str, str]],
    regions: list[dict[str, str]],
    clouds: list[dict[str, str]],
    codes: list[dict[str, str]],
    factors: dict[str, Any],
) -> str:
    n_countries = sum(1 for row in countries if row["iso3"] != "WORLD")
    world = next(row for row in countries if row["iso3"] == "WORLD")
    years: dict[str, int] = {}
    for row in countries:
        if row["iso3"] != "WORLD":
            years[row["year"]] = years.get(row["year"], 0) + 1
    year_text = ", ".join(f"{y}: {n}" for y, n in sorted(years.items(), reverse=True))
    per_provider: dict[str, int] = {}
    for row in clouds:
        per_provider[row["provider"]] = per_provider.get(row["provider"], 0) + 1
    n_us = sum(1 for row in regions if row["country_iso3"] == "USA")
    n_ca = sum(1 for row in regions if row["country_iso3"] == "CAN")
    factor_text = ", ".join(
        f"{src} -> `{key}` = {factors[key]}" for src, key in CANADA_SOURCE_TO_FACTOR_KEY.items()
    )
    return f"""# Bundled carbon-intensity data: provenance, licences, methods

Generated by `scripts/build_intensity_data.py` from `../shared/reference/data` (see that folder's
README.md for the upstream repositories and commits). Do not edit these files by hand: rerun the
script. Units: gCO2eq per kWh of electricity. The runtime reads them with the `csv` module
(lines starting with `#` are comments), lazily and once.

## intensity_countries.csv: {n_countries} countries + WORLD

* Source: Our World in Data `carbon_intensity_elec` (greenhouse gases emitted per kWh of
  electricity **generated**), latest year per country, and that year's generation mix; from the
  reference file `country_carbon_intensity.csv` (OWID chart exports of the mid-2025 release).
* Licence: **CC BY 4.0**. Attribution: "{OWID_ATTRIBUTION}".
* Years of the country rows: {year_text}. WORLD: {world["year"]}, {world["g_per_kwh"]} g/kWh; it
  is the world average used when no location is known.
* Columns: `iso3`, `iso2`, `name` (OWID's name), `year`, `g_per_kwh` (3 decimals),
  `generation_twh`, `fossil_pct`, `renewables_pct`, `nuclear_pct` (empty for GLP, GUF, MTQ, REU:
  no mix row for that year).
* Kosovo is absent (OWID codes it `OWID_KOS`); a Kosovo location gets the world average.
* The world average is OWID's WORLD row, not the 475 g/kWh (IEA 2019) `world_average` of
  CodeCarbon's `carbon_intensity_per_source.json`.
* Vintage: CodeCarbon 3.3.2's `global_energy_mix.json` is an older OWID extraction (2024); per the
  reference README only 34 of its 213 values agree with these within 0.01 g/kWh, so figures
  differ from CodeCarbon's for most countries. A newer OWID release also exists (the reference's
  spot check: World 2024 = 471.080 there, 473.007 here); do not mix vintages.

## country_codes.csv: {len(codes)} codes

ISO 3166-1 alpha-2, alpha-3, a common name and the ISO name of every country, taken from the
`pycountry` package (LGPL-2.1, ISO 3166 data of Debian's iso-codes; the codes are facts of the
ISO standard; pycountry is used by the build script only, not at run time), plus Kosovo as `XK`/`XKX` (user-assigned codes used by geo-IP services). It lets the lookup
accept alpha-2 codes and tell a valid country without data (world average, with a warning) from a
typo (an error).

## intensity_regions.csv: {n_us - 1} US states + DC, {n_ca} Canadian provinces and territories

* US: CodeCarbon `data/private_infra/2016/usa_emissions.json` (MIT; US EPA eGRID figures, year
  2016 per CodeCarbon's folder name, the eGRID edition is not stated), in **lbs CO2 per MWh**,
  converted with 1 lb = 453.592 g: g/kWh = lbs/MWh x 0.453592 (3 decimals). The national `usa`
  entry is left out (the OWID country value is used for the USA as a whole).
  Caveat: the installed CodeCarbon 3.3.2 wheel ships a newer file,
  `data/private_infra/2023/usa_emissions.json` (EPA eGRID2023, field `STC2ERTA`, CO2e total output
  rate), which is not in `../shared/reference`; its state values differ from these (e.g.
  California 179.1 g/kWh there, 205.3 here). Rebuild from it once it is added to the reference.
* Canada: CodeCarbon `data/private_infra/2023/canada_energy_mix.json` (MIT; generation shares in %
  per province, 2023) weighted by the factors of CodeCarbon's
  `carbon_intensity_per_source.json` (MIT; lifecycle factors, gCO2eq/kWh):
  g/kWh = sum(share_s x factor_s) / total. Factors used: {factor_text}.
  `biomass` and `other` have no factor in that file and count as 0 g/kWh (biogenic CO2 is
  reported outside electricity-sector totals in national inventories; this under-counts
  provinces with biomass, e.g. British Columbia 6.7 %). This differs from CodeCarbon 3.3, which
  weights only coal 995.7, petroleum 816.7 and natural gas 743.8 and counts every other source
  (hydro, nuclear, wind, solar) as zero; our values are therefore higher for low-carbon provinces.
* `region_code` is the ISO 3166-2 subdivision code without the country prefix; `region_name` is
  the ISO name. Lookups accept either, case- and accent-insensitively.

## cloud_regions.csv: {", ".join(f"{p} {n}" for p, n in sorted(per_provider.items()))}

* AWS and Azure: Cloud Carbon Footprint (CCF) default grid emission factors
  (`cloud-carbon-footprint/cloud-carbon-footprint`, **Apache-2.0**), metric t/kWh x 1,000,000.
  Upstream: US regions from US EPA eGRID per NERC region (`location` names it), EU countries from
  EEA, others from carbonfootprint.com 2021 electricity (`year` = 2021 where CCF says so). CCF's
  `Unknown` rows (averages of its regions) are left out. Azure keeps CCF's spellings (aliases such
  as `*stage`, `*euap`, geography names `asia`, `asiapacific` with no single country); lookups are
  case-insensitive and ignore spaces, hyphens and underscores for Azure (`East US` = `eastus`).
* GCP: Google's own published grid carbon intensity (`GoogleCloudPlatform/region-carbon-info`,
  **Apache-2.0**), the latest year available for each region (`year`), operational average of the
  local grid, **not** adjusted for Google's carbon-free-energy purchases. CCF's GCP figures
  (older, and its CFE-adjusted variant) are not used.
* `country_iso3` is the country of the region (empty for geography-level Azure names).
"""


# --------------------------------------------------------------------------------------------


def build(reference_dir: Path, out_dir: Path) -> list[Path]:
    """Build every file into ``out_dir``; return the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    codes = build_country_codes()
    countries = build_countries(reference_dir, codes)
    regions = build_regions(reference_dir)
    clouds = build_cloud_regions(reference_dir)
    factors = json.loads(
        (reference_dir / "codecarbon" / "carbon_intensity_per_source.json").read_text("utf-8")
    )

    paths = {
        "codes": out_dir / "country_codes.csv",
        "countries": out_dir / "intensity_countries.csv",
        "regions": out_dir / "intensity_regions.csv",
        "clouds": out_dir / "cloud_regions.csv",
        "sidecar": out_dir / "intensity_data.md",
    }
    write_csv(
        paths["codes"],
        provenance_header(
            "ISO 3166-1 country codes (alpha-2, alpha-3, common name, ISO name).",
            [
                (
                    "Source: pycountry (ISO 3166 data from Debian iso-codes); XK/XKX Kosovo added "
                    "(user-assigned)."
                )
            ],
        ),
        ["iso2", "iso3", "name", "iso_name"],
        codes,
    )
    write_csv(
        paths["countries"],
        provenance_header(
            "Carbon intensity of electricity generation per country, gCO2eq/kWh, latest year.",
            [f"Source: {OWID_ATTRIBUTION}. Licence: CC BY 4.0.", "WORLD = world average."],
        ),
        [
            "iso3",
            "iso2",
            "name",
            "year",
            "g_per_kwh",
            "generation_twh",
            "fossil_pct",
            "renewables_pct",
            "nuclear_pct",
        ],
        countries,
    )
    write_csv(
        paths["regions"],
        provenance_header(
            "Sub-national carbon intensity, gCO2eq/kWh: US states (and DC), Canadian provinces.",
            [
                (
                    "Source: CodeCarbon data files (MIT): usa_emissions.json (US EPA eGRID, lbs/MWh x "
                    "0.453592), canada_energy_mix.json x carbon_intensity_per_source.json."
                )
            ],
        ),
        ["country_iso3", "region_code", "region_name", "g_per_kwh", "year", "method"],
        regions,
    )
    write_csv(
        paths["clouds"],
        provenance_header(
            "Cloud region grid carbon intensity, gCO2eq/kWh.",
            [
                (
                    "Sources: AWS/Azure: Cloud Carbon Footprint default grid factors (Apache-2.0); "
                    "GCP: Google region-carbon-info, latest year (Apache-2.0)."
                )
            ],
        ),
        ["provider", "region", "g_per_kwh", "year", "country_iso3", "location", "dataset"],
        clouds,
    )
    paths["sidecar"].write_text(
        sidecar_markdown(countries, regions, clouds, codes, factors), encoding="utf-8"
    )
    return list(paths.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--reference-dir",
        type=Path,
        default=DEFAULT_REFERENCE_DIR,
        help=f"reference data folder (default: {DEFAULT_REFERENCE_DIR})",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help=f"output folder (default: {DEFAULT_OUT_DIR})",
    )
    args = parser.parse_args(argv)
    for path in build(args.reference_dir, args.out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

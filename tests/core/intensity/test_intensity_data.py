"""The bundled intensity tables: every row parses, counts and values match ../shared/reference
after the documented conversions, provenance is present, the build is reproducible, loading is
fast and lazy."""

from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
from codecarbon_callbacks_core.intensity import data as intensity_data
from codecarbon_callbacks_core.intensity.data import DATA_DIR, WORLD, load_tables

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build_intensity_data.py"
OWID_ATTRIBUTION = (
    "Our World in Data, Energy dataset (based on Ember and Energy Institute Statistical Review "
    "of World Energy)"
)
BUNDLED_FILES = (
    "country_codes.csv",
    "intensity_countries.csv",
    "intensity_regions.csv",
    "cloud_regions.csv",
    "intensity_data.md",
)


def read_bundled(name: str) -> list[dict[str, str]]:
    with open(DATA_DIR / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def read_reference_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def ref_data(reference_dir: Path) -> Path:
    return reference_dir / "data"


# --- every row parses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,numeric,required",
    [
        ("intensity_countries.csv", ["g_per_kwh", "year"], ["iso3", "name", "year", "g_per_kwh"]),
        (
            "intensity_regions.csv",
            ["g_per_kwh", "year"],
            ["country_iso3", "region_code", "region_name", "g_per_kwh", "year", "method"],
        ),
        ("cloud_regions.csv", ["g_per_kwh"], ["provider", "region", "g_per_kwh", "dataset"]),
        ("country_codes.csv", [], ["iso2", "iso3", "name"]),
    ],
)
def test_every_row_parses(name: str, numeric: list[str], required: list[str]) -> None:
    rows = read_bundled(name)
    assert rows, name
    header_width = len(rows[0])
    for row in rows:
        assert None not in row and len(row) == header_width, row  # no ragged rows
        for column in required:
            assert row[column].strip(), (name, column, row)
        for column in numeric:
            value = float(row[column])
            assert value >= 0, row
        if "g_per_kwh" in row:
            assert 0 <= float(row["g_per_kwh"]) < 2000, row
    load_tables()  # the runtime loader accepts every row too


def test_files_carry_provenance() -> None:
    for name in BUNDLED_FILES[:-1]:
        head = (DATA_DIR / name).read_text("utf-8").splitlines()[:6]
        comments = [line for line in head if line.startswith("#")]
        assert comments and any("intensity_data.md" in line for line in comments), name
    countries_head = (DATA_DIR / "intensity_countries.csv").read_text("utf-8")[:1000]
    assert OWID_ATTRIBUTION in countries_head and "CC BY 4.0" in countries_head
    sidecar = (DATA_DIR / "intensity_data.md").read_text("utf-8")
    for needle in (
        OWID_ATTRIBUTION,
        "CC BY 4.0",
        "Apache-2.0",
        "MIT",
        "0.453592",
        "region-carbon-info",
        "Cloud Carbon Footprint",
        "biomass",
    ):
        assert needle in sidecar, needle


# --- countries -----------------------------------------------------------------------------


def test_countries_match_reference(ref_data: Path) -> None:
    reference = read_reference_csv(ref_data / "country_carbon_intensity.csv")
    ours = {row["iso3"]: row for row in read_bundled("intensity_countries.csv")}
    ref_countries = [row for row in reference if row["iso_code"] != WORLD]
    assert len(ref_countries) == 213  # README: 213 country rows + WORLD
    assert len(ours) == len(reference) == 214
    assert set(ours) == {row["iso_code"] for row in reference}
    for ref in reference:
        row = ours[ref["iso_code"]]
        assert row["name"] == ref["country"]
        assert int(row["year"]) == int(ref["year"])
        assert float(row["g_per_kwh"]) == pytest.approx(
            float(ref["carbon_intensity_elec_g_per_kwh"]), abs=5e-4
        )
        for ours_col, ref_col in (
            ("generation_twh", "electricity_generation_twh"),
            ("fossil_pct", "fossil_share_elec_pct"),
            ("renewables_pct", "renewables_share_elec_pct"),
            ("nuclear_pct", "nuclear_share_elec_pct"),
        ):
            if ref[ref_col].strip():
                assert float(row[ours_col]) == pytest.approx(float(ref[ref_col]), abs=5e-3)
            else:
                assert row[ours_col] == ""
    tables = load_tables()
    world_ref = next(row for row in reference if row["iso_code"] == WORLD)
    assert tables.world.g_per_kwh == pytest.approx(
        float(world_ref["carbon_intensity_elec_g_per_kwh"])
    )


def test_alpha2_alpha3_mapping_covers_every_country() -> None:
    tables = load_tables()
    for iso3, country in tables.countries.items():
        if iso3 == WORLD:
            continue
        assert len(country.iso2) == 2, iso3
        assert tables.iso3_by_iso2[country.iso2] == iso3
        assert tables.codes_by_iso3[iso3].iso2 == country.iso2
    iso2s = [code.iso2 for code in tables.codes_by_iso3.values()]
    assert len(iso2s) == len(set(iso2s))


def test_alpha2_mapping_agrees_with_pycountry() -> None:
    pycountry = pytest.importorskip("pycountry")
    tables = load_tables()
    for iso3, code in tables.codes_by_iso3.items():
        entry = pycountry.countries.get(alpha_3=iso3)
        if entry is None:
            assert iso3 == "XKX"  # Kosovo: user-assigned, documented
            continue
        assert entry.alpha_2 == code.iso2
    assert len(tables.codes_by_iso3) == len(pycountry.countries) + 1


# --- sub-national --------------------------------------------------------------------------


def test_us_states_are_lbs_per_mwh_converted(ref_data: Path) -> None:
    reference = json.loads((ref_data / "codecarbon" / "usa_emissions.json").read_text("utf-8"))
    states = {k: v for k, v in reference.items() if k not in ("_unit", "usa")}
    ours = {
        row["region_code"]: row
        for row in read_bundled("intensity_regions.csv")
        if row["country_iso3"] == "USA"
    }
    assert len(ours) == len(states) == 51
    for name, entry in states.items():
        row = ours[entry["regionCode"]]
        assert row["region_name"].lower() == name
        # 1 lb = 453.592 g, 1 MWh = 1000 kWh
        expected = entry["emissions"] * 453.592 / 1000.0
        assert float(row["g_per_kwh"]) == pytest.approx(expected, abs=5e-4)


def test_canadian_provinces_use_per_source_factors(ref_data: Path) -> None:
    mixes = json.loads((ref_data / "codecarbon" / "canada_energy_mix.json").read_text("utf-8"))
    factors = json.loads(
        (ref_data / "codecarbon" / "carbon_intensity_per_source.json").read_text("utf-8")
    )
    # documented method: share-weighted factors of the per-source file; tidal as hydro;
    # biomass and other have no factor in the file and count 0
    factor_of = {
        "coal": factors["coal"],
        "petroleum": factors["petroleum"],
        "naturalGas": factors["natural_gas"],
        "nuclear": factors["nuclear"],
        "hydro": factors["hydroelectricity"],
        "tidal": factors["hydroelectricity"],
        "solar": factors["solar"],
        "wind": factors["wind"],
        "biomass": 0,
        "other": 0,
    }
    ours = {
        row["region_name"].lower(): row
        for row in read_bundled("intensity_regions.csv")
        if row["country_iso3"] == "CAN"
    }
    assert len(ours) == len(mixes) == 13
    for name, mix in mixes.items():
        assert set(mix) - {"total"} <= set(factor_of), mix
        expected = sum(mix[src] * factor_of[src] for src in mix if src != "total") / mix["total"]
        assert float(ours[name]["g_per_kwh"]) == pytest.approx(expected, abs=5e-4), name
    # a fossil-heavy province is far above a hydro one
    assert float(ours["alberta"]["g_per_kwh"]) > 10 * float(ours["quebec"]["g_per_kwh"])


# --- cloud regions -------------------------------------------------------------------------


def test_aws_and_azure_are_ccf_grid_factors(ref_data: Path) -> None:
    reference = read_reference_csv(ref_data / "cloud_region_intensity.csv")
    ours = {(row["provider"], row["region"]): row for row in read_bundled("cloud_regions.csv")}
    for provider in ("aws", "azure"):
        expected = [
            row
            for row in reference
            if row["provider"] == provider
            and row["dataset"] == "ccf_default_grid"
            and row["region"] != "Unknown"
        ]
        mine = [key for key in ours if key[0] == provider]
        assert len(mine) == len(expected) > 0
        for ref in expected:
            row = ours[(provider, ref["region"])]
            assert Decimal(row["g_per_kwh"]) == Decimal(ref["g_per_kwh"])
            assert row["country_iso3"] == ref["country_iso3"]
            assert row["year"] == ref["year"]
    assert ("aws", "Unknown") not in ours


def test_gcp_is_google_latest_year(ref_data: Path) -> None:
    reference = read_reference_csv(ref_data / "cloud_region_intensity.csv")
    google = [
        row
        for row in reference
        if row["provider"] == "gcp" and row["dataset"] == "google_region_carbon_info"
    ]
    latest: dict[str, dict[str, str]] = {}
    for row in google:
        if row["region"] not in latest or int(row["year"]) > int(latest[row["region"]]["year"]):
            latest[row["region"]] = row
    ours = {
        row["region"]: row for row in read_bundled("cloud_regions.csv") if row["provider"] == "gcp"
    }
    assert set(ours) == set(latest)
    for region, ref in latest.items():
        assert Decimal(ours[region]["g_per_kwh"]) == Decimal(ref["g_per_kwh"]), region
        assert ours[region]["year"] == ref["year"]
        assert ours[region]["country_iso3"] == ref["country_iso3"]
        assert ours[region]["dataset"] == "google_region_carbon_info"
    # not the CFE-adjusted (or CCF) numbers
    cfe = {
        row["region"]: row["g_per_kwh"]
        for row in reference
        if row["dataset"] == "ccf_gcp_cfe_adjusted"
    }
    assert Decimal(ours["us-west1"]["g_per_kwh"]) != Decimal(cfe["us-west1"])


def test_cloud_region_countries_are_known() -> None:
    tables = load_tables()
    for provider, regions in tables.cloud_regions.items():
        for row in regions.values():
            if row.country_iso3:
                assert row.country_iso3 in tables.codes_by_iso3, (provider, row.region)


# --- reproducible build --------------------------------------------------------------------


def test_build_script_reproduces_bundled_files(tmp_path: Path, ref_data: Path) -> None:
    pytest.importorskip("pycountry")
    proc = subprocess.run(
        [
            sys.executable,
            str(BUILD_SCRIPT),
            "--reference-dir",
            str(ref_data),
            "--out-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for name in BUNDLED_FILES:
        assert (tmp_path / name).read_bytes() == (DATA_DIR / name).read_bytes(), name


# --- loading: fast, lazy, once -------------------------------------------------------------


def test_loading_takes_a_few_ms() -> None:
    load_tables()  # warm the OS file cache
    cpu_s, wall_s = [], []
    for _ in range(7):
        cpu_start, wall_start = time.thread_time(), time.perf_counter()
        load_tables()
        cpu_s.append(time.thread_time() - cpu_start)
        wall_s.append(time.perf_counter() - wall_start)
    # CPU time of this thread: what loading costs, whatever else the machine is running (about
    # 3 ms here); wall time bounded loosely for a busy 2-core machine
    assert statistics.median(cpu_s) < 0.010, cpu_s
    assert statistics.median(wall_s) < 0.050, wall_s


def test_tables_are_cached_once() -> None:
    assert intensity_data.intensity_tables() is intensity_data.intensity_tables()


def test_import_is_lazy_and_light() -> None:
    code = (
        "import sys, codecarbon_callbacks_core.intensity as m\n"
        "from codecarbon_callbacks_core.intensity import data\n"
        "assert data._tables is None, 'tables loaded at import'\n"
        "bad = [x for x in ('requests', 'pandas', 'pycountry', "
        "'codecarbon_callbacks_core.intensity.online') if x in sys.modules]\n"
        "assert not bad, bad\n"
        "m.LocationLookup\n"
        "assert 'requests' not in sys.modules, 'online imports requests eagerly'\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr


def test_concurrent_first_load_gives_one_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    monkeypatch.setattr(intensity_data, "_tables", None)
    calls: list[int] = []
    real_load = intensity_data.load_tables

    def counting_load(*args: object, **kwargs: object) -> intensity_data.IntensityTables:
        calls.append(1)
        time.sleep(0.02)  # widen the race window
        return real_load()

    monkeypatch.setattr(intensity_data, "load_tables", counting_load)
    seen: list[object] = []
    threads = [
        threading.Thread(target=lambda: seen.append(intensity_data.intensity_tables()))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(seen) == 8 and all(t is seen[0] for t in seen)

"""Offline lookups: codes in any form, sub-national regions, cloud regions, forced values,
precedence, and errors that name the parameter. Expected values come from the bundled data files,
read here as plain CSV (their agreement with the public sources is test_intensity_data's job)."""

from __future__ import annotations

import csv
import logging
import warnings

import pytest
from codecarbon_callbacks_core import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.intensity import (
    IntensityResult,
    UnknownLocationError,
    has_country_data,
    is_known_country,
    known_cloud_regions,
    known_regions,
    resolve_offline,
)
from codecarbon_callbacks_core.intensity.data import DATA_DIR, intensity_tables


def country_g(iso3: str) -> float:
    return intensity_tables().countries[iso3].g_per_kwh


def bundled_rows(name: str) -> list[dict[str, str]]:
    """One of the package's own data files, read as plain CSV (its ``#`` header lines skipped)."""
    with open(DATA_DIR / name, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


@pytest.fixture(scope="module")
def bundled_countries() -> dict[str, dict[str, str]]:
    return {row["iso3"]: row for row in bundled_rows("intensity_countries.csv")}


# --- countries -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["FRA", "fra", "Fra", "FR", "fr", " fr ", "France", "france"])
def test_country_any_form(code: str, bundled_countries: dict[str, dict[str, str]]) -> None:
    result = resolve_offline(country_iso_code=code)
    ref = bundled_countries["FRA"]
    assert result.country_iso_code == "FRA"
    assert result.country_name == "France"
    assert result.g_per_kwh == pytest.approx(float(ref["g_per_kwh"]))
    assert result.year == int(ref["year"])
    assert result.source == f"country:FRA (OWID {ref['year']})"
    assert not result.on_cloud and result.cloud_provider is None


def test_every_bundled_country_resolves_by_alpha3_and_alpha2(
    bundled_countries: dict[str, dict[str, str]],
) -> None:
    assert len(bundled_countries) > 200
    for iso3, ref in bundled_countries.items():
        if iso3 == "WORLD":
            continue
        expected = float(ref["g_per_kwh"])
        assert resolve_offline(country_iso_code=iso3.lower()).g_per_kwh == pytest.approx(expected)
        iso2 = ref["iso2"]
        by_2 = resolve_offline(country_2letter_iso_code=iso2)
        assert by_2.country_iso_code == iso3 and by_2.g_per_kwh == pytest.approx(expected)


def test_alpha2_in_country_iso_code_and_2letter_parameter() -> None:
    assert resolve_offline(country_iso_code="de").country_iso_code == "DEU"
    assert resolve_offline(country_2letter_iso_code="DE").country_iso_code == "DEU"


def test_country_iso_code_wins_over_conflicting_2letter(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = resolve_offline(country_iso_code="FRA", country_2letter_iso_code="DE")
    assert result.country_iso_code == "FRA"
    assert "different countries" in caplog.text


def test_known_country_without_data_gets_world_average_with_warning(
    caplog: pytest.LogCaptureFixture, bundled_countries: dict[str, dict[str, str]]
) -> None:
    assert "ATA" not in bundled_countries and is_known_country("ATA")
    assert not has_country_data("ATA")
    with caplog.at_level(logging.WARNING):
        result = resolve_offline(country_iso_code="aq")  # Antarctica
    assert result.source == "world_average"
    assert result.country_iso_code == "ATA"
    assert result.g_per_kwh == pytest.approx(float(bundled_countries["WORLD"]["g_per_kwh"]))
    assert "ATA" in caplog.text and "world average" in caplog.text


def test_no_location_is_world_average_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = resolve_offline()
    assert result.source == "world_average"
    assert result.country_iso_code is None and result.country_name is None
    assert result.g_per_kwh == intensity_tables().world.g_per_kwh
    assert "world average" in caplog.text


@pytest.mark.parametrize("location", [{}, {"country_iso_code": "ATA"}])
def test_world_average_reaches_the_user_once_as_a_warning(location: dict[str, str]) -> None:
    with pytest.warns(CodeCarbonCallbacksWarning, match="world average") as first:
        resolve_offline(**location)
    assert len(first) == 1
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        for _ in range(3):  # every tracker of the process would ask again
            assert resolve_offline(**location).source == "world_average"
    assert later == []


def test_world_average_without_user_warning_is_logged_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resolve_offline(user_warning=False)  # a distributed run's rank other than zero
    assert caught == []
    assert "world average" in caplog.text


def test_is_known_country() -> None:
    assert is_known_country("FRA") and is_known_country("fr") and is_known_country("xk")
    assert not is_known_country("FRN") and not is_known_country("") and not is_known_country("ZZ")


# --- sub-national --------------------------------------------------------------------------


@pytest.mark.parametrize("region", ["CA", "ca", "California", "CALIFORNIA", " california "])
def test_us_state(region: str) -> None:
    (california,) = [
        row
        for row in bundled_rows("intensity_regions.csv")
        if row["country_iso3"] == "USA" and row["region_code"] == "CA"
    ]
    result = resolve_offline(country_iso_code="USA", region=region)
    assert result.source == "region:USA-CA"
    assert result.region == "california"
    assert result.country_iso_code == "USA"
    assert result.g_per_kwh == pytest.approx(float(california["g_per_kwh"]))
    assert result.g_per_kwh != pytest.approx(country_g("USA"))


@pytest.mark.parametrize("region", ["QC", "qc", "Quebec", "Québec", "QUÉBEC"])
def test_canadian_province(region: str) -> None:
    result = resolve_offline(country_iso_code="CA", region=region)
    assert result.source == "region:CAN-QC"
    assert result.region == "quebec"
    assert result.g_per_kwh < country_g("CAN")  # hydro province below the national mix


def test_region_without_country_finds_the_country() -> None:
    result = resolve_offline(region="British Columbia")
    assert result.country_iso_code == "CAN" and result.source == "region:CAN-BC"
    assert resolve_offline(region="tx").country_iso_code == "USA"


def test_region_of_country_without_subnational_data_is_kept_for_report() -> None:
    result = resolve_offline(country_iso_code="FRA", region="Île-de-France")
    assert result.source.startswith("country:FRA")
    assert result.g_per_kwh == country_g("FRA")
    assert result.region == "île-de-france"


def test_known_regions() -> None:
    assert "QC (Quebec)" in known_regions("CAN")
    assert len(known_regions("USA")) == 51
    assert known_regions("FRA") == ()


# --- cloud ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundled_cloud() -> list[dict[str, str]]:
    return bundled_rows("cloud_regions.csv")


@pytest.mark.parametrize(
    "provider,region",
    [
        ("aws", "eu-west-3"),
        ("aws", "us-east-1"),
        ("azure", "westeurope"),
        ("azure", "francecentral"),
    ],
)
def test_aws_azure_regions(provider: str, region: str, bundled_cloud: list[dict[str, str]]) -> None:
    ref = next(
        r
        for r in bundled_cloud
        if r["provider"] == provider
        and r["region"] == region
        and r["dataset"] == "ccf_default_grid"
    )
    result = resolve_offline(cloud_provider=provider, cloud_region=region)
    assert result.on_cloud and result.cloud_provider == provider and result.cloud_region == region
    assert result.g_per_kwh == pytest.approx(float(ref["g_per_kwh"]))
    assert result.country_iso_code == ref["country_iso3"]
    assert result.source == f"cloud:{provider}:{region} (CCF grid factor)"


def test_gcp_region_is_google_latest(bundled_cloud: list[dict[str, str]]) -> None:
    (latest,) = [
        r for r in bundled_cloud if r["provider"] == "gcp" and r["region"] == "europe-west9"
    ]
    result = resolve_offline(cloud_provider="GCP", cloud_region="europe-west9")
    assert result.g_per_kwh == pytest.approx(float(latest["g_per_kwh"]))
    assert result.year == int(latest["year"])
    assert result.source == f"cloud:gcp:europe-west9 (Google {latest['year']})"
    assert result.country_iso_code == "FRA" and result.region == latest["location"]


def test_cloud_region_spellings() -> None:
    assert (
        resolve_offline(cloud_provider="azure", cloud_region="West Europe").cloud_region
        == "westeurope"
    )
    assert resolve_offline(cloud_provider="azure", cloud_region="eastus").cloud_region == "EastUS"
    assert (
        resolve_offline(cloud_provider="gcp", cloud_region="us-central1-b").cloud_region
        == "us-central1"
    )
    assert (
        resolve_offline(cloud_provider="aws", cloud_region="US-EAST-1A").cloud_region == "us-east-1"
    )
    assert (
        resolve_offline(cloud_provider="Amazon", cloud_region="us-east-1").cloud_provider == "aws"
    )
    # a region name unique to one provider needs no provider
    assert resolve_offline(cloud_region="europe-west9").cloud_provider == "gcp"


def test_every_bundled_cloud_region_resolves() -> None:
    for provider in ("aws", "azure", "gcp"):
        regions = known_cloud_regions(provider)
        assert regions
        for region in regions:
            result = resolve_offline(cloud_provider=provider, cloud_region=region)
            assert result.cloud_region == region and result.g_per_kwh >= 0


# --- forced and precedence -----------------------------------------------------------------


def test_forced_value_wins_and_keeps_location() -> None:
    result = resolve_offline(
        force_carbon_intensity_g_co2e_kwh=123.4,
        country_iso_code="FRA",
        cloud_provider="aws",
        cloud_region="us-east-1",
    )
    assert result.g_per_kwh == 123.4 and result.source == "forced"
    assert result.on_cloud and result.country_iso_code == "USA"
    assert resolve_offline(force_carbon_intensity_g_co2e_kwh=0).g_per_kwh == 0.0


def test_precedence_cloud_over_region_over_country() -> None:
    cloud = resolve_offline(
        country_iso_code="USA", region="CA", cloud_provider="gcp", cloud_region="us-west1"
    )
    assert cloud.source.startswith("cloud:gcp:us-west1")
    region = resolve_offline(country_iso_code="USA", region="CA")
    assert region.source == "region:USA-CA"
    country = resolve_offline(country_iso_code="USA")
    assert country.source.startswith("country:USA")
    assert len({cloud.g_per_kwh, region.g_per_kwh, country.g_per_kwh}) == 3


def test_emissions_helper() -> None:
    result = IntensityResult(g_per_kwh=400.0, source="forced")
    assert result.emissions_kg(2.5) == pytest.approx(1.0)
    assert result.kg_per_kwh == pytest.approx(0.4)


# --- errors name the parameter -------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,parameter,suggestion",
    [
        ({"country_iso_code": "FRN"}, "country_iso_code", "FRA"),
        ({"country_iso_code": "Germny"}, "country_iso_code", "DEU"),
        ({"country_2letter_iso_code": "QQ"}, "country_2letter_iso_code", None),
        ({"country_iso_code": "USA", "region": "Californa"}, "region", "CA"),
        ({"country_iso_code": "CAN", "region": "Ontaro"}, "region", "ON"),
        ({"region": "Bavaria"}, "region", None),
        ({"cloud_provider": "aws", "cloud_region": "us-est-1"}, "cloud_region", "us-east-1"),
        ({"cloud_provider": "gcp", "cloud_region": "europe-wst9"}, "cloud_region", "europe-west9"),
        ({"cloud_provider": "ibm", "cloud_region": "x"}, "cloud_provider", None),
        ({"cloud_provider": "aws"}, "cloud_region", None),
    ],
)
def test_unknown_inputs_name_the_parameter(
    kwargs: dict[str, str], parameter: str, suggestion: str | None
) -> None:
    with pytest.raises(UnknownLocationError) as info:
        resolve_offline(**kwargs)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.parameter == parameter
    assert str(error).startswith(f"{parameter}=")
    if suggestion is not None:
        assert any(s.startswith(suggestion) for s in error.suggestions), error.suggestions
        assert suggestion in str(error)


def test_bad_input_fails_even_when_forced() -> None:
    with pytest.raises(UnknownLocationError, match="country_iso_code"):
        resolve_offline(force_carbon_intensity_g_co2e_kwh=10, country_iso_code="nowhere")


@pytest.mark.parametrize("value", [-1, float("nan"), float("inf"), "abc", True])
def test_bad_forced_value(value: object) -> None:
    with pytest.raises(ValueError, match="force_carbon_intensity_g_co2e_kwh"):
        resolve_offline(force_carbon_intensity_g_co2e_kwh=value)  # type: ignore[arg-type]


def test_known_cloud_regions_rejects_unknown_provider() -> None:
    with pytest.raises(UnknownLocationError, match="provider"):
        known_cloud_regions("oracle")


def test_world_code_is_the_world_average() -> None:
    result = resolve_offline(country_iso_code="world")
    assert result.source == "world_average" and result.country_iso_code is None
    assert result.g_per_kwh == intensity_tables().world.g_per_kwh

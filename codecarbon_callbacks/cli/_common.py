"""What the commands share: the program's name, its one-line error, the option groups."""

from __future__ import annotations

import argparse
from typing import Any

from codecarbon_callbacks_core.errors import CodeCarbonCallbacksError

PROG = "codecarbon-callbacks"


class CliError(CodeCarbonCallbacksError):
    """A failure reported as one line on stderr, with exit code 1."""


def add_location_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("location (else CODECARBON_* variables, .codecarbon.config)")
    group.add_argument("--country-iso-code", metavar="ISO3", help="country, e.g. FRA (offline)")
    group.add_argument("--region", help="sub-national region, e.g. CA or quebec")
    group.add_argument("--cloud-provider", choices=["aws", "azure", "gcp"], help="cloud provider")
    group.add_argument("--cloud-region", help="cloud region, e.g. us-east-1")
    group.add_argument(
        "--force-carbon-intensity-g-co2e-kwh",
        type=float,
        metavar="G_PER_KWH",
        help="use this carbon intensity (gCO2eq/kWh)",
    )


def add_hardware_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hardware")
    group.add_argument(
        "--tracking-mode",
        choices=["machine", "process"],
        help="machine (default): the whole machine; process: this process only",
    )
    group.add_argument("--gpu-ids", help="GPUs to measure: indexes or UUIDs, comma-separated")
    group.add_argument("--force-cpu-power", type=float, metavar="W", help="constant CPU power (W)")
    group.add_argument("--force-ram-power", type=float, metavar="W", help="constant RAM power (W)")


def location_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The location options given on the command line, as tracker parameters."""
    keys = (
        "country_iso_code",
        "region",
        "cloud_provider",
        "cloud_region",
        "force_carbon_intensity_g_co2e_kwh",
    )
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def parse_gpu_ids(value: str | None) -> list[str] | None:
    """``--gpu-ids 0,GPU-abc`` as a list (None when not given)."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]

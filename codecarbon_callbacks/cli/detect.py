"""``codecarbon-callbacks detect``: what is measured, how, and what is missing.

What is measured comes from the core's
:func:`~codecarbon_callbacks_core.hardware.detect_for_config`, what the machine has from
:func:`~codecarbon_callbacks_core.hardware.probe_presence`; this module probes no hardware itself.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from codecarbon_callbacks.cli._common import (
    CliError,
    add_hardware_options,
    add_location_options,
    location_arguments,
)

if TYPE_CHECKING:
    from codecarbon_callbacks_core.config import TrackerConfig
    from codecarbon_callbacks_core.hardware import Component, HardwarePresence

logger = logging.getLogger(__name__)


def add_parser(commands: Any) -> None:
    """Add the ``detect`` command to the subparsers ``commands``."""
    detect = commands.add_parser(
        "detect",
        help="show the hardware found, how it is measured and what is missing",
        description="Show the hardware found, how each component is measured, where the carbon "
        "intensity comes from, and what is missing with how to fix it. Offline unless "
        "--online.",
    )
    add_location_options(detect)
    add_hardware_options(detect)
    detect.add_argument(
        "--online",
        action="store_true",
        help="look the location up now (geo-IP; Electricity Maps with a token)",
    )
    detect.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="bound of the online lookup, seconds (default 5)",
    )
    detect.add_argument("--json", action="store_true", help="print JSON")
    detect.set_defaults(handler=run)


def _cpu_suggestions(cpu_method: str | None, presence: HardwarePresence) -> list[str]:
    from codecarbon_callbacks_core.hardware.rapl import PERMISSION_FIX

    system = platform.system()
    if system == "Darwin":
        return [
            "macOS: no RAPL or NVML here; CPU energy is estimated from TDP x load "
            "(set force_cpu_power=W if you know better); Apple GPUs are not measured."
        ]
    if system == "Windows":
        return [
            "Windows: RAPL is not read (no powercap); CPU energy is estimated from TDP x "
            "load (set force_cpu_power=W if you know better). NVIDIA GPUs are measured "
            "through NVML."
        ]
    if cpu_method in (None, "rapl"):
        return []
    if presence.rapl == "unreadable":
        return [
            "RAPL is present but not readable by this user: run "
            f"`{PERMISSION_FIX}` (until reboot; a udev rule makes it permanent) "
            "to measure the CPU with its energy counter instead of an estimate."
        ]
    if presence.rapl == "absent":
        where = (
            " (in a container: mount /sys/class/powercap from the host, read-only)"
            if presence.in_container
            else " (virtual machines and some CPUs do not expose it)"
        )
        how = "estimated from TDP x load" if cpu_method == "tdp_estimate" else "a constant power"
        return [
            "No RAPL interface under /sys/class/powercap" + where + f"; CPU energy is {how}. "
            "Set force_cpu_power=W to use a known figure."
        ]
    return []


def _gpu_suggestions(gpu_method: str | None, presence: HardwarePresence) -> list[str]:
    import importlib.util

    if gpu_method == "nvml_power":
        return [
            "This GPU has no NVML energy counter (pre-Volta): its power is integrated, "
            "which is less exact."
        ]
    if gpu_method == "amdsmi_power":
        return [
            "This AMD GPU's energy counter is not readable here (a virtual machine guest, or "
            "refused): its power is integrated, which is less exact."
        ]
    if gpu_method is not None:
        return []
    if presence.nvidia_driver:
        if importlib.util.find_spec("pynvml") is None:
            return [
                "An NVIDIA driver is present but NVML's Python binding is not: "
                "pip install nvidia-ml-py"
            ]
        return [
            "An NVIDIA driver is present but no GPU was measured: see the notes "
            "above (gpu_ids, CUDA_VISIBLE_DEVICES, driver permissions)."
        ]
    if presence.amd_gpu:
        from codecarbon_callbacks_core.hardware.diagnose import AMDSMI_INSTALL_FIX

        return [
            "An AMD GPU is present but was not measured: see the notes above (permissions, "
            f"gpu_ids, ROCR/HIP_VISIBLE_DEVICES); without amdsmi: {AMDSMI_INSTALL_FIX}."
        ]
    return []


def hardware_suggestions(
    components: Sequence[Component], presence: HardwarePresence | None = None
) -> list[str]:
    """What is missing from ``components`` and how to fix it, as sentences.

    Args:
        components: what detection found (``detect_components``'s first result).
        presence: what the machine has (default: :func:`probe_presence` of this machine).
    """
    from codecarbon_callbacks_core.hardware import probe_presence

    if presence is None:
        presence = probe_presence()
    methods = {c.kind: getattr(c.method, "value", str(c.method)) for c in components}
    return _cpu_suggestions(methods.get("cpu"), presence) + _gpu_suggestions(
        methods.get("gpu"), presence
    )


def _resolve_detect_config(args: argparse.Namespace) -> TrackerConfig:
    import tempfile

    from codecarbon_callbacks_core.config import resolve_config

    arguments = location_arguments(args)
    for key in ("tracking_mode", "gpu_ids", "force_cpu_power", "force_ram_power"):
        value = getattr(args, key, None)
        if value is not None:
            arguments[key] = value
    # detect writes nothing: a folder that surely exists, so that a read-only cwd or a missing
    # configured output_dir does not fail the check
    arguments["output_dir"] = tempfile.gettempdir()
    return resolve_config(arguments)


def _intensity_report(config: TrackerConfig, online: bool, timeout_s: float) -> dict[str, Any]:
    from codecarbon_callbacks_core.intensity.lookup import UnknownLocationError, resolve_offline

    location = {
        "country_iso_code": config.country_iso_code or config.country_2letter_iso_code,
        "region": config.region,
        "cloud_provider": config.cloud_provider,
        "cloud_region": config.cloud_region,
    }
    has_location = bool(location["country_iso_code"] or location["cloud_provider"])
    forced = config.force_carbon_intensity_g_co2e_kwh
    note = ""
    if online:
        from codecarbon_callbacks_core.intensity.online import LocationLookup

        lookup = LocationLookup(
            electricitymaps_api_token=config.electricitymaps_api_token,
            force_carbon_intensity_g_co2e_kwh=forced,
            timeout_s=timeout_s,
            user_warning=False,  # the report's note says it
            **location,
        ).start()
        result = lookup.result(timeout_s=timeout_s + 0.5)
        if lookup.failure:
            note = f"online lookup failed ({lookup.failure}); fallback used"
    else:
        quiet = logging.getLogger("codecarbon_callbacks_core.intensity")
        level = quiet.level
        if not has_location:  # the note below says it, with the fix
            quiet.setLevel(logging.ERROR)
        try:
            result = resolve_offline(
                force_carbon_intensity_g_co2e_kwh=forced, user_warning=has_location, **location
            )
        except (UnknownLocationError, ValueError) as e:
            raise CliError(str(e)) from None
        finally:
            quiet.setLevel(level)
        if not has_location and forced is None:
            note = (
                "no location given: EmissionsTracker looks it up online at start (geo-IP), "
                "using this world average until it knows; OfflineEmissionsTracker uses it "
                "throughout. Give --country-iso-code (or CODECARBON_COUNTRY_ISO_CODE) "
                "to be exact and offline, or --online to try the lookup now."
            )
    if result is None:
        raise CliError("the carbon intensity lookup gave no answer")
    return {
        "g_per_kwh": result.g_per_kwh,
        "source": result.source,
        "country_iso_code": result.country_iso_code,
        "country_name": result.country_name,
        "region": result.region,
        "cloud_provider": result.cloud_provider,
        "cloud_region": result.cloud_region,
        "note": note,
    }


def _describe(components: Sequence[Component]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each component's description and the suggestions; the components are closed after."""
    try:
        described = []
        for c in components:
            item = dict(c.describe())
            item["sample_interval_s"] = c.sample_interval_s
            described.append(item)
        return described, hardware_suggestions(components)
    finally:
        for c in components:
            try:
                c.close()
            except Exception as e:  # noqa: BLE001 - closing a probe is best effort
                logger.debug("closing %s failed: %s", c.name, e)


def _write_text(out: TextIO, payload: dict[str, Any]) -> None:
    described, notes = payload["components"], payload["notes"]
    out.write(f"Platform: {payload['platform']} (Python {payload['python']})\n\n")
    out.write("Components measured:\n")
    if not described:
        out.write("  none\n")
    width = max((len(str(d.get("name", ""))) for d in described), default=0)
    for item in described:
        line = (
            f"  {str(item.get('name', '')).ljust(width)}  {item.get('method', '?'):<12}  "
            f"{item.get('model') or '-'}"
        )
        if item.get("failure"):
            line += f"  (failing: {item['failure']})"
        out.write(line + "\n")
    out.write(
        "\nMethods, best first: rapl / nvml_energy / amdsmi_energy (hardware energy counters), "
        "nvml_power / amdsmi_power (integrated power), tdp_estimate (TDP x load model), "
        "constant (a fixed power).\n"
    )
    if notes:
        out.write("\nNotes from detection:\n")
        out.writelines(f"  - {note}\n" for note in notes)
    ci = payload["carbon_intensity"]
    place = ", ".join(
        str(v)
        for v in (
            ci["country_name"] or ci["country_iso_code"],
            ci["region"],
            ci["cloud_provider"],
            ci["cloud_region"],
        )
        if v
    )
    out.write(
        f"\nCarbon intensity: {ci['g_per_kwh']:.4g} gCO2eq/kWh from {ci['source']}"
        + (f" ({place})" if place else "")
        + "\n"
    )
    if ci["note"]:
        out.write(f"  {ci['note']}\n")
    limits = payload["container"] or "none (no cgroup CPU quota or memory limit)"
    out.write(f"\nContainer limits: {limits}\n")
    if payload["suggestions"]:
        out.write("\nTo measure better:\n")
        out.writelines(f"  - {tip}\n" for tip in payload["suggestions"])
    else:
        out.write("\nNo fix to suggest on this machine.\n")


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Print what is measured and how (JSON with ``--json``); returns the exit code."""
    config = _resolve_detect_config(args)
    try:
        from codecarbon_callbacks_core.hardware import detect_for_config
    except ImportError as e:
        raise CliError(f"hardware detection is not available in this installation ({e})") from None
    components, notes = detect_for_config(config)
    described, suggestions = _describe(components)
    intensity = _intensity_report(config, args.online, args.timeout)
    from codecarbon_callbacks_core.hardware.diagnose import container_note

    payload = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "components": described,
        "notes": list(notes),
        "suggestions": suggestions,
        "carbon_intensity": intensity,
        "pue": config.pue,
        # a cgroup CPU quota or memory limit, and what the tracking mode then counts; None
        "container": container_note(config.tracking_mode),
    }
    if args.json:
        out.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        _write_text(out, payload)
    return 0

"""The public surface: CodeCarbon 3.3.2's parameters accepted, exports pinned, imports light."""

from __future__ import annotations

import inspect
import json
import logging
import subprocess
import sys
import warnings

import pytest

import codecarbon_callbacks
from codecarbon_callbacks import EmissionsTracker, OfflineEmissionsTracker, OutputMethod

HEAVY_MODULES = (
    "torch",
    "lightning",
    "pytorch_lightning",
    "transformers",
    "keras",
    "tensorflow",
    "jax",
    "pynvml",
    "pandas",
    "requests",
    "prometheus_client",
    "logfire",
    "opentelemetry",
)


def _params(func) -> dict[str, inspect.Parameter]:
    return {
        name: p
        for name, p in inspect.signature(func).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def test_every_codecarbon_parameter_is_accepted() -> None:
    cc = pytest.importorskip("codecarbon")
    assert cc.__version__ == "3.3.2"
    from codecarbon.emissions_tracker import BaseEmissionsTracker as CCBase
    from codecarbon.emissions_tracker import OfflineEmissionsTracker as CCOffline

    ours = _params(codecarbon_callbacks.BaseEmissionsTracker.__init__)
    theirs = _params(CCBase.__init__)
    missing = sorted(set(theirs) - set(ours))
    assert missing == [], f"CodeCarbon parameters we do not accept: {missing}"
    # same order for the positional ones, so positional calls mean the same
    assert list(ours)[: len(theirs)] == list(theirs)
    offline_ours = _params(OfflineEmissionsTracker.__init__)
    offline_theirs = _params(CCOffline.__init__)
    assert set(offline_theirs) <= set(offline_ours)


def test_codecarbon_call_with_every_parameter_works(tmp_path) -> None:
    with pytest.warns(DeprecationWarning):
        tracker = OfflineEmissionsTracker(
            project_name="p",
            measure_power_secs=15,
            api_call_interval=8,
            api_endpoint="https://api.codecarbon.io",
            api_key="secret",
            output_dir=str(tmp_path),
            output_file="emissions.csv",
            output_methods=None,
            save_to_file=True,
            save_to_api=False,
            save_to_logger=False,
            logging_logger=None,
            save_to_prometheus=False,
            save_to_logfire=False,
            prometheus_url="localhost:9091",
            output_handlers=[],
            gpu_ids=None,
            emissions_endpoint=None,
            experiment_id="5b0fa12a-3dd7-45bb-9766-cc326314d9f1",
            experiment_name="base",
            electricitymaps_api_token=None,
            co2_signal_api_token=None,
            tracking_mode="machine",
            log_level="info",
            on_csv_write="append",
            logger_preamble="",
            force_cpu_power=None,
            force_ram_power=None,
            pue=1.0,
            wue=0.0,
            force_carbon_intensity_g_co2e_kwh=None,
            force_mode_cpu_load=False,
            allow_multiple_runs=True,
            rapl_include_dram=False,
            rapl_prefer_psys=False,
            metadata=None,
            country_iso_code="FRA",
            region=None,
            cloud_provider=None,
            cloud_region=None,
            country_2letter_iso_code=None,
        )
    assert tracker.config.project_name == "p"


class _Handler:
    """An output handler: any object with ``out`` is accepted."""

    def out(self, total, delta) -> None:  # pragma: no cover - never started
        pass


#: each constructor parameter -> (a value that is not the default, the config field it sets,
#: the value that field must then hold)
_LOGGER = logging.getLogger("test_public_api.every_parameter")
_HANDLER = _Handler()
_PARAMETER_VALUES: dict[str, tuple[object, str, object]] = {
    "project_name": ("proj-x", "project_name", "proj-x"),
    "measure_power_secs": (7.5, "measure_power_secs", 7.5),
    "api_call_interval": (3, "api_call_interval", 3),
    "api_endpoint": ("https://api.example.org", "api_endpoint", "https://api.example.org"),
    "api_key": ("key-x", "api_key", "key-x"),
    "output_dir": ("<tmp>", "output_dir", "<tmp>"),
    "output_file": ("mine.csv", "output_file", "mine.csv"),
    "output_methods": ([OutputMethod.LOGGER], "output_methods", [OutputMethod.LOGGER]),
    "save_to_file": (False, "output_methods", []),
    "save_to_api": (True, "output_methods", [OutputMethod.CSV, OutputMethod.API]),
    "save_to_logger": (True, "output_methods", [OutputMethod.CSV, OutputMethod.LOGGER]),
    "save_to_prometheus": (True, "output_methods", [OutputMethod.CSV, OutputMethod.PROMETHEUS]),
    "save_to_logfire": (True, "output_methods", [OutputMethod.CSV, OutputMethod.LOGFIRE]),
    "logging_logger": (_LOGGER, "logging_logger", _LOGGER),
    "prometheus_url": ("localhost:9999", "prometheus_url", "localhost:9999"),
    "output_handlers": ([_HANDLER], "output_handlers", [_HANDLER]),
    "gpu_ids": ([1], "gpu_ids", [1]),
    "emissions_endpoint": ("http://127.0.0.1:9/e", "emissions_endpoint", "http://127.0.0.1:9/e"),
    "experiment_id": (
        "5b0fa12a-3dd7-45bb-9766-cc326314d9f1",
        "experiment_id",
        "5b0fa12a-3dd7-45bb-9766-cc326314d9f1",
    ),
    "experiment_name": ("exp-x", "experiment_name", "exp-x"),
    "electricitymaps_api_token": ("tok-x", "electricitymaps_api_token", "tok-x"),
    "co2_signal_api_token": ("tok-old", "electricitymaps_api_token", "tok-old"),
    "tracking_mode": ("process", "tracking_mode", "process"),
    "log_level": ("debug", "log_level", "debug"),
    "on_csv_write": ("update", "on_csv_write", "update"),
    "logger_preamble": ("pre", "logger_preamble", "pre"),
    "force_cpu_power": (42.0, "force_cpu_power", 42.0),
    "force_ram_power": (5.0, "force_ram_power", 5.0),
    "pue": (1.5, "pue", 1.5),
    "wue": (0.3, "wue", 0.3),
    "force_carbon_intensity_g_co2e_kwh": (123.0, "force_carbon_intensity_g_co2e_kwh", 123.0),
    "force_mode_cpu_load": (True, "force_mode_cpu_load", True),
    "allow_multiple_runs": (False, "allow_multiple_runs", False),
    "rapl_include_dram": (True, "rapl_include_dram", True),
    "rapl_prefer_psys": (True, "rapl_prefer_psys", True),
    "metadata": ({"k": "v"}, "metadata", {"k": "v"}),
    "country_iso_code": ("DEU", "country_iso_code", "DEU"),
    "region": ("quebec", "region", "quebec"),
    "cloud_provider": ("gcp", "cloud_provider", "gcp"),
    "cloud_region": ("europe-west1", "cloud_region", "europe-west1"),
    "country_2letter_iso_code": ("DE", "country_2letter_iso_code", "DE"),
    "prometheus_scrape_address": (":9464", "prometheus_scrape_address", ":9464"),
}
#: the constructor's own keyword-only parameters: how to run, not configuration
_NOT_CONFIG = {"components", "record_combiner", "writes_outputs"}
#: what some parameters are only valid with (set alongside; they set other fields)
_NEEDS: dict[str, dict[str, object]] = {
    "save_to_api": {"experiment_id": "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"},
    "cloud_provider": {"cloud_region": "europe-west1"},
    "cloud_region": {"cloud_provider": "gcp"},
}


def test_every_constructor_parameter_has_a_config_check() -> None:
    """A new parameter must get a row in _PARAMETER_VALUES (and so a check that it arrives)."""
    names = set(_params(codecarbon_callbacks.BaseEmissionsTracker.__init__))
    names |= set(_params(OfflineEmissionsTracker.__init__))
    assert names - _NOT_CONFIG == set(_PARAMETER_VALUES)


@pytest.mark.parametrize("name", sorted(_PARAMETER_VALUES))
def test_every_constructor_parameter_reaches_the_config(
    name: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no ./.codecarbon.config
    value, field, expected = _PARAMETER_VALUES[name]
    if value == "<tmp>":
        value = expected = str(tmp_path)
    base: dict[str, object] = {"country_iso_code": "FRA", "output_dir": str(tmp_path / "base")}
    default = OfflineEmissionsTracker(**base).config
    assert getattr(default, field) != expected, f"{name}: pick a value that is not the default"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # save_to_*, co2_signal_api_token
        config = OfflineEmissionsTracker(**{**base, **_NEEDS.get(name, {}), name: value}).config
    assert getattr(config, field) == expected


CORE_EXPORTS = {
    "__version__",
    "EmissionsTracker",
    "OfflineEmissionsTracker",
    "BaseEmissionsTracker",
    "track_emissions",
    "EmissionsData",
    "WindowRecord",
    "BaseOutput",
    "OutputMethod",
    "read_emissions",
    "LoggerOutput",
    "BoAmpsOutput",
    "BoAmpsTask",
    "BoAmpsAlgorithm",
    "BoAmpsDataset",
    "BoAmpsPublisher",
    "BoAmpsHeader",
    "resend_spool",
    "ConfigError",
    "CodeCarbonCallbacksError",
    "CodeCarbonCallbacksWarning",
    "WebhookOutput",
    "PrometheusOutput",
    "LogfireOutput",
    "CodeCarbonAPIOutput",
    "FileOutput",
}
#: codecarbon_callbacks.output mirrors CodeCarbon's codecarbon.output (HTTPOutput is its name
#: for the webhook output)
OUTPUT_FACADE_EXPORTS = {
    "BaseOutput",
    "BoAmpsOutput",
    "CodeCarbonAPIOutput",
    "EmissionsData",
    "FileOutput",
    "GoogleCloudLoggerOutput",
    "HTTPOutput",
    "LogfireOutput",
    "LoggerOutput",
    "OutputMethod",
    "PrometheusOutput",
    "TaskEmissionsData",
    "WebhookOutput",
    "WindowRecord",
    "create_output",
    "resend_spool",
}


def test_exports_are_pinned() -> None:
    import codecarbon_callbacks_core

    assert set(codecarbon_callbacks_core.__all__) == CORE_EXPORTS
    assert set(codecarbon_callbacks.__all__) == CORE_EXPORTS
    for name in CORE_EXPORTS:
        ours = getattr(codecarbon_callbacks, name)
        assert ours is not None, name
        assert ours is getattr(codecarbon_callbacks_core, name), name  # the core's, re-exported
    assert codecarbon_callbacks.__version__ == codecarbon_callbacks_core.__version__
    assert {m.value for m in codecarbon_callbacks.OutputMethod} == {
        "csv",
        "api",
        "logger",
        "prometheus",
        "logfire",
        "boamps",
    }
    assert issubclass(OfflineEmissionsTracker, codecarbon_callbacks.BaseEmissionsTracker)
    assert issubclass(EmissionsTracker, codecarbon_callbacks.BaseEmissionsTracker)
    assert issubclass(
        codecarbon_callbacks.ConfigError, codecarbon_callbacks.CodeCarbonCallbacksError
    )
    assert issubclass(codecarbon_callbacks.ConfigError, ValueError)
    assert issubclass(codecarbon_callbacks.CodeCarbonCallbacksWarning, UserWarning)


def test_output_facade_is_pinned() -> None:
    import codecarbon_callbacks_core

    import codecarbon_callbacks.output as facade

    assert set(facade.__all__) == OUTPUT_FACADE_EXPORTS
    for name in OUTPUT_FACADE_EXPORTS:
        assert getattr(facade, name) is not None, name
    assert facade.HTTPOutput is facade.WebhookOutput is codecarbon_callbacks_core.WebhookOutput
    assert facade.BaseOutput is codecarbon_callbacks_core.BaseOutput
    assert facade.resend_spool is codecarbon_callbacks_core.resend_spool
    with pytest.raises(AttributeError):
        facade.NoSuchOutput  # noqa: B018


@pytest.mark.parametrize("package", ["codecarbon_callbacks", "codecarbon_callbacks_core"])
def test_import_loads_no_heavy_module(package: str) -> None:
    code = (
        f"import sys, json; import {package}; "
        f"from {package} import OfflineEmissionsTracker, OutputMethod, BaseOutput; "
        f"print(json.dumps([m for m in {list(HEAVY_MODULES)!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_offline_run_loads_no_network_or_framework_module(tmp_path) -> None:
    code = f"""
import sys, json
from codecarbon_callbacks import OfflineEmissionsTracker
t = OfflineEmissionsTracker(country_iso_code="FRA", output_dir={str(tmp_path)!r})
t.start(); t.stop()
print(json.dumps([m for m in ["torch", "lightning", "transformers", "keras", "pandas", "requests",
                  "prometheus_client", "logfire"] if m in sys.modules]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []

"""Config precedence (argument > env > ./.codecarbon.config > ~/.codecarbon.config) and bad input."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import pytest
from codecarbon_callbacks_core.config import read_config_files, resolve_config

from codecarbon_callbacks import ConfigError, OfflineEmissionsTracker, OutputMethod


def _files(tmp_path: Path, local: str | None = None, home: str | None = None):
    cwd, homedir = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir(exist_ok=True)
    homedir.mkdir(exist_ok=True)
    if local is not None:
        (cwd / ".codecarbon.config").write_text(local)
    if home is not None:
        (homedir / ".codecarbon.config").write_text(home)
    return read_config_files(cwd=cwd, home=homedir)


def test_precedence_argument_env_local_home(tmp_path: Path) -> None:
    files = _files(
        tmp_path,
        local="[codecarbon]\nproject_name = local\nmeasure_power_secs = 3\npue = 1.2\n",
        home="[codecarbon]\nproject_name = home\nmeasure_power_secs = 4\npue = 1.3\nwue = 2\n",
    )
    env = {"CODECARBON_PROJECT_NAME": "env", "CODECARBON_MEASURE_POWER_SECS": "2"}
    cfg = resolve_config({"project_name": "arg", "output_dir": str(tmp_path)}, environ=env, config_files=files)
    assert cfg.project_name == "arg"  # argument beats everything
    assert cfg.measure_power_secs == 2.0  # env beats files
    assert cfg.pue == 1.2  # local file beats home file
    assert cfg.wue == 2.0  # home file beats defaults
    assert cfg.api_call_interval == 8  # CodeCarbon's default


def test_config_file_output_methods_string(tmp_path: Path) -> None:
    files = _files(tmp_path, local="[codecarbon]\noutput_methods = csv, logger\n")
    cfg = resolve_config({"output_dir": str(tmp_path)}, environ={}, config_files=files)
    assert cfg.output_methods == [OutputMethod.CSV, OutputMethod.LOGGER]


@pytest.mark.parametrize(
    "given",
    [["csv", "logger"], [OutputMethod.CSV, OutputMethod.LOGGER], "csv,logger", ["CSV", "OutputMethod.LOGGER"]],
)
def test_output_methods_forms_resolve_alike(tmp_path: Path, given: object) -> None:
    cfg = resolve_config({"output_methods": given, "output_dir": str(tmp_path)}, environ={}, config_files=[])
    assert cfg.output_methods == [OutputMethod.CSV, OutputMethod.LOGGER]


def test_deprecated_save_flags_map_to_methods(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="save_to_logger"):
        cfg = resolve_config({"save_to_logger": True, "output_dir": str(tmp_path)}, environ={}, config_files=[])
    assert cfg.output_methods == [OutputMethod.CSV, OutputMethod.LOGGER]
    with pytest.warns(DeprecationWarning, match="save_to_file"):
        cfg = resolve_config({"save_to_file": False, "output_dir": str(tmp_path)}, environ={}, config_files=[])
    assert cfg.output_methods == []


def test_deprecated_save_flags_ignored_when_output_methods_given(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="ignored"):
        cfg = resolve_config(
            {"save_to_logger": True, "output_methods": ["csv"], "output_dir": str(tmp_path)},
            environ={},
            config_files=[],
        )
    assert cfg.output_methods == [OutputMethod.CSV]


def test_co2_signal_token_is_a_deprecated_alias(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="co2_signal_api_token"):
        cfg = resolve_config({"co2_signal_api_token": "s3cr3t-xyz", "output_dir": str(tmp_path)}, environ={}, config_files=[])
    assert cfg.electricitymaps_api_token == "s3cr3t-xyz"
    assert "s3cr3t-xyz" not in repr(cfg)
    assert "electricitymaps_api_token" not in cfg.public_dict()


def test_missing_output_dir_is_created_by_the_first_write_not_by_resolving(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    resolve_config({"output_dir": str(target)}, environ={}, config_files=[])
    tracker = OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(target))
    assert not (tmp_path / "a").exists()  # resolving and constructing have no side effects
    tracker.start()
    tracker.stop()
    assert (target / "emissions.csv").is_file()


def test_env_bool_and_numbers_typed(tmp_path: Path) -> None:
    env = {"CODECARBON_FORCE_MODE_CPU_LOAD": "yes", "CODECARBON_API_CALL_INTERVAL": "4",
           "CODECARBON_GPU_IDS": "0,GPU-abc"}
    cfg = resolve_config({"output_dir": str(tmp_path)}, environ=env, config_files=[])
    assert cfg.force_mode_cpu_load is True
    assert cfg.api_call_interval == 4
    assert cfg.gpu_ids == [0, "GPU-abc"]


class _NotAnOutput:
    pass


BAD_ARGUMENTS = [
    ({"measure_power_secs": 0}, "measure_power_secs"),
    ({"measure_power_secs": -1}, "measure_power_secs"),
    ({"measure_power_secs": "often"}, "measure_power_secs"),
    ({"api_call_interval": 0}, "api_call_interval"),
    ({"api_call_interval": 2.5}, "api_call_interval"),
    ({"output_methods": ["csv", "carrier_pigeon"]}, "carrier_pigeon"),
    ({"output_methods": 42}, "output_methods"),
    ({"tracking_mode": "galaxy"}, "tracking_mode"),
    ({"on_csv_write": "overwrite"}, "on_csv_write"),
    ({"log_level": "loud"}, "log_level"),
    ({"pue": 0.9}, "pue"),
    ({"wue": -1}, "wue"),
    ({"force_cpu_power": -5}, "force_cpu_power"),
    ({"force_ram_power": -1}, "force_ram_power"),
    ({"force_carbon_intensity_g_co2e_kwh": -10}, "force_carbon_intensity_g_co2e_kwh"),
    ({"gpu_ids": ["first"]}, "gpu_ids"),
    ({"gpu_ids": [-1]}, "gpu_ids"),
    ({"metadata": "not json"}, "metadata"),
    ({"metadata": 3}, "metadata"),
    ({"output_file": "sub/emissions.csv"}, "output_file"),
    ({"project_name": ""}, "project_name"),
    ({"project_name": 7}, "project_name"),
    ({"emissions_endpoint": "ftp://example"}, "emissions_endpoint"),
    ({"api_endpoint": "api.codecarbon.io"}, "api_endpoint"),
    ({"output_handlers": [_NotAnOutput()]}, "output_handlers"),
    ({"logging_logger": 42}, "logging_logger"),  # a name (text) is accepted: see below
    ({"rapl_include_dram": "perhaps"}, "rapl_include_dram"),
    ({"spool_max_bytes": 0}, "spool_max_bytes"),
    ({"cloud_region": "us-east-1"}, "cloud_region"),
    ({"no_such_parameter": 1}, "no_such_parameter"),
]


@pytest.mark.parametrize(("arguments", "named"), BAD_ARGUMENTS, ids=[b[1] + str(i) for i, b in enumerate(BAD_ARGUMENTS)])
def test_bad_argument_names_the_parameter(tmp_path: Path, arguments: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(tmp_path), **arguments)


def test_bad_config_file_value_names_file_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".codecarbon.config").write_text("[codecarbon]\nmeasure_power_secs = soon\n")
    with pytest.raises(ConfigError, match=r"measure_power_secs \(from .*\.codecarbon\.config"):
        OfflineEmissionsTracker(country_iso_code="FRA")


def test_bad_env_value_names_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODECARBON_PUE", "high")
    with pytest.raises(ConfigError, match="CODECARBON_PUE"):
        OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(tmp_path))


def test_output_dir_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="output_dir"):
        OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(blocker / "sub"))
    with pytest.raises(ConfigError, match="output_dir"):
        OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(blocker))


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({}, "country_iso_code"),
        ({"country_iso_code": "XYZ"}, "country_iso_code"),
        ({"country_iso_code": "France!"}, "country_iso_code"),
        ({"cloud_provider": "aws", "cloud_region": "moon-1"}, "cloud_region"),
        ({"cloud_provider": "ovh", "cloud_region": "gra"}, "cloud_provider"),
    ],
)
def test_offline_location_errors(tmp_path: Path, arguments: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        OfflineEmissionsTracker(output_dir=str(tmp_path), **arguments)


def test_log_level_is_the_trackers_own_never_process_wide(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    levels = {name: logging.getLogger(name).level
              for name in ("", "codecarbon_callbacks", "codecarbon_callbacks_core")}
    quiet = OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(tmp_path),
                                    log_level="error")
    loud = OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(tmp_path))
    assert {name: logging.getLogger(name).level for name in levels} == levels
    with caplog.at_level(logging.DEBUG):
        quiet.stop()  # "stop() called on a tracker that was not started": a warning
        assert "not started" not in caplog.text
        loud.stop()
        assert "not started" in caplog.text


def test_no_warning_for_defaults(tmp_path: Path) -> None:
    # recorded, not "error": warn_once never lets a warning filter raise into training
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(tmp_path))
    assert [str(w.message) for w in caught] == []
    assert os.path.isdir(tmp_path)


def test_endpoint_tokens_never_in_repr_or_public_dict(tmp_path: Path) -> None:
    url = "https://user:pw-s3cret@hooks.example/ingest?token=tk-s3cret"
    cfg = resolve_config({"emissions_endpoint": url, "output_dir": str(tmp_path)}, environ={}, config_files=[])
    assert cfg.emissions_endpoint == url
    text = repr(cfg) + repr(cfg.public_dict())
    assert "s3cret" not in text
    assert cfg.public_dict()["emissions_endpoint"] == "https://hooks.example/ingest?***"


def test_api_output_needs_a_uuid_experiment_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="experiment_id"):
        OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(tmp_path), output_methods=["api"])
    OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(tmp_path), output_methods=["api"],
                            experiment_id="5b0fa12a-3dd7-45bb-9766-cc326314d9f1")


def test_an_output_dir_that_cannot_be_made_is_named_before_training(tmp_path: Path) -> None:
    """Caught at construction where the check can tell, else at start() (root may write /proc),
    always naming output_dir: never another parameter."""
    with pytest.raises(ConfigError, match="output_dir") as caught:
        tracker = OfflineEmissionsTracker(country_iso_code="FRA",
                                          output_dir="/proc/codecarbon-callbacks-test/runs")
        tracker.start()
    assert "boamps" not in str(caught.value)

"""Config precedence (argument > env > ./.codecarbon.config > ~/.codecarbon.config), bad input."""

from __future__ import annotations

import logging
import os
import sys
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
    cfg = resolve_config(
        {"project_name": "arg", "output_dir": str(tmp_path)}, environ=env, config_files=files
    )
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
    [
        ["csv", "logger"],
        [OutputMethod.CSV, OutputMethod.LOGGER],
        "csv,logger",
        ["CSV", "OutputMethod.LOGGER"],
    ],
)
def test_output_methods_forms_resolve_alike(tmp_path: Path, given: object) -> None:
    cfg = resolve_config(
        {"output_methods": given, "output_dir": str(tmp_path)}, environ={}, config_files=[]
    )
    assert cfg.output_methods == [OutputMethod.CSV, OutputMethod.LOGGER]


def test_deprecated_save_flags_map_to_methods(tmp_path: Path) -> None:
    with pytest.warns(DeprecationWarning, match="save_to_logger"):
        cfg = resolve_config(
            {"save_to_logger": True, "output_dir": str(tmp_path)}, environ={}, config_files=[]
        )
    assert cfg.output_methods == [OutputMethod.CSV, OutputMethod.LOGGER]
    with pytest.warns(DeprecationWarning, match="save_to_file"):
        cfg = resolve_config(
            {"save_to_file": False, "output_dir": str(tmp_path)}, environ={}, config_files=[]
        )
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
        cfg = resolve_config(
            {"co2_signal_api_token": "s3cr3t-xyz", "output_dir": str(tmp_path)},
            environ={},
            config_files=[],
        )
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
    env = {
        "CODECARBON_FORCE_MODE_CPU_LOAD": "yes",
        "CODECARBON_API_CALL_INTERVAL": "4",
        "CODECARBON_GPU_IDS": "0,GPU-abc",
    }
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
    ({"output_file": "sub/"}, "output_file"),
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


@pytest.mark.parametrize(
    ("arguments", "named"), BAD_ARGUMENTS, ids=[b[1] + str(i) for i, b in enumerate(BAD_ARGUMENTS)]
)
def test_bad_argument_names_the_parameter(tmp_path: Path, arguments: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        OfflineEmissionsTracker(country_iso_code="FRA", output_dir=str(tmp_path), **arguments)


def test_bad_config_file_value_names_file_and_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    levels = {
        name: logging.getLogger(name).level
        for name in ("", "codecarbon_callbacks", "codecarbon_callbacks_core")
    }
    quiet = OfflineEmissionsTracker(
        country_iso_code="FRA", output_dir=str(tmp_path), log_level="error"
    )
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
    cfg = resolve_config(
        {"emissions_endpoint": url, "output_dir": str(tmp_path)}, environ={}, config_files=[]
    )
    assert cfg.emissions_endpoint == url
    text = repr(cfg) + repr(cfg.public_dict())
    assert "s3cret" not in text
    assert cfg.public_dict()["emissions_endpoint"] == "https://hooks.example/ingest?***"


def test_api_output_needs_a_uuid_experiment_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="experiment_id"):
        OfflineEmissionsTracker(
            country_iso_code="FRA", output_dir=str(tmp_path), output_methods=["api"]
        )
    OfflineEmissionsTracker(
        country_iso_code="FRA",
        output_dir=str(tmp_path),
        output_methods=["api"],
        experiment_id="5b0fa12a-3dd7-45bb-9766-cc326314d9f1",
    )


def test_an_output_dir_that_cannot_be_made_is_named_before_training(tmp_path: Path) -> None:
    """Caught at construction where the check can tell, else at start() (root may write /proc),
    always naming output_dir: never another parameter."""
    with pytest.raises(ConfigError, match="output_dir") as caught:
        tracker = OfflineEmissionsTracker(
            country_iso_code="FRA", output_dir="/proc/codecarbon-callbacks-test/runs"
        )
        tracker.start()
    assert "boamps" not in str(caught.value)


# -- every value checked against its domain, from every source ----------------------------------
#
# (parameter, text): each is refused whether it is given as an argument, as CODECARBON_<NAME> or
# as a .codecarbon.config key. "{file}", "{missing}", "{folder}", "{not_json}" and "{json_list}"
# stand for paths made in tmp_path.
BAD_VALUES = [
    ("measure_power_secs", "often"),
    ("measure_power_secs", "0"),
    ("measure_power_secs", "-1"),
    ("measure_power_secs", "1e10"),  # once accepted; the sampler thread died of OverflowError
    ("measure_power_secs", "nan"),
    ("measure_power_secs", "inf"),
    ("measure_power_secs", "0.001"),
    ("api_call_interval", "0"),
    ("api_call_interval", "2.5"),
    ("api_call_interval", "1e7"),
    ("pue", "0.9"),
    ("pue", "high"),
    ("pue", "11"),
    ("wue", "-1"),
    ("wue", "101"),
    ("force_cpu_power", "-5"),
    ("force_cpu_power", "1e6"),
    ("force_ram_power", "-1"),
    ("force_ram_power", "watts"),
    ("force_carbon_intensity_g_co2e_kwh", "-10"),
    ("force_carbon_intensity_g_co2e_kwh", "99999"),
    ("spool_max_bytes", "0"),
    ("spool_max_bytes", "1.5"),
    ("spool_max_bytes", "1e13"),
    ("spool_max_age_s", "0"),
    ("spool_max_age_s", "1e12"),
    ("tracking_mode", "galaxy"),
    ("on_csv_write", "overwrite"),
    ("log_level", "loud"),
    ("output_methods", "csv,carrier_pigeon"),
    ("gpu_ids", "first"),
    ("gpu_ids", "-1"),
    ("metadata", "not json"),
    ("metadata", "[1, 2]"),
    ("rapl_include_dram", "perhaps"),
    ("webhook_windows", "maybe"),
    ("allow_multiple_runs", "2"),
    ("prometheus_url", "ftp://host:9091"),
    ("prometheus_url", "localhost:notaport"),
    ("prometheus_url", "http://"),
    ("prometheus_url", "host:0"),
    ("prometheus_url", "host:70000"),
    ("prometheus_url", "http://push gateway:9091"),
    ("prometheus_scrape_address", "localhost:http"),
    ("prometheus_scrape_address", ":70000"),
    ("prometheus_scrape_address", "scrape-me"),
    ("emissions_endpoint", "ftp://example"),
    ("emissions_endpoint", "http://"),
    ("emissions_endpoint", "http://exa mple.com/x"),
    ("emissions_endpoint", "https://hooks.example:99999/x"),
    ("emissions_endpoint", "https://hooks.example:0/x"),
    ("emissions_endpoint", "hooks.example/x"),
    ("emissions_endpoint", "https://hooks.example:port/x"),
    ("api_endpoint", "api.codecarbon.io"),
    ("api_endpoint", "http://"),
    ("api_endpoint", "https://api.codecarbon.io:65536"),
    ("api_endpoint", "mailto:someone@example.com"),
    ("api_endpoint", "https://exa$mple.com"),
    ("output_file", "sub/.."),
    ("output_file", "e\x00.csv"),  # once accepted; the write failed at stop and the row was lost
    ("windows_output_file", "a/b.csv"),
    ("windows_output_file", "w\x00.csv"),
    ("output_dir", "{file}"),
    ("output_dir", "{file}/sub"),
    ("output_dir", "ru\x00ns"),
    ("boamps_context_file", "{missing}"),  # once accepted; start() raised, inside on_fit_start
    ("boamps_context_file", "{folder}"),
    ("boamps_context_file", "{not_json}"),
    ("boamps_context_file", "{json_list}"),
    ("boamps_context_file", "ctx\x00.json"),
    ("project_name", "pro\x00ject"),
    ("experiment_name", "exp\x00"),
    ("logging_logger", "ener\x00gy"),
    ("cloud_region", "us-east-1"),  # without cloud_provider
    ("electricitymaps_api_token", "tok\x00en-s3cret"),
]
SOURCES = ("argument", "environment", "file")


def _bad_value_paths(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "not.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "folder").mkdir()
    return {
        "file": str(tmp_path / "a_file"),
        "missing": str(tmp_path / "missing.json"),
        "folder": str(tmp_path / "folder"),
        "not_json": str(tmp_path / "not.json"),
        "json_list": str(tmp_path / "list.json"),
    }


def _resolve_from(source: str, name: str, text: str, tmp_path: Path) -> str:
    """Resolve ``name=text`` given through ``source``; the ConfigError's message."""
    out = tmp_path / "out"
    base = {"output_dir": str(out)} if name != "output_dir" else {}
    config_file = str(tmp_path / ".codecarbon.config")
    with pytest.raises(ConfigError) as caught:
        if source == "argument":
            resolve_config({**base, name: text}, environ={}, config_files=[])
        elif source == "environment":
            resolve_config(base, environ={"CODECARBON_" + name.upper(): text}, config_files=[])
        else:
            resolve_config(base, environ={}, config_files=[(config_file, {name: text})])
    return str(caught.value)


def test_the_bad_value_table_is_large() -> None:
    assert len(BAD_VALUES) * len(SOURCES) >= 60
    assert len({name for name, _ in BAD_VALUES}) >= 30


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("name", "text"), BAD_VALUES, ids=[f"{n}={t!r}" for n, t in BAD_VALUES])
def test_every_bad_value_names_the_parameter_and_its_source(
    tmp_path: Path, source: str, name: str, text: str
) -> None:
    text = text.format(**_bad_value_paths(tmp_path))
    message = _resolve_from(source, name, text, tmp_path)
    if source == "argument":
        assert message.startswith(name) or f" {name} " in message or f"{name}=" in message, message
        assert "(from " not in message
    elif source == "environment":
        assert f"{name} (from environment variable CODECARBON_{name.upper()})" in message
    else:
        config_file = str(tmp_path / ".codecarbon.config")
        assert f"{name} (from {config_file} [codecarbon] {name})" in message
    assert "s3cret" not in message  # a secret is never repeated in a message


GOOD_VALUES = [
    ("prometheus_url", "localhost:9091"),  # CodeCarbon's form: host:port without a scheme
    ("prometheus_url", "pushgateway"),
    ("prometheus_url", "https://push.example:443/base"),
    ("prometheus_url", "[::1]:9091"),
    ("prometheus_scrape_address", ":9464"),
    ("prometheus_scrape_address", "127.0.0.1:0"),
    ("prometheus_scrape_address", "9464"),
    ("emissions_endpoint", "http://127.0.0.1:8080/hook"),
    ("api_endpoint", "https://api.codecarbon.io"),
    ("measure_power_secs", "86400"),
    ("measure_power_secs", "0.01"),
    ("pue", "10"),
    ("force_carbon_intensity_g_co2e_kwh", "5000"),
    ("spool_max_bytes", str(2**40)),
    ("logging_logger", "energy"),
]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(("name", "text"), GOOD_VALUES, ids=[f"{n}={t}" for n, t in GOOD_VALUES])
def test_values_at_the_edge_of_their_domain_are_accepted(
    tmp_path: Path, source: str, name: str, text: str
) -> None:
    base = {"output_dir": str(tmp_path)}
    if source == "argument":
        cfg = resolve_config({**base, name: text}, environ={}, config_files=[])
    elif source == "environment":
        cfg = resolve_config(base, environ={"CODECARBON_" + name.upper(): text}, config_files=[])
    else:
        cfg = resolve_config(base, environ={}, config_files=[("f", {name: text})])
    value = getattr(cfg, name)
    assert (str(value) == text) if isinstance(value, str) else (value == float(text))


def test_logging_logger_by_name_receives_the_records(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/configuration.md: a logger name is accepted (it was refused)."""
    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA",
        output_dir=str(tmp_path),
        output_methods=["logger"],
        logging_logger="energy.runs",
    )
    with caplog.at_level(logging.INFO, logger="energy.runs"):
        tracker.start()
        tracker.stop()
    assert any(
        r.name == "energy.runs" and "energy_consumed" in r.getMessage() for r in caplog.records
    )


def test_a_missing_boamps_context_file_fails_at_construction(tmp_path: Path) -> None:
    missing = tmp_path / "context.json"
    with pytest.raises(ConfigError, match="boamps_context_file") as caught:
        OfflineEmissionsTracker(
            country_iso_code="FRA",
            output_dir=str(tmp_path),
            output_methods=["boamps"],
            boamps_context_file=str(missing),
        )
    assert str(missing) in str(caught.value)
    example = Path(__file__).resolve().parents[2] / "examples" / "boamps_context.json"
    cfg = resolve_config(
        {"output_dir": str(tmp_path), "boamps_context_file": example}, environ={}, config_files=[]
    )
    assert cfg.boamps_context_file == str(example)


def test_the_longest_live_interval_runs_and_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """measure_power_secs=1e10 once killed the sampler thread (OverflowError); the documented
    maximum (86400 s) runs."""
    deaths: list[BaseException | None] = []
    monkeypatch.setattr("threading.excepthook", lambda args: deaths.append(args.exc_value))
    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA", output_dir=str(tmp_path), measure_power_secs=86400
    )
    tracker.start()
    assert tracker.stop() is not None
    assert deaths == []
    with pytest.raises(ConfigError, match=r"measure_power_secs must be >= 0\.01 and <= 86400"):
        OfflineEmissionsTracker(
            country_iso_code="FRA", output_dir=str(tmp_path), measure_power_secs=1e10
        )


# -- unknown names --------------------------------------------------------------------------------


def test_a_misspelt_keyword_gets_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="unknown parameter 'output_dri'; did you mean output_dir"
    ):
        OfflineEmissionsTracker(country_iso_code="FRA", output_dri=str(tmp_path))
    with pytest.raises(ConfigError, match="'zzz_qqq'") as caught:
        resolve_config({"zzz_qqq": 1}, environ={}, config_files=[])
    assert "did you mean" not in str(caught.value)  # nothing close: no suggestion


def test_unknown_variables_and_keys_warn_once_with_the_closest_name(tmp_path: Path) -> None:
    from codecarbon_callbacks_core import CodeCarbonCallbacksWarning

    env = {
        "CODECARBON_MEASURE_POWER_SEC": "5",
        "CODECARBON_CALLBACKS_MACHINE_ID": "m1",
        "CODECARBON_CALLBACKS_ANYTHING": "x",
    }
    files = _files(tmp_path, local="[codecarbon]\nmeasure_power_sec = 4\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = resolve_config({"output_dir": str(tmp_path)}, environ=env, config_files=files)
        again = resolve_config({"output_dir": str(tmp_path)}, environ=env, config_files=files)
    messages = [str(w.message) for w in caught if w.category is CodeCarbonCallbacksWarning]
    assert messages == [
        "environment variable CODECARBON_MEASURE_POWER_SEC is not a codecarbon parameter and is "
        "ignored; did you mean CODECARBON_MEASURE_POWER_SECS?",
        f"{files[0][0]} [codecarbon] measure_power_sec is not a codecarbon parameter and is "
        "ignored; did you mean measure_power_secs?",
    ]  # once per process; the package's own CODECARBON_CALLBACKS_* are exempt
    assert cfg.measure_power_secs == again.measure_power_secs == 15.0


def test_unknown_names_are_only_logged_on_other_ranks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        resolve_config(
            {"output_dir": str(tmp_path)},
            environ={"RANK": "1", "CODECARBON_PEU": "1.2"},
            config_files=[],
        )
    assert [w for w in caught] == []
    assert "CODECARBON_PEU" in caplog.text and "did you mean CODECARBON_PUE" in caplog.text


# -- secrets in URLs ------------------------------------------------------------------------------


def test_url_credentials_and_tokens_never_in_repr_public_dict_or_messages(tmp_path: Path) -> None:
    cfg = resolve_config(
        {
            "output_dir": str(tmp_path),
            "prometheus_url": "https://pusher:pw-s3cret@push.example:9091",
            "api_endpoint": "https://user:api-s3cret@api.example/v1?token=tk-s3cret",
            "emissions_endpoint": "https://hooks.example/in?key=hk-s3cret",
        },
        environ={},
        config_files=[],
    )
    assert cfg.prometheus_url == "https://pusher:pw-s3cret@push.example:9091"  # used as given
    text = repr(cfg) + repr(cfg.public_dict())
    assert "s3cret" not in text and "pusher" not in text
    assert cfg.public_dict()["prometheus_url"] == "https://push.example:9091"
    assert "prometheus_url='https://push.example:9091'" in repr(cfg)
    no_scheme = resolve_config(
        {"output_dir": str(tmp_path), "prometheus_url": "pusher:pw-s3cret@push.example:9091"},
        environ={},
        config_files=[],
    )
    assert no_scheme.public_dict()["prometheus_url"] == "push.example:9091"
    assert "s3cret" not in repr(no_scheme)
    for name, url in [
        ("emissions_endpoint", "https://u:pw-s3cret@h:99999/x?token=tk-s3cret"),
        ("api_endpoint", "ftp://u:pw-s3cret@h/x?token=tk-s3cret"),
        ("api_endpoint", "https://u:pw-s3cret@exa mple/x?token=tk-s3cret"),
        ("prometheus_url", "u:pw-s3cret@h:notaport"),
        ("emissions_endpoint", "https://u:pw-s3cret@/x"),
    ]:
        for source in SOURCES:
            message = _resolve_from(source, name, url, tmp_path)
            assert name in message and "s3cret" not in message, message


# -- gpu_ids against the visible GPUs, at start() -------------------------------------------------


def _fake_gpus(monkeypatch: pytest.MonkeyPatch, count: int) -> list[str]:
    from fakes.fake_nvml import FakeDevice, FakeNvml, RealClock

    uuids = [f"GPU-{i}{i}{i}{i}bbbb-0000-0000-0000-00000000000{i}" for i in range(count)]
    nvml = FakeNvml([FakeDevice(uuid=u, power_w=100.0) for u in uuids], clock=RealClock())
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    return uuids


def test_gpu_ids_naming_no_visible_gpu_fail_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once: a warning at start(), then no GPU at all in the run."""
    (uuid,) = _fake_gpus(monkeypatch, 1)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA", output_dir=str(tmp_path), gpu_ids=[5], allow_multiple_runs=False
    )
    with pytest.raises(ConfigError, match="gpu_ids") as caught:
        tracker.start()
    message = str(caught.value)
    assert "'5'" in message and f"0: {uuid}" in message
    assert "count within CUDA_VISIBLE_DEVICES" in message
    assert not tracker.is_running
    # nothing left held: another single-run tracker starts, and measures the GPU it names
    fine = OfflineEmissionsTracker(
        country_iso_code="FRA", output_dir=str(tmp_path), gpu_ids=[0], allow_multiple_runs=False
    )
    fine.start()
    try:
        assert [c.kind for c in fine.components].count("gpu") == 1
    finally:
        fine.stop()


def test_gpu_ids_count_within_cuda_visible_devices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uuids = _fake_gpus(monkeypatch, 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    tracker = OfflineEmissionsTracker(
        country_iso_code="FRA", output_dir=str(tmp_path), gpu_ids=[2]
    )  # NVML index 2 is CUDA ordinal 0 here
    with pytest.raises(ConfigError, match=r"CUDA_VISIBLE_DEVICES='2,3'") as caught:
        tracker.start()
    assert f"0: {uuids[2]} (NVML index 2); 1: {uuids[3]} (NVML index 3)" in str(caught.value)
    by_uuid = OfflineEmissionsTracker(
        country_iso_code="FRA", output_dir=str(tmp_path), gpu_ids=[uuids[3]]
    )
    by_uuid.start()
    try:
        assert [getattr(c, "uuid", None) for c in by_uuid.components if c.kind == "gpu"] == [
            uuids[3]
        ]
    finally:
        by_uuid.stop()


def test_output_handlers_from_the_environment_or_a_file_are_ignored_with_a_warning(
    tmp_path: Path,
) -> None:
    from codecarbon_callbacks_core import CodeCarbonCallbacksWarning

    with pytest.warns(CodeCarbonCallbacksWarning, match="only taken from an argument") as caught:
        cfg = resolve_config(
            {"output_dir": str(tmp_path)},
            environ={"CODECARBON_OUTPUT_HANDLERS": "x"},
            config_files=[("f", {"output_handlers": "y"})],
        )
    assert len(caught) == 2 and cfg.output_handlers == []


def test_every_numeric_range_is_the_documented_one() -> None:
    from codecarbon_callbacks_core.config import NUMBER_RANGES

    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    rows = {
        line.split("|")[1].strip().strip("`"): line
        for line in docs.splitlines()
        if line.startswith("| `")
    }
    for name, (low, high, _included, _unit) in NUMBER_RANGES.items():
        row = rows[name]
        assert f"{low:g}" in row and str(int(high)) in row, (name, row)


def test_prometheus_scrape_address_alone_means_no_pushgateway(tmp_path: Path) -> None:
    """A scrape address with no Pushgateway named: scrape only; an empty prometheus_url and no
    scrape address leave the PROMETHEUS output nowhere to send to."""
    base = {"output_dir": str(tmp_path), "output_methods": ["prometheus"]}
    cfg = resolve_config(
        {**base, "prometheus_scrape_address": ":9464"}, environ={}, config_files=[]
    )
    assert (cfg.prometheus_url, cfg.prometheus_scrape_address) == (None, ":9464")
    named = {"prometheus_scrape_address": ":9464", "prometheus_url": "gw:9091"}
    cfg = resolve_config({**base, **named}, environ={}, config_files=[])
    assert cfg.prometheus_url == "gw:9091"  # both, when both are named
    assert resolve_config(base, environ={}, config_files=[]).prometheus_url == "localhost:9091"
    with pytest.raises(ConfigError, match="prometheus_url .from environment variable"):
        resolve_config(base, environ={"CODECARBON_PROMETHEUS_URL": ""}, config_files=[])
    cfg = resolve_config(
        {**base, "prometheus_url": None, "prometheus_scrape_address": 9464},
        environ={},
        config_files=[],
    )
    assert (cfg.prometheus_url, cfg.prometheus_scrape_address) == (None, "9464")

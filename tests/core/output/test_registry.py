from __future__ import annotations

import json
import logging
import subprocess
import sys
import time

import pytest
from codecarbon_callbacks_core.config import ConfigError, TrackerConfig
from codecarbon_callbacks_core.output.api import CodeCarbonAPIOutput
from codecarbon_callbacks_core.output.base import OutputMethod
from codecarbon_callbacks_core.output.boamps import BoAmpsOutput
from codecarbon_callbacks_core.output.logfire_output import LogfireOutput
from codecarbon_callbacks_core.output.logger import LoggerOutput
from codecarbon_callbacks_core.output.prometheus import PrometheusOutput
from codecarbon_callbacks_core.output.registry import (
    create_output,
    create_outputs,
    create_webhook_output,
    resolve_method,
)
from codecarbon_callbacks_core.output.webhook import WebhookOutput

EXPERIMENT = "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"


def config(tmp_path, **kw):
    values = {"output_dir": str(tmp_path), "experiment_id": EXPERIMENT, "api_key": "cpt_k3y-abcdef"}
    values.update(kw)
    return TrackerConfig(**values)


@pytest.mark.parametrize("spelling", [OutputMethod.LOGGER, "logger", "LOGGER", " Logger "])
def test_enum_and_strings_resolve_to_the_same_handler(spelling, tmp_path):
    assert resolve_method(spelling) is OutputMethod.LOGGER
    assert isinstance(create_output(spelling, config(tmp_path)), LoggerOutput)


def test_each_method_gets_its_output(tmp_path):
    cfg = config(tmp_path, prometheus_url="127.0.0.1:9", prometheus_delete_on_exit=True)
    kinds = {
        m: type(create_output(m, cfg))
        for m in (
            OutputMethod.LOGGER,
            OutputMethod.PROMETHEUS,
            OutputMethod.LOGFIRE,
            OutputMethod.BOAMPS,
            OutputMethod.API,
        )
    }
    assert kinds == {
        OutputMethod.LOGGER: LoggerOutput,
        OutputMethod.PROMETHEUS: PrometheusOutput,
        OutputMethod.LOGFIRE: LogfireOutput,
        OutputMethod.BOAMPS: BoAmpsOutput,
        OutputMethod.API: CodeCarbonAPIOutput,
    }
    assert create_output("prometheus", cfg).delete_on_exit is True
    outs = create_outputs(
        "logger,boamps", config(tmp_path, emissions_endpoint="http://h/x", webhook_windows=True)
    )
    assert [type(o) for o in outs] == [LoggerOutput, BoAmpsOutput, WebhookOutput]
    assert outs[-1].windows is True


def test_logging_logger_forms(tmp_path):
    log = logging.getLogger("user.energy")
    assert create_output("logger", config(tmp_path, logging_logger=log)).logger is log
    wrapped = LoggerOutput(log, logging.ERROR)
    assert create_output("logger", config(tmp_path, logging_logger=wrapped)) is wrapped


def test_boamps_context_file(tmp_path):
    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps({"quality": "low", "task": {"taskStage": "training"}}))
    out = create_output("boamps", config(tmp_path, boamps_context_file=str(ctx)))
    assert out.quality == "low" and out.task.task_stage == "training"
    with pytest.raises(ConfigError, match="boamps_context_file"):
        create_output("boamps", config(tmp_path, boamps_context_file=str(tmp_path / "no.json")))


def test_errors_are_config_errors_naming_the_parameter(tmp_path):
    with pytest.raises(ConfigError, match="unknown output method 'carrier-pigeon'.*accepted"):
        create_output("carrier-pigeon", config(tmp_path))
    with pytest.raises(ConfigError, match="experiment_id"):
        create_output("api", config(tmp_path, experiment_id=""))
    with pytest.raises(ConfigError, match="emissions_endpoint"):
        create_webhook_output(config(tmp_path, emissions_endpoint="ftp://nope"))


def test_construction_is_cheap_and_offline(tmp_path):
    cfg = config(tmp_path, prometheus_url="127.0.0.1:9", emissions_endpoint="http://127.0.0.1:9/x")
    for m in ("logger", "prometheus", "logfire", "boamps", "api"):
        create_output(m, cfg)  # warm imports
    t0 = time.perf_counter()
    for m in ("logger", "prometheus", "logfire", "boamps", "api"):
        create_output(m, cfg)
    create_webhook_output(cfg)
    assert (time.perf_counter() - t0) / 6 < 0.005
    assert list(tmp_path.iterdir()) == []  # nothing written, nothing sent


def test_registry_imports_no_network_or_metrics_library():
    code = (
        "import sys; import codecarbon_callbacks_core.output.registry as r; "
        "from codecarbon_callbacks_core.config import TrackerConfig; "
        "cfg = TrackerConfig(experiment_id='5b0fa12a-3dd7-45bb-9766-cc326314d9f1'); "
        "[r.create_output(m, cfg) for m in ('logger','prometheus','logfire','boamps','api')]; "
        "bad = [m for m in ('requests','prometheus_client','logfire','opentelemetry','urllib3')"
        " if m in sys.modules]; print(bad)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("method", "module", "extra"),
    [("prometheus", "prometheus_client", "prometheus"), ("logfire", "logfire", "logfire")],
)
def test_missing_optional_package_is_a_clear_config_error(
    tmp_path, monkeypatch, method, module, extra
):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a)
    )
    with pytest.raises(
        ConfigError, match=rf"pip install \"codecarbon-callbacks-core\[{extra}\]\""
    ) as raised:
        create_output(method, config(tmp_path))
    assert f'pip install -e "./core[{extra}]"' in str(raised.value)  # from a clone's root


def test_codecarbon_output_names_resolve_lazily():
    code = (
        "import sys, codecarbon_callbacks.output as o; "
        "heavy = [m for m in ('requests','prometheus_client','logfire','pandas') "
        "if m in sys.modules]; "
        "assert heavy == [], heavy; "
        "from codecarbon_callbacks.output import HTTPOutput, WebhookOutput, LoggerOutput, "
        "PrometheusOutput, LogfireOutput, BoAmpsOutput, CodeCarbonAPIOutput, BaseOutput; "
        "assert HTTPOutput is WebhookOutput; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    with pytest.raises(AttributeError):
        import codecarbon_callbacks.output as ours

        ours.NoSuchOutput  # noqa: B018
    assert set(ours.__all__) == set(ours._EXPORTS)

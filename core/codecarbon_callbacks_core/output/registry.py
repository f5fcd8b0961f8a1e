"""From a tracker's configuration to output objects: the contract with the tracker.

``create_output(method, config)`` builds the output of one ``OutputMethod`` (the tracker calls it
for each configured method at start()); ``create_webhook_output(config)`` builds the HTTP webhook
output the tracker adds when ``emissions_endpoint`` is set. Construction is cheap and offline:
network libraries are imported and connections made on first use, in the background sender.

``config`` is a ``TrackerConfig`` (or any object / dict with the same attribute names).
"""

from __future__ import annotations

import logging
from typing import Any

from codecarbon_callbacks_core.output._util import config_get
from codecarbon_callbacks_core.output.base import BaseOutput, OutputMethod

logger = logging.getLogger(__name__)


def _config_error(message: str) -> ValueError:
    try:
        from codecarbon_callbacks_core.config import ConfigError
    except ImportError:  # pragma: no cover - config.py always ships
        return ValueError(message)
    return ConfigError(message)


def resolve_method(method: OutputMethod | str) -> OutputMethod:
    """An ``OutputMethod`` from a member or its name ("logger", "LOGGER", " Prometheus ")."""
    if isinstance(method, OutputMethod):
        return method
    if isinstance(method, str):
        key = method.strip().lower()
        for member in OutputMethod:
            if key in (member.value, member.name.lower()):
                return member
    accepted = ", ".join(m.value for m in OutputMethod)
    raise _config_error(f"output_methods: unknown output method {method!r}; accepted: {accepted}")


def create_output(method: OutputMethod | str, config: Any) -> BaseOutput:
    """The output object for ``method`` configured from ``config``.

    Raises:
        ConfigError: unknown method, or a configuration value the output cannot use
            (the message names the parameter).
    """
    method = resolve_method(method)
    output_dir = config_get(config, "output_dir", ".")
    spool = {
        "spool_max_bytes": config_get(config, "spool_max_bytes", 10 * 1024 * 1024),
        "spool_max_age_s": config_get(config, "spool_max_age_s", 7 * 24 * 3600.0),
    }
    try:
        if method is OutputMethod.LOGGER:
            from codecarbon_callbacks_core.output.logger import LoggerOutput

            return LoggerOutput.from_value(config_get(config, "logging_logger"))
        if method is OutputMethod.PROMETHEUS:
            from codecarbon_callbacks_core.output.prometheus import PrometheusOutput

            return PrometheusOutput(
                config_get(config, "prometheus_url", "localhost:9091"),
                delete_on_exit=bool(config_get(config, "prometheus_delete_on_exit", False)),
            )
        if method is OutputMethod.LOGFIRE:
            from codecarbon_callbacks_core.output.logfire_output import LogfireOutput

            return LogfireOutput()
        if method is OutputMethod.BOAMPS:
            from codecarbon_callbacks_core.output.boamps import BoAmpsOutput

            context_file = config_get(config, "boamps_context_file")
            if context_file:
                return BoAmpsOutput.from_file(context_file, output_dir=output_dir)
            return BoAmpsOutput(output_dir)
        if method is OutputMethod.API:
            from codecarbon_callbacks_core.output.api import CodeCarbonAPIOutput

            return CodeCarbonAPIOutput(
                config_get(config, "api_endpoint", "https://api.codecarbon.io"),
                experiment_id=config_get(config, "experiment_id", ""),
                api_key=config_get(config, "api_key"),
                output_dir=output_dir,
                **spool,
            )
        if method is OutputMethod.CSV:
            from codecarbon_callbacks_core.output.file import FileOutput

            return FileOutput(
                output_dir,
                config_get(config, "output_file", "emissions.csv"),
                on_csv_write=config_get(config, "on_csv_write", "append"),
                windows_file=config_get(config, "windows_output_file", "emissions_windows.csv"),
            )
    except FileNotFoundError as exc:
        raise _config_error(f"boamps_context_file: {exc}") from None
    except ImportError as exc:
        raise _config_error(f"output_methods={method.value!r}: {exc}") from None
    except ValueError as exc:
        if type(exc).__name__ == "ConfigError":
            raise
        raise _config_error(f"output_methods={method.value!r}: {exc}") from None
    raise _config_error(f"output_methods: no output for {method!r}")  # pragma: no cover


def create_webhook_output(config: Any) -> BaseOutput:
    """The HTTP webhook output for ``config.emissions_endpoint`` (windows if webhook_windows)."""
    from codecarbon_callbacks_core.output.webhook import WebhookOutput

    endpoint = config_get(config, "emissions_endpoint")
    if not endpoint:
        raise _config_error("emissions_endpoint: an http(s) URL is needed for the webhook output")
    try:
        return WebhookOutput(
            endpoint,
            config_get(config, "output_dir", "."),
            windows=bool(config_get(config, "webhook_windows", False)),
            spool_max_bytes=config_get(config, "spool_max_bytes", 10 * 1024 * 1024),
            spool_max_age_s=config_get(config, "spool_max_age_s", 7 * 24 * 3600.0),
        )
    except ValueError as exc:
        raise _config_error(str(exc)) from None


def create_outputs(methods: Any, config: Any) -> list[BaseOutput]:
    """Outputs for a list of methods (members, names or a comma-separated string)."""
    if isinstance(methods, (str, OutputMethod)):
        methods = [m for m in str(getattr(methods, "value", methods)).split(",") if m.strip()]
    outputs = [create_output(m, config) for m in methods]
    if config_get(config, "emissions_endpoint"):
        outputs.append(create_webhook_output(config))
    return outputs


__all__ = ["create_output", "create_outputs", "create_webhook_output", "resolve_method"]

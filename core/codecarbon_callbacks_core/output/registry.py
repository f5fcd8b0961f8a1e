"""From a tracker's configuration to output objects: the contract with the tracker.

``create_output(method, config)`` builds the output of one ``OutputMethod`` (the tracker calls it
for each configured method at start()); ``create_webhook_output(config)`` builds the HTTP webhook
output the tracker adds when ``emissions_endpoint`` is set. Construction is cheap and offline:
network libraries are imported and connections made on first use, in the background sender.

``config`` is a resolved ``TrackerConfig``: its defaults are the only ones; nothing here has a
copy of them. This is the one place outputs are built from a configuration (the CSV output
included).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from codecarbon_callbacks_core.errors import ConfigError
from codecarbon_callbacks_core.output.base import BaseOutput, OutputMethod

if TYPE_CHECKING:
    from codecarbon_callbacks_core.config import TrackerConfig

logger = logging.getLogger(__name__)


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
    raise ConfigError(f"output_methods: unknown output method {method!r}; accepted: {accepted}")


def create_output(method: OutputMethod | str, config: TrackerConfig) -> BaseOutput:
    """The output object for ``method`` configured from ``config``.

    Raises:
        ConfigError: unknown method, or a configuration value the output cannot use
            (the message names the parameter).
    """
    method = resolve_method(method)
    output_dir = config.output_dir
    try:
        if method is OutputMethod.LOGGER:
            from codecarbon_callbacks_core.output.logger import LoggerOutput

            return LoggerOutput.from_value(config.logging_logger)
        if method is OutputMethod.PROMETHEUS:
            from codecarbon_callbacks_core.output.prometheus import (
                PrometheusOutput,
                prometheus_job_name,
            )

            return PrometheusOutput(
                config.prometheus_url,
                job_name=prometheus_job_name(config.project_name, config.experiment_name),
                delete_on_exit=bool(config.prometheus_delete_on_exit),
                scrape_address=config.prometheus_scrape_address,
            )
        if method is OutputMethod.LOGFIRE:
            from codecarbon_callbacks_core.output.logfire_output import LogfireOutput

            return LogfireOutput()
        if method is OutputMethod.BOAMPS:
            from codecarbon_callbacks_core.output.boamps import BoAmpsOutput

            context_file = config.boamps_context_file
            if context_file:
                try:
                    return BoAmpsOutput.from_file(context_file, output_dir=output_dir)
                except FileNotFoundError as exc:
                    raise ConfigError(f"boamps_context_file: {exc}") from None
            return BoAmpsOutput(output_dir)
        if method is OutputMethod.API:
            from codecarbon_callbacks_core.output.api import CodeCarbonAPIOutput

            return CodeCarbonAPIOutput(
                config.api_endpoint,
                experiment_id=config.experiment_id or "",
                api_key=config.api_key,
                output_dir=output_dir,
                spool_max_bytes=config.spool_max_bytes,
                spool_max_age_s=config.spool_max_age_s,
            )
        if method is OutputMethod.CSV:
            from codecarbon_callbacks_core.output.file import FileOutput

            return FileOutput(
                config.output_file,
                output_dir,
                on_csv_write=config.on_csv_write,
                windows_file=config.windows_output_file,
            )
    except OSError as exc:
        raise ConfigError(
            f"output_dir {output_dir!r}: the {method.value} output cannot use it "
            f"({exc.strerror or exc})"
        ) from None
    except ImportError as exc:
        raise ConfigError(f"output_methods={method.value!r}: {exc}") from None
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"output_methods={method.value!r}: {exc}") from None
    raise ConfigError(f"output_methods: no output for {method!r}")  # pragma: no cover


def create_webhook_output(config: TrackerConfig) -> BaseOutput:
    """The HTTP webhook output for ``config.emissions_endpoint`` (windows if webhook_windows)."""
    from codecarbon_callbacks_core.output.webhook import WebhookOutput

    endpoint = config.emissions_endpoint
    if not endpoint:
        raise ConfigError("emissions_endpoint: an http(s) URL is needed for the webhook output")
    try:
        return WebhookOutput(
            endpoint,
            config.output_dir,
            windows=bool(config.webhook_windows),
            spool_max_bytes=config.spool_max_bytes,
            spool_max_age_s=config.spool_max_age_s,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def create_outputs(
    methods: Iterable[OutputMethod | str] | str | OutputMethod, config: TrackerConfig
) -> list[BaseOutput]:
    """Outputs for a list of methods (members, names or a comma-separated string), then the
    HTTP webhook when ``config.emissions_endpoint`` is set."""
    if isinstance(methods, (str, OutputMethod)):
        methods = [m for m in str(getattr(methods, "value", methods)).split(",") if m.strip()]
    outputs = [create_output(m, config) for m in methods]
    if config.emissions_endpoint:
        outputs.append(create_webhook_output(config))
    return outputs


__all__ = ["create_output", "create_outputs", "create_webhook_output", "resolve_method"]

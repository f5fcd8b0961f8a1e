"""The ``codecarbon-callbacks`` command: detect, monitor, report, resend.

- ``detect``: the hardware found, how each component is measured, where the carbon intensity
  comes from, what is missing and how to fix it;
- ``monitor -- COMMAND ...``: track any command with live power and energy, write the usual
  reports, exit with the command's exit code;
- ``report PATH...``: per-run and per-epoch summaries of ``emissions.csv`` /
  ``emissions_windows.csv`` files (or folders holding them), ``--plot FILE.png`` for a chart;
- ``resend``: deliver the spool of records an HTTP output could not deliver.

One module per command; the parser and :func:`main` are in :mod:`.app`. Errors are one line on
stderr with a non-zero exit code (1; 2 for bad usage). The tables and plots behind ``report`` are
a library of their own: :mod:`codecarbon_callbacks.reports`.

Example:
    >>> from codecarbon_callbacks.cli import main
    >>> main(["report", "example_output", "--last"])  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from typing import Any

from codecarbon_callbacks.cli._common import PROG, CliError
from codecarbon_callbacks.cli.app import build_parser, main

__all__ = ["PROG", "CliError", "build_parser", "main"]

#: the report helpers this module used to hold; they live in codecarbon_callbacks.reports
_MOVED_TO_REPORTS = frozenset(
    {
        "Reports",
        "epoch_summary",
        "format_table",
        "load_reports",
        "plot_epochs",
        "run_summary",
        "task_summary",
    }
)


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_REPORTS:
        warnings.warn(
            f"codecarbon_callbacks.cli.{name} moved to codecarbon_callbacks.reports.{name}",
            DeprecationWarning,
            stacklevel=2,
        )
        from codecarbon_callbacks import reports

        return getattr(reports, name)
    if name == "hardware_suggestions":
        from codecarbon_callbacks.cli.detect import hardware_suggestions

        return hardware_suggestions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

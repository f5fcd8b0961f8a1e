"""``codecarbon-callbacks report PATH...``: per-run, per-epoch and per-task summaries.

The tables and the chart come from :mod:`codecarbon_callbacks.reports`; this module only reads
the options and prints.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import pandas

    from codecarbon_callbacks.reports import Reports


#: what ``--plot`` says when the reports hold no epoch to draw (the tables are printed anyway)
_NO_CHART_NOTE = (
    "No chart written to {path}: these reports hold no per-epoch windows (a run tracked without "
    "a training callback, or stopped before its first epoch ended). The chart shows epochs; "
    "the tables above are the whole report.\n"
)


def add_parser(commands: Any) -> None:
    """Add the ``report`` command to the subparsers ``commands``."""
    report = commands.add_parser(
        "report",
        help="per-run and per-epoch summaries of emissions CSV files",
        description="Summarise emissions.csv (runs) and emissions_windows.csv (epochs, phases, "
        "tasks). PATH is a file or a folder holding them. Energies in Wh, emissions "
        "in g CO2eq.",
    )
    report.add_argument("paths", nargs="+", metavar="PATH", help="CSV files or folders")
    which = report.add_mutually_exclusive_group()
    which.add_argument("--run", metavar="RUN_ID", help="only this run (a prefix of its run_id)")
    which.add_argument("--last", action="store_true", help="only the run that ended last")
    report.add_argument("--plot", metavar="FILE.png", help="save a per-epoch chart (matplotlib)")
    report.add_argument("--json", action="store_true", help="print JSON (kWh and kg)")
    report.set_defaults(handler=run)


def _records(frame: pandas.DataFrame | None) -> list[dict[str, Any]]:
    if frame is None or not len(frame):
        return []
    records: list[dict[str, Any]] = json.loads(
        frame.to_json(orient="records", date_format="iso", double_precision=15)
    )
    return records


def _named(files: list[str], reports: Reports) -> str:
    return ", ".join(f"{f} [fallback file]" if f in reports.fallback_files else f for f in files)


def _write_tables(
    out: TextIO,
    reports: Reports,
    run_table: pandas.DataFrame | None,
    epoch_table: pandas.DataFrame | None,
    task_table: pandas.DataFrame | None,
) -> None:
    from codecarbon_callbacks.cli._common import PROG
    from codecarbon_callbacks.reports import format_table

    if run_table is not None and len(run_table):
        out.write(
            f"Runs ({_named(reports.run_files, reports)}):\n{format_table(run_table, 'runs')}\n\n"
        )
    if epoch_table is not None and len(epoch_table):
        out.write(
            f"Per epoch ({_named(reports.window_files, reports)}):\n"
            f"{format_table(epoch_table, 'epochs')}\n\n"
        )
    elif reports.window_files:
        out.write(f"No per-epoch windows in {', '.join(reports.window_files)}.\n\n")
    if task_table is not None and len(task_table):
        out.write(f"Tasks:\n{format_table(task_table, 'tasks')}\n\n")
    if reports.fallback_files:
        out.write(
            f"Rows from fallback files (they could not be written to their folder when "
            f"the run stopped; `{PROG} resend FOLDER` writes them back): "
            f"{', '.join(reports.fallback_files)}\n\n"
        )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Print the summaries of ``args.paths`` (JSON with ``--json``); returns the exit code."""
    from codecarbon_callbacks.cli._common import CliError
    from codecarbon_callbacks.reports import (
        epoch_summary,
        last_run_id,
        load_reports,
        plot_epochs,
        project_names,
        run_summary,
        select_run,
        task_summary,
    )

    reports = load_reports(args.paths)
    run_id = last_run_id(reports) if args.last else args.run
    runs = select_run(reports.runs, run_id)
    windows = select_run(reports.windows, run_id)
    if (
        run_id is not None
        and (runs is None or not len(runs))
        and (windows is None or not len(windows))
    ):
        raise CliError(f"--run {run_id}: no run with this id in {', '.join(args.paths)}")
    run_table = run_summary(runs) if runs is not None else None
    epoch_table = epoch_summary(windows) if windows is not None else None
    task_table = task_summary(windows) if windows is not None else None
    plotted = False
    if args.plot and epoch_table is not None and len(epoch_table):
        plot_epochs(epoch_table, args.plot, projects=project_names(reports))
        plotted = True
    if args.json:
        payload: dict[str, Any] = {
            "files": reports.run_files + reports.window_files,
            "fallback_files": reports.fallback_files,
            "runs": _records(run_table),
            "epochs": _records(epoch_table),
            "tasks": _records(task_table),
        }
        if args.plot:
            payload["plot"] = str(args.plot) if plotted else None
            if not plotted:
                payload["plot_note"] = _NO_CHART_NOTE.format(path=args.plot).strip()
        out.write(json.dumps(payload, indent=2) + "\n")
        return 0
    _write_tables(out, reports, run_table, epoch_table, task_table)
    if plotted:
        out.write(f"Chart written to {args.plot}\n")
    elif args.plot:
        out.write(_NO_CHART_NOTE.format(path=args.plot))
    return 0

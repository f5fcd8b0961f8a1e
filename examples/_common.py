"""Shared bits of the examples: command-line options and the closing per-epoch table.

Not part of the package: the examples import it as a sibling module (``python examples/x.py``
puts ``examples/`` on ``sys.path``).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

#: Every example is offline: the carbon intensity comes from the bundled table for this country.
DEFAULT_COUNTRY = os.environ.get("CODECARBON_COUNTRY_ISO_CODE", "USA")


def parse_args(
    description: str,
    *,
    epochs: int = 3,
    argv: list[str] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """The options every example takes: --output-dir, --epochs, --country-iso-code, --seed.

    Args:
        description: the example's one-line description (``--help``).
        epochs: the default of ``--epochs``.
        argv: the arguments (default: the command line).
        extra: adds the example's own options to the parser.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--output-dir",
        default="example_output",
        help="where the reports go (default: ./example_output)",
    )
    parser.add_argument(
        "--epochs", type=int, default=epochs, help=f"epochs to train (default {epochs})"
    )
    parser.add_argument(
        "--country-iso-code",
        default=DEFAULT_COUNTRY,
        help="where the electricity is used, ISO 3166 alpha-3 (default: "
        "$CODECARBON_COUNTRY_ISO_CODE, else USA); no network is used",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    return args


def print_report(output_dir: str | os.PathLike[str], run_id: str | None) -> None:
    """Print the run's per-epoch table from the CSV files just written, and where they are."""
    from codecarbon_callbacks.reports import (
        epoch_summary,
        format_table,
        load_reports,
        run_summary,
        select_run,
        task_summary,
    )

    reports = load_reports([output_dir])
    epochs = epoch_summary(select_run(reports.windows, run_id))
    runs = run_summary(select_run(reports.runs, run_id))
    tasks = task_summary(select_run(reports.windows, run_id))
    if len(epochs):
        print("\nPer-epoch energy and emissions (energies in Wh, emissions in g CO2eq):")
        print(format_table(epochs, "epochs"))
    if len(tasks):
        print("\nTasks (energies in Wh, emissions in g CO2eq):")
        print(format_table(tasks, "tasks"))
    if len(runs):
        print("\nThe run:")
        print(format_table(runs, "runs"))
        row = runs.iloc[-1]
        print(
            f"\nCarbon intensity {row['carbon_intensity_g_per_kwh']:.4g} gCO2eq/kWh "
            f"({row['carbon_intensity_source']}); measured by: {row['methods']}"
        )
    print("\nReports written:")
    for name in reports.run_files + reports.window_files:
        print(f"  {Path(name).resolve()}")
    for extra in sorted(Path(output_dir).glob(f"*{run_id or ''}*.json")):
        print(f"  {extra.resolve()}")
    # the run just printed (by id: an example may end with other runs), and a chart when it
    # has epochs to draw
    which = f"--run {run_id[:8]}" if run_id else "--last"
    plot = f" --plot {Path(output_dir) / 'epochs.png'}" if len(epochs) else ""
    print(f"\nSummarise them again with: codecarbon-callbacks report {output_dir} {which}{plot}")

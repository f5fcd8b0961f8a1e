"""The parser of the ``codecarbon-callbacks`` command and ``main()``, its entry point.

Each command lives in its own module (:mod:`.detect`, :mod:`.monitor`, :mod:`.report`,
:mod:`.resend`), which adds its subparser and sets ``handler`` to its ``run(args, out)``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from codecarbon_callbacks_core.errors import CodeCarbonCallbacksWarning

from codecarbon_callbacks.cli import detect, monitor, report, resend
from codecarbon_callbacks.cli._common import PROG, CliError, parse_gpu_ids


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``codecarbon-callbacks`` command."""
    from codecarbon_callbacks._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Energy and carbon emissions of training runs (and any command).",
        epilog="Run '%(prog)s COMMAND --help' for a command's options. Tracker parameters not "
        "given here come from CODECARBON_* environment variables and .codecarbon.config.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show the library's log messages"
    )
    commands = parser.add_subparsers(dest="command_name", metavar="COMMAND")
    for command in (detect, monitor, report, resend):
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the entry point passes it to sys.exit).

    Errors are one line on stderr: exit code 1 (2 for bad usage, 130 after Ctrl-C); with
    ``--verbose`` an unexpected error also prints its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    if hasattr(args, "gpu_ids"):
        args.gpu_ids = parse_gpu_ids(args.gpu_ids)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format=f"{PROG}: %(levelname)s: %(message)s",
    )
    from codecarbon_callbacks_core.config import ConfigError

    from codecarbon_callbacks.reports import ReportError

    try:
        with warnings.catch_warnings():
            # the command shows the package's log lines (above): the same messages, once
            warnings.simplefilter("ignore", CodeCarbonCallbacksWarning)
            return int(args.handler(args, sys.stdout))
    except (CliError, ReportError) as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 1
    except (ConfigError, OSError, ValueError) as e:
        sys.stderr.write(f"{PROG}: error: {e}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as e:  # noqa: BLE001 - one line, the traceback with --verbose
        if args.verbose:
            import traceback

            traceback.print_exc()
        sys.stderr.write(
            f"{PROG}: error: unexpected {type(e).__name__}: {e} "
            "(run with --verbose for the traceback)\n"
        )
        return 1

"""``codecarbon-callbacks monitor -- COMMAND ...``: track any command, with live power and energy.

The command runs as a child process under an ``EmissionsTracker`` (``OfflineEmissionsTracker``
when a location is given or ``--offline``); live figures go to stderr (a ``rich`` live display on
a terminal, plain lines otherwise), the usual reports are written at the end, and the exit code is
the command's.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any, TextIO

from codecarbon_callbacks.cli._common import (
    PROG,
    CliError,
    add_hardware_options,
    add_location_options,
    location_arguments,
)

if TYPE_CHECKING:
    from codecarbon_callbacks_core.tracker import BaseEmissionsTracker

logger = logging.getLogger(__name__)


def add_parser(commands: Any) -> None:
    """Add the ``monitor`` command to the subparsers ``commands``."""
    monitor = commands.add_parser(
        "monitor",
        help="track any command, with live power and energy",
        description="Run COMMAND and measure the machine's energy while it runs: live power and "
        "energy on the terminal (stderr; plain lines when not a terminal), the usual "
        "reports at the end. Exits with COMMAND's exit code.",
        epilog="Example: %(prog)s --country-iso-code FRA -- python train.py --epochs 3",
    )
    monitor.add_argument(
        "--output-dir",
        default=None,
        metavar="DIR",
        help="where reports go (default: output_dir from config, else .)",
    )
    monitor.add_argument("--project-name", help="project_name of the run")
    monitor.add_argument("--experiment-id", help="experiment_id of the run")
    monitor.add_argument(
        "--output-methods",
        metavar="LIST",
        help="comma-separated output methods, e.g. csv,logger (default csv)",
    )
    monitor.add_argument(
        "--measure-power-secs",
        type=float,
        metavar="S",
        help="how often live outputs receive deltas (seconds)",
    )
    monitor.add_argument("--pue", type=float, help="power usage effectiveness (>= 1)")
    monitor.add_argument(
        "--offline",
        action="store_true",
        help="never touch the network (needs a country or cloud region)",
    )
    monitor.add_argument(
        "--interval",
        type=float,
        default=2.0,
        metavar="S",
        help="refresh of the live display, seconds (default 2)",
    )
    monitor.add_argument("--plain", action="store_true", help="plain lines even on a terminal")
    add_location_options(monitor)
    add_hardware_options(monitor)
    monitor.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND ...",
        help="the command to run, after --",
    )
    monitor.set_defaults(handler=run)


def _tracker_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = location_arguments(args)
    for key in (
        "project_name",
        "output_dir",
        "measure_power_secs",
        "tracking_mode",
        "pue",
        "force_cpu_power",
        "force_ram_power",
        "experiment_id",
        "gpu_ids",
    ):
        value = getattr(args, key, None)
        if value is not None:
            kwargs[key] = value
    if args.output_methods is not None:
        kwargs["output_methods"] = args.output_methods
    return kwargs


def _totals_line(elapsed_s: float, tracker: BaseEmissionsTracker) -> tuple[str, dict[str, float]]:
    totals = tracker.totals()
    power = {kind: 0.0 for kind in ("cpu", "gpu", "ram")}
    for component in tracker.components:
        try:
            power[component.kind] = power.get(component.kind, 0.0) + float(component.power_w())
        except Exception as e:  # noqa: BLE001 - reads as 0 W here; the tracker warns
            logger.debug("power of %s: %s", component.name, e)
    figures = {
        "elapsed_s": elapsed_s,
        "power_w": sum(power.values()),
        **{f"{k}_power_w": v for k, v in power.items()},
        "energy_kwh": totals.energy_consumed,
        "emissions_kg": totals.emissions,
    }
    parts = " ".join(f"{k} {v:.3g}" for k, v in power.items() if v)
    line = (
        f"{elapsed_s:7.1f} s | {figures['power_w']:.4g} W"
        + (f" ({parts})" if parts else "")
        + f" | {figures['energy_kwh'] * 1000:.4g} Wh"
        + f" | {figures['emissions_kg'] * 1000:.4g} g CO2eq"
    )
    return line, figures


def _use_rich(args: argparse.Namespace, stream: TextIO) -> bool:
    if args.plain:
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    # both must be terminals: Live sends our stdout through its console (on stderr)
    return all(hasattr(s, "isatty") and s.isatty() for s in (stream, sys.stdout))


def split_terminal_output(buffer: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Cut a child's output into finished lines and carriage-return updates.

    Returns ``(events, rest)``: events are ``("line", text)`` for text ended by ``\\n`` (or
    ``\\r\\n``) and ``("partial", text)`` for text ended by a lone ``\\r`` (a progress bar
    redrawing itself); ``rest`` is the unfinished tail.
    """
    events: list[tuple[str, bytes]] = []
    start = 0
    i = 0
    while i < len(buffer):
        byte = buffer[i : i + 1]
        if byte == b"\n":
            events.append(("line", buffer[start:i]))
            start = i + 1
        elif byte == b"\r":
            if i + 1 == len(buffer):
                break  # a lone \r at the end may be the start of \r\n: wait for more
            if buffer[i + 1 : i + 2] == b"\n":
                events.append(("line", buffer[start:i]))
                i += 1
            else:
                events.append(("partial", buffer[start:i]))
            start = i + 1
        i += 1
    return events, buffer[start:]


class _ChildOutput:
    """The child's output for the live display: finished lines are printed, the line being
    redrawn with ``\\r`` (progress bars) stays in the live area above the figures."""

    def __init__(self, print_line: Any) -> None:
        self.print_line = print_line
        self.lock = threading.Lock()
        self.pending: dict[str, str] = {}

    def read(self, name: str, pipe: Any) -> None:
        rest = b""
        try:
            while True:
                chunk = os.read(pipe.fileno(), 65536)
                if not chunk:
                    break
                events, rest = split_terminal_output(rest + chunk)
                for kind, raw in events:
                    text = raw.decode("utf-8", errors="replace")
                    with self.lock:
                        if kind == "line":
                            self.pending.pop(name, None)
                            self.print_line(text)
                        else:
                            self.pending[name] = text
                with self.lock:
                    if rest:
                        self.pending[name] = rest.decode("utf-8", errors="replace")
            if rest:
                with self.lock:
                    self.pending.pop(name, None)
                    self.print_line(rest.rstrip(b"\r").decode("utf-8", errors="replace"))
        finally:
            pipe.close()

    def lines(self) -> list[str]:
        with self.lock:
            return [text for text in self.pending.values() if text]


def _command(args: argparse.Namespace) -> list[str]:
    """The command after ``--``, checked: it exists and can be run; the interval is > 0."""
    import shutil

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise CliError("monitor needs a command: codecarbon-callbacks monitor -- python train.py")
    if args.interval <= 0:
        raise CliError(f"--interval must be > 0 seconds, got {args.interval}")
    if shutil.which(command[0]) is None:
        why = "not executable" if os.path.exists(command[0]) else "not found"
        raise CliError(f"cannot run {command[0]!r}: {why}")
    return command


def _start_child(command: list[str], rich_mode: bool) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    try:
        if rich_mode:
            env.setdefault("PYTHONUNBUFFERED", "1")
            return subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        return subprocess.Popen(command, env=env)
    except OSError as e:
        raise CliError(f"cannot run {command[0]!r}: {e.strerror or e}") from None


def _watch(
    child: subprocess.Popen[bytes],
    tracker: BaseEmissionsTracker,
    started: float,
    args: argparse.Namespace,
    rich_mode: bool,
) -> tuple[int, str]:
    """Show the live figures until the child ends; returns its exit code and the run's status.
    SIGTERM is passed on to the child while it runs; Ctrl-C waits for it (10 s, then kills)."""

    def forward_term(signum: int, frame: Any) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    try:
        previous_term = signal.signal(signal.SIGTERM, forward_term)
    except ValueError:  # not the main thread
        previous_term = None
    try:
        watch = _monitor_rich if rich_mode else _monitor_plain
        returncode = watch(child, tracker, started, args.interval, sys.stderr)
        return returncode, "completed" if returncode == 0 else "failed"
    except KeyboardInterrupt:
        try:
            returncode = child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            returncode = child.wait()
        return (returncode if returncode > 0 else 130), "interrupted"
    finally:
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)


def _write_summary(
    out: TextIO, command: list[str], returncode: int, tracker: BaseEmissionsTracker
) -> None:
    data = tracker.final_emissions_data
    if data is None:
        return
    out.write(
        f"{PROG}: {_short(shlex.join(command))} exited with {returncode} after "
        f"{data.duration:.1f} s: "
        f"{data.energy_consumed * 1000:.4g} Wh (cpu {data.cpu_energy * 1000:.4g}, "
        f"gpu {data.gpu_energy * 1000:.4g}, ram {data.ram_energy * 1000:.4g}), "
        f"{data.emissions * 1000:.4g} g CO2eq at {data.carbon_intensity_g_per_kwh:.4g} g/kWh "
        f"({data.carbon_intensity_source}); run {data.run_id}\n"
    )
    from pathlib import Path

    from codecarbon_callbacks_core.output.base import OutputMethod

    if OutputMethod.CSV in tracker.config.output_methods:
        path = Path(tracker.config.output_dir) / tracker.config.output_file
        out.write(
            f"{PROG}: reports in {path.resolve()} "
            f"(and {tracker.config.windows_output_file} beside it)\n"
        )


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run the command under a tracker; returns the command's exit code (128 + N when signal N
    killed it, 130 after Ctrl-C)."""
    command = _command(args)
    from codecarbon_callbacks_core.tracker import EmissionsTracker, OfflineEmissionsTracker

    kwargs = _tracker_kwargs(args)
    offline = bool(kwargs.get("country_iso_code") or kwargs.get("cloud_provider")) or args.offline
    tracker = (OfflineEmissionsTracker if offline else EmissionsTracker)(**kwargs)
    # added to the configured metadata; the program's name only: its arguments may hold secrets
    tracker.update_metadata({"monitored_program": os.path.basename(command[0])})
    rich_mode = _use_rich(args, sys.stderr)

    tracker.start()
    started = time.monotonic()
    status = "failed"
    returncode = 1
    try:
        child = _start_child(command, rich_mode)
        returncode, status = _watch(child, tracker, started, args, rich_mode)
    finally:
        tracker.stop(status=status)
    if returncode < 0:  # killed by a signal: the shell convention
        returncode = 128 - returncode
    _write_summary(out, command, returncode, tracker)
    out.flush()
    return returncode


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _monitor_plain(
    child: subprocess.Popen[bytes],
    tracker: BaseEmissionsTracker,
    started: float,
    interval_s: float,
    stream: TextIO,
) -> int:
    while True:
        try:
            return child.wait(timeout=interval_s)
        except subprocess.TimeoutExpired:
            pass
        line, _ = _totals_line(time.monotonic() - started, tracker)
        stream.write(f"{PROG}: {line}\n")
        stream.flush()


def _monitor_rich(
    child: subprocess.Popen[bytes],
    tracker: BaseEmissionsTracker,
    started: float,
    interval_s: float,
    stream: TextIO,
) -> int:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

    console = Console(file=stream)
    output = _ChildOutput(lambda text: console.print(Text(text), highlight=False, markup=False))
    status = {"text": Text("starting...", style="bold green")}

    def render() -> Any:
        return Group(*(Text(line) for line in output.lines()), status["text"])

    with Live(
        console=console,
        get_renderable=render,
        refresh_per_second=4,
        transient=False,
        redirect_stdout=False,
        redirect_stderr=False,
    ):
        readers = [
            threading.Thread(target=output.read, args=("stdout", child.stdout), daemon=True),
            threading.Thread(target=output.read, args=("stderr", child.stderr), daemon=True),
        ]
        for reader in readers:
            reader.start()
        while True:
            try:
                code = child.wait(timeout=min(interval_s, 0.5))
                break
            except subprocess.TimeoutExpired:
                pass
            line, _ = _totals_line(time.monotonic() - started, tracker)
            status["text"] = Text(line, style="bold green")
        for reader in readers:
            reader.join(timeout=5)
        line, _ = _totals_line(time.monotonic() - started, tracker)
        status["text"] = Text(line, style="bold")
    return code

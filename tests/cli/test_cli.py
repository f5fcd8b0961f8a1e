"""The codecarbon-callbacks command, run as a subprocess: report, detect, monitor, resend."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import pytest
from cli.conftest import CPU_W, GPU_W, RAM_W, run_cli
from codecarbon_callbacks_core.output.file import read_emissions

TOTAL_W = CPU_W + GPU_W + RAM_W
NUMBER = r"[0-9.]+(?:e[+-]?[0-9]+)?"
LIVE_LINE = re.compile(
    rf"codecarbon-callbacks: +{NUMBER} s \| {NUMBER} W.* \| (?P<wh>{NUMBER}) Wh \| "
    rf"{NUMBER} g CO2eq$"
)
METHODS = {"rapl", "nvml_energy", "nvml_power", "tdp_estimate", "constant"}


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The error: one line, the last; warnings (e.g. about hardware) may come before it."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("codecarbon-callbacks: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    return errors[0]


# -- help and usage ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["detect"], ["monitor"], ["report"], ["resend"]])
def test_help_everywhere(tmp_path: Path, command: list[str]) -> None:
    result = run_cli(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: codecarbon-callbacks")
    for name in ("detect", "monitor", "report", "resend") if not command else command:
        assert name in result.stdout


def test_cli_module_imports_nothing_heavy(tmp_path: Path) -> None:
    """``--help`` and argument errors stay fast: pandas, torch & co. load only where used."""
    heavy = (
        "torch",
        "lightning",
        "transformers",
        "keras",
        "pandas",
        "matplotlib",
        "rich",
        "requests",
        "pynvml",
        "prometheus_client",
        "logfire",
    )
    code = (
        "import sys, codecarbon_callbacks.cli as cli; cli.build_parser(); "
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run_cli(cwd=tmp_path)
    assert result.returncode == 2
    assert "usage: codecarbon-callbacks" in result.stderr


def test_console_script_is_installed(tmp_path: Path) -> None:
    import shutil

    script = shutil.which("codecarbon-callbacks")
    if script is None:
        pytest.skip("the package is not installed with its entry point (pip install -e .)")
    result = subprocess.run(
        [script, "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    from codecarbon_callbacks import __version__

    assert result.returncode == 0 and __version__ in result.stdout


# -- report --------------------------------------------------------------------------------------


def test_report_json_per_run_and_per_epoch(
    reports_dir: tuple[Path, list[str]], tmp_path: Path
) -> None:
    output, run_ids = reports_dir
    result = run_cli("report", str(output), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)

    runs = {r["run_id"]: r for r in payload["runs"]}
    assert set(runs) == set(run_ids)  # the flushed run has one row, its final one
    rows = read_emissions(output / "emissions.csv")
    assert len(rows) == 3  # flush row + 2 final rows
    for run_id, run in runs.items():
        final = rows[(rows["run_id"] == run_id) & (rows["status"] == "completed")].iloc[0]
        assert run["status"] == "completed"
        assert run["energy_kwh"] == pytest.approx(final["energy_consumed"])
        assert run["duration_s"] == pytest.approx(final["duration"])

    epochs = payload["epochs"]
    assert [(e["run_id"], e["epoch"]) for e in epochs] == (
        [(run_ids[0], n) for n in range(3)] + [(run_ids[1], n) for n in range(2)]
    )
    windows = read_emissions(output / "emissions_windows.csv")
    for epoch in epochs:
        # constant powers: every epoch's mean power is their sum, whatever its duration
        assert epoch["mean_power_w"] == pytest.approx(TOTAL_W, rel=0.02)
        assert epoch["cpu_energy_kwh"] / epoch["energy_kwh"] == pytest.approx(
            CPU_W / TOTAL_W, rel=1e-3
        )
        assert epoch["train_energy_kwh"] + epoch["validation_energy_kwh"] == pytest.approx(
            epoch["energy_kwh"]
        )
        assert epoch["train_energy_kwh"] > epoch["validation_energy_kwh"] > 0
        mine = windows[
            (windows["run_id"] == epoch["run_id"])
            & (windows["epoch"] == epoch["epoch"])
            & windows["kind"].isin(["epoch", "phase"])
        ]
        assert epoch["energy_kwh"] == pytest.approx(mine["energy_consumed"].sum())
    # the epochs plus the closing window tile the run from the first window's opening to the
    # last one's closing: nearly all of the run, never more
    for run_id, run in [(run_ids[0], runs[run_ids[0]])]:  # the second run has a task after them
        tiling = windows[(windows["run_id"] == run_id) & windows["kind"].isin(["epoch", "phase"])]
        assert (
            0.9 * run["energy_kwh"]
            < tiling["energy_consumed"].sum()
            <= run["energy_kwh"] * (1 + 1e-9)
        )

    assert [t["task"] for t in payload["tasks"]] == ["evaluate"]
    assert payload["tasks"][0]["run_id"] == run_ids[1]


def test_report_table_last_run_and_plot(
    reports_dir: tuple[Path, list[str]], tmp_path: Path
) -> None:
    output, run_ids = reports_dir
    chart = tmp_path / "epochs.png"
    result = run_cli("report", str(output), "--last", "--plot", str(chart), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Per epoch" in out and "energy_Wh" in out and "emissions_g" in out
    assert run_ids[1][:8] in out and run_ids[0][:8] not in out
    assert f"Chart written to {chart}" in out
    data = chart.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000

    by_prefix = run_cli(
        "report",
        str(output / "emissions_windows.csv"),
        "--run",
        run_ids[0][:8],
        "--json",
        cwd=tmp_path,
    )
    assert by_prefix.returncode == 0, by_prefix.stderr
    payload = json.loads(by_prefix.stdout)
    assert payload["runs"] == []  # only the windows file was given
    assert {e["run_id"] for e in payload["epochs"]} == {run_ids[0]}


def test_report_errors_are_one_line(reports_dir: tuple[Path, list[str]], tmp_path: Path) -> None:
    output, _ = reports_dir
    missing = run_cli("report", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 1
    assert "nowhere: no such file or folder" in _one_error_line(missing)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "other.csv").write_text("a,b\n1,2\n")
    nothing = run_cli("report", str(empty), cwd=tmp_path)
    assert nothing.returncode == 1
    assert "no emissions.csv or emissions_windows.csv" in _one_error_line(nothing)

    unknown = run_cli("report", str(output), "--run", "zzzz", cwd=tmp_path)
    assert unknown.returncode == 1
    assert "--run zzzz" in _one_error_line(unknown)

    no_epochs = tmp_path / "only_runs"
    no_epochs.mkdir()
    (no_epochs / "emissions.csv").write_text((output / "emissions.csv").read_text())
    chart = tmp_path / "x.png"
    plot = run_cli("report", str(no_epochs), "--last", "--plot", str(chart), cwd=tmp_path)
    assert plot.returncode == 0, plot.stderr  # the tables, then a note instead of a chart
    assert "Runs (" in plot.stdout and "energy_Wh" in plot.stdout
    assert f"No chart written to {chart}: these reports hold no per-epoch windows" in plot.stdout
    assert not chart.exists()


def test_report_reads_a_codecarbon_file(tmp_path: Path) -> None:
    """A file CodeCarbon wrote (its columns only) is summarised too."""
    from codecarbon_callbacks_core.records import CODECARBON_COLUMNS

    row = {c: "" for c in CODECARBON_COLUMNS}
    row.update(
        timestamp="2025-01-01T00:00:10",
        project_name="cc",
        run_id="cc-run",
        duration="10",
        emissions="0.001",
        cpu_energy="0.002",
        gpu_energy="0.003",
        ram_energy="0.0005",
        energy_consumed="0.0055",
        cpu_count="8",
        gpu_count="1",
    )
    path = tmp_path / "emissions.csv"
    path.write_text(
        ",".join(CODECARBON_COLUMNS) + "\n" + ",".join(row[c] for c in CODECARBON_COLUMNS) + "\n"
    )
    result = run_cli("report", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(result.stdout)["runs"]
    assert run["run_id"] == "cc-run" and run["energy_kwh"] == pytest.approx(0.0055)


def test_report_reads_codecarbon_local_time_beside_our_utc(tmp_path: Path) -> None:
    """CodeCarbon's zone-less timestamps are this machine's local time: in New York, 00:00:10 is
    05:00:10 UTC (not 00:00:10 UTC); our own UTC rows sort with them in one report."""
    from cli.conftest import write_run
    from codecarbon_callbacks_core.records import CODECARBON_COLUMNS

    cc_dir, ours_dir = tmp_path / "cc", tmp_path / "ours"
    cc_dir.mkdir()
    ours_dir.mkdir()
    row = {c: "" for c in CODECARBON_COLUMNS}
    row.update(
        timestamp="2025-01-01T00:00:10",
        project_name="cc",
        run_id="cc-run",
        duration="10",
        emissions="0.001",
        energy_consumed="0.0055",
    )
    (cc_dir / "emissions.csv").write_text(
        ",".join(CODECARBON_COLUMNS) + "\n" + ",".join(row[c] for c in CODECARBON_COLUMNS) + "\n"
    )
    ours = write_run(ours_dir, epochs=1)
    result = run_cli(
        "report", str(cc_dir), str(ours_dir), "--json", cwd=tmp_path, env={"TZ": "America/New_York"}
    )
    assert result.returncode == 0, result.stderr
    runs = {r["run_id"]: r for r in json.loads(result.stdout)["runs"]}
    assert set(runs) == {"cc-run", ours}
    assert runs["cc-run"]["end"] == "2025-01-01T05:00:10.000Z"


# -- detect --------------------------------------------------------------------------------------


def test_detect_json(tmp_path: Path) -> None:
    result = run_cli("detect", "--json", "--country-iso-code", "FRA", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["components"], "at least the CPU and the RAM are always accounted for"
    kinds = {c["kind"] for c in payload["components"]}
    assert {"cpu", "ram"} <= kinds
    assert {c["method"] for c in payload["components"]} <= METHODS
    intensity = payload["carbon_intensity"]
    assert intensity["source"].startswith("country:FRA")
    assert intensity["country_iso_code"] == "FRA"
    from codecarbon_callbacks_core.intensity import resolve_offline

    assert intensity["g_per_kwh"] == pytest.approx(
        resolve_offline(country_iso_code="FRA").g_per_kwh
    )
    assert isinstance(payload["suggestions"], list) and isinstance(payload["notes"], list)


def test_detect_text_says_what_is_missing(tmp_path: Path) -> None:
    result = run_cli("detect", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Components measured:" in out and "Carbon intensity:" in out
    assert "no location given" in out  # and how to give one
    assert "--country-iso-code" in out
    from codecarbon_callbacks_core.hardware import probe_presence

    if probe_presence().rapl in ("absent", "unreadable"):
        assert "RAPL" in out  # this machine lacks it: the fix is named


def test_detect_location_from_environment_and_bad_country(tmp_path: Path) -> None:
    from_env = run_cli("detect", "--json", cwd=tmp_path, env={"CODECARBON_COUNTRY_ISO_CODE": "DEU"})
    assert from_env.returncode == 0, from_env.stderr
    assert json.loads(from_env.stdout)["carbon_intensity"]["country_iso_code"] == "DEU"
    bad = run_cli("detect", "--country-iso-code", "XYZQ", cwd=tmp_path)
    assert bad.returncode == 1
    assert "country_iso_code" in _one_error_line(bad)


# -- monitor -------------------------------------------------------------------------------------


def test_monitor_exit_code_live_lines_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    child = "import sys, time; print('child says hi', flush=True); time.sleep(1.2); sys.exit(3)"
    result = run_cli(
        "monitor",
        "--country-iso-code",
        "FRA",
        "--output-dir",
        str(out),
        "--interval",
        "0.3",
        "--",
        sys.executable,
        "-c",
        child,
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr
    assert "child says hi" in result.stdout
    live = [line for line in result.stderr.splitlines() if LIVE_LINE.match(line)]
    assert len(live) >= 2, result.stderr  # plain lines: not a terminal
    energies = [float(LIVE_LINE.match(line).group("wh")) for line in live]
    assert energies == sorted(energies) and energies[-1] > 0
    assert "exited with 3" in result.stdout and str(out / "emissions.csv") in result.stdout
    rows = read_emissions(out / "emissions.csv")
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["status"] == "failed"
    assert row["duration"] >= 1.2
    assert row["energy_consumed"] > 0
    assert row["country_iso_code"] == "FRA"
    assert row["metadata"]["monitored_program"] == Path(sys.executable).name


def test_monitor_on_a_terminal_shows_a_live_line(tmp_path: Path) -> None:
    """stdout and stderr on a terminal: rich's live line, the command's output above it."""
    pytest.importorskip("rich")
    pty = pytest.importorskip("pty")
    out = tmp_path / "out"
    child = (
        "import sys, time\nfor i in range(3): print('out', i); time.sleep(0.3)\n"
        "for i in range(4): sys.stderr.write('\\rbar %d/3' % i); sys.stderr.flush(); "
        "time.sleep(0.1)\n"
        "sys.stderr.write('\\n')\nsys.exit(4)"
    )
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "codecarbon_callbacks",
            "monitor",
            "--country-iso-code",
            "FRA",
            "--output-dir",
            str(out),
            "--interval",
            "0.2",
            "--",
            sys.executable,
            "-c",
            child,
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert process.wait(timeout=60) == 4
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert all(f"out {i}" in screen for i in range(3))
    assert "bar 3/3" in screen  # the progress bar's last state is kept
    assert "\x1b[" in screen and " Wh | " in screen  # rich redrew the live line
    assert "exited with 4" in screen
    assert read_emissions(out / "emissions.csv").iloc[-1]["status"] == "failed"


def test_split_terminal_output_lines_and_progress_redraws() -> None:
    from codecarbon_callbacks.cli.monitor import split_terminal_output

    events, rest = split_terminal_output(b"a\nb\r\nloss 10%\rloss 20%\rloss 3")
    assert events == [
        ("line", b"a"),
        ("line", b"b"),
        ("partial", b"loss 10%"),
        ("partial", b"loss 20%"),
    ]
    assert rest == b"loss 3"
    # a \r at the end may be half of \r\n: kept until more comes
    assert split_terminal_output(b"x\r") == ([], b"x\r")
    assert split_terminal_output(b"x\r" + b"\ny") == ([("line", b"x")], b"y")


def test_monitor_success_and_errors(tmp_path: Path) -> None:
    out = tmp_path / "out"
    ok = run_cli(
        "monitor",
        "--country-iso-code",
        "FRA",
        "--output-dir",
        str(out),
        "--",
        sys.executable,
        "-c",
        "pass",
        cwd=tmp_path,
        env={"CODECARBON_METADATA": '{"team": "vision"}'},
    )
    assert ok.returncode == 0, ok.stderr
    row = read_emissions(out / "emissions.csv").iloc[-1]
    assert row["status"] == "completed"
    # the configured metadata is kept, the program's name added
    assert row["metadata"]["team"] == "vision"
    assert row["metadata"]["monitored_program"] == Path(sys.executable).name

    no_command = run_cli("monitor", "--country-iso-code", "FRA", cwd=tmp_path)
    assert no_command.returncode == 1
    assert "monitor needs a command" in _one_error_line(no_command)

    missing = run_cli(
        "monitor",
        "--country-iso-code",
        "FRA",
        "--output-dir",
        str(out),
        "--",
        "no-such-program-xyz",
        cwd=tmp_path,
    )
    assert missing.returncode == 1
    assert "no-such-program-xyz" in _one_error_line(missing)

    bad_config = run_cli(
        "monitor",
        "--country-iso-code",
        "FRA",
        "--",
        sys.executable,
        "-c",
        "pass",
        cwd=tmp_path,
        env={"CODECARBON_PUE": "0.5"},
    )
    assert bad_config.returncode == 1
    assert "pue" in _one_error_line(bad_config)


# -- resend --------------------------------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict]] = []
    status = 200

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    _Receiver.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/emissions"
    server.shutdown()
    server.server_close()


def _spool_in_dead_process(output_dir: Path, endpoint: str, n: int) -> None:
    """Entries written by a process that has exited, as after a crash: anyone may take them."""
    code = (
        "import sys; from codecarbon_callbacks_core.output.spool import Spool\n"
        f"spool = Spool({str(output_dir)!r})\n"
        f"for i in range({n}): spool.put('webhook', {endpoint!r}, {{'record': i}}, "
        f"record_id=f'r{{i}}')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_resend_delivers_the_spool(tmp_path: Path, receiver: str) -> None:
    output = tmp_path / "runs"
    output.mkdir()
    nothing = run_cli("resend", str(output), cwd=tmp_path)
    assert nothing.returncode == 0 and "Nothing to resend" in nothing.stdout

    _spool_in_dead_process(output, receiver, 3)
    result = run_cli("resend", str(output), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["delivered"] == 3 and counts["remaining"] == 0
    assert sorted(b["record"] for b in _Receiver.bodies) == [0, 1, 2]


def test_resend_endpoint_down_keeps_records(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    output = tmp_path / "runs"
    output.mkdir()
    _spool_in_dead_process(output, f"http://127.0.0.1:{port}/emissions", 2)
    result = run_cli("resend", str(output), "--timeout", "1", cwd=tmp_path)
    assert result.returncode == 1
    assert "2 record(s) could not be delivered" in _one_error_line(result)
    from codecarbon_callbacks_core.output.spool import Spool

    assert len(Spool(str(output)).entries()) == 2

    missing = run_cli("resend", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.returncode == 1
    assert "no such folder" in _one_error_line(missing)


# -- resend: endpoints, credentials, unreadable files, python -m -----------------------------------

SECRET_PASSWORD = "s3cret-hook-pass"
SECRET_KEY = "cpt_s3cret-cli-api-key-42"


def _spool(output_dir: Path, kind: str, endpoint: str, n: int, **extra: object) -> None:
    """``n`` entries as a crashed process leaves them: anyone may take them over."""
    from codecarbon_callbacks_core.output.spool import Spool
    from core.output.output_records import orphan_spool

    spool = Spool(str(output_dir))
    for i in range(n):
        spool.put(kind, endpoint, {"record": i}, record_id=f"{kind}{i}", extra=dict(extra))
    orphan_spool(output_dir)


def _spool_text(output_dir: Path) -> str:
    from codecarbon_callbacks_core.output.spool import SPOOL_DIRNAME

    return "".join(p.read_text() for p in (output_dir / SPOOL_DIRNAME).glob("*.json"))


@pytest.fixture
def server():
    from core.output.output_records import RecordingServer

    srv = RecordingServer().start()
    yield srv
    srv.stop()


def test_resend_names_records_left_for_another_endpoint(tmp_path: Path, server) -> None:
    """--emissions-endpoint filters: records of another endpoint are named (no secret) and the
    exit code says they were not delivered."""
    output = tmp_path / "runs"
    old = f"http://user:{SECRET_PASSWORD}@127.0.0.1:{server.port}/old?token=tok-abcdef"
    _spool(output, "webhook", old, 1)
    result = run_cli(
        "resend", str(output), "--emissions-endpoint", server.url + "/new", cwd=tmp_path
    )
    assert result.returncode == 1, result.stdout + result.stderr
    named = f"webhook http://127.0.0.1:{server.port}/old?***"
    assert named in _one_error_line(result)
    assert "do not redirect" in result.stderr
    assert SECRET_PASSWORD not in result.stdout + result.stderr
    assert "tok-abcdef" not in result.stdout + result.stderr
    assert server.requests == []
    from codecarbon_callbacks_core.output.spool import Spool

    assert len(Spool(str(output)).entries()) == 1
    helped = run_cli("resend", "--help", cwd=tmp_path)
    assert "it filters, it does not redirect" in " ".join(helped.stdout.split())


def test_resend_401_keeps_the_records_and_credentials_are_never_stored(
    tmp_path: Path, server
) -> None:
    """A webhook spooled with user:password@ is stored without them; resend without them gets
    401 and keeps every record, saying how to give them; with them, all arrive."""
    import base64

    expected = "Basic " + base64.b64encode(f"user:{SECRET_PASSWORD}".encode()).decode()

    def basic_auth(path, headers, body):
        return None if headers.get("Authorization") == expected else (401, {"detail": "auth"})

    server.handler_hook = basic_auth
    output = tmp_path / "runs"
    with_credentials = f"http://user:{SECRET_PASSWORD}@127.0.0.1:{server.port}/hook"
    _spool(output, "webhook", with_credentials, 4)
    assert SECRET_PASSWORD not in _spool_text(output)

    refused = run_cli("resend", str(output), cwd=tmp_path)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "refused the credentials (HTTP 401)" in refused.stderr
    assert "--emissions-endpoint" in refused.stderr
    assert "CODECARBON_EMISSIONS_ENDPOINT" in refused.stderr
    from codecarbon_callbacks_core.output.spool import Spool

    assert len(Spool(str(output)).entries()) == 4  # kept, not "rejected"
    assert len(server.requests) == 1  # the same credentials are not tried 4 times

    delivered = run_cli(
        "--verbose",
        "resend",
        str(output),
        "--json",
        "--emissions-endpoint",
        with_credentials,
        cwd=tmp_path,
    )
    assert delivered.returncode == 0, delivered.stderr
    counts = json.loads(delivered.stdout)
    assert counts["delivered"] == 4 and counts["remaining"] == 0
    assert sorted(b["record"] for b in server.accepted()[1:]) == [0, 1, 2, 3]
    assert SECRET_PASSWORD not in refused.stderr + delivered.stdout + delivered.stderr

    _spool(output, "webhook", with_credentials, 1)  # the configuration's URL names the endpoint
    configured = run_cli(
        "resend", str(output), cwd=tmp_path, env={"CODECARBON_EMISSIONS_ENDPOINT": with_credentials}
    )
    assert configured.returncode == 0, configured.stderr
    assert len(server.requests) == 6  # 1 refused, 4 with the flag, 1 with the configuration
    assert server.requests[-1]["headers"]["Authorization"] == expected
    assert SECRET_PASSWORD not in configured.stdout + configured.stderr


def test_resend_api_key_from_the_environment_403_keeps(tmp_path: Path, server) -> None:
    """API records: without the key, 403 keeps them and names --api-key and CODECARBON_API_KEY;
    CODECARBON_API_KEY delivers them; the key is never stored or printed."""

    def token(path, headers, body):
        return None if headers.get("x-api-token") == SECRET_KEY else (403, {"detail": "token"})

    server.handler_hook = token
    output = tmp_path / "runs"
    _spool(output, "api", server.url, 2, local_run_id="run-1", run={"experiment_id": "e"})
    refused = run_cli("resend", str(output), cwd=tmp_path)
    assert refused.returncode == 1
    assert "refused the credentials (HTTP 403)" in refused.stderr
    assert "--api-key" in refused.stderr and "CODECARBON_API_KEY" in refused.stderr
    from codecarbon_callbacks_core.output.spool import Spool

    assert len(Spool(str(output)).entries("api")) == 2
    delivered = run_cli(
        "resend", str(output), "--json", cwd=tmp_path, env={"CODECARBON_API_KEY": SECRET_KEY}
    )
    assert delivered.returncode == 0, delivered.stderr
    assert json.loads(delivered.stdout)["delivered"] == 2
    assert [r["path"] for r in server.requests[1:]] == ["/runs", "/emissions", "/emissions"]
    assert SECRET_KEY not in delivered.stdout + delivered.stderr + _spool_text(output)


def test_resend_counts_unreadable_spool_files(tmp_path: Path, server) -> None:
    output = tmp_path / "runs"
    _spool(output, "webhook", server.url + "/hook", 1)
    from codecarbon_callbacks_core.output.spool import SPOOL_DIRNAME

    for i in range(5):  # entry names (recent: the age bound keeps them), contents not JSON
        name = f"webhook-{time.time_ns()}-bad{i}@0-1-1.json"
        (output / SPOOL_DIRNAME / name).write_text("{not json")
    result = run_cli("resend", str(output), "--json", cwd=tmp_path)
    assert result.returncode == 1
    counts = json.loads(result.stdout)
    assert counts["delivered"] == 1
    assert counts["unreadable"] == 5 and counts["remaining"] == 5
    assert "5 spool file(s) cannot be read" in result.stderr
    assert "5 unreadable spool file(s)" in _one_error_line(result)
    text = run_cli("resend", str(output), cwd=tmp_path)
    assert "5 left in" in text.stdout and "5 unreadable" in text.stdout


def test_python_m_cli_runs_the_same_commands(tmp_path: Path, server) -> None:
    """``python -m codecarbon_callbacks.cli`` is the console script, as
    ``-m codecarbon_callbacks``."""
    output = tmp_path / "runs"
    _spool(output, "webhook", server.url + "/hook", 2)
    result = subprocess.run(
        [sys.executable, "-m", "codecarbon_callbacks.cli", "resend", str(output), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["delivered"] == 2 and len(server.accepted()) == 2
    version = subprocess.run(
        [sys.executable, "-m", "codecarbon_callbacks.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.stdout == run_cli("--version", cwd=tmp_path).stdout != ""

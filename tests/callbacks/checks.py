"""Checks shared by the callback tests: the CSV rows, the tiling of windows, BoAmps reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def read_runs(directory: Path) -> Any:
    import pandas as pd

    return pd.read_csv(directory / "emissions.csv")


def read_windows(directory: Path) -> Any:
    import pandas as pd

    return pd.read_csv(directory / "emissions_windows.csv")


TILING_KINDS = ("epoch", "phase")


def check_tiling(windows: Any, run: Any, *, exact: bool = True, rel: float = 0.01) -> None:
    """The tiling windows (epochs and phases) of one run chain and sum to the run's energy.

    Each starts where the previous one ended (one meter snapshot). With ``exact`` (a tracker the
    session started), the first starts at the run's own first edge and the last ends at its
    final one, so they sum to the run. Else (a tracker given already running) time outside them
    is allowed before the first and after the last, and the energy they miss must fit in it.
    """
    from datetime import datetime

    tiles = windows[(windows["run_id"] == run["run_id"]) & windows["kind"].isin(TILING_KINDS)]
    starts = list(tiles["start_timestamp"])
    ends = list(tiles["end_timestamp"])
    assert starts[1:] == ends[:-1]  # no gap, no overlap
    metadata = json.loads(run["metadata"])
    run_start = datetime.fromisoformat(metadata["run_start_timestamp"])
    run_end = datetime.fromisoformat(run["timestamp"])
    head_s = (datetime.fromisoformat(starts[0]) - run_start).total_seconds()
    tail_s = (run_end - datetime.fromisoformat(ends[-1])).total_seconds()
    missing = run["energy_consumed"] - tiles["energy_consumed"].sum()
    if exact:
        assert head_s == 0 and tail_s == 0, (head_s, tail_s)
        assert abs(missing) <= 1e-9 * run["energy_consumed"], (missing, run["energy_consumed"])
        return
    assert 0 <= head_s < 0.05 and 0 <= tail_s < 0.1, (head_s, tail_s)
    assert missing >= -1e-15
    allowed = max(rel, 3 * (head_s + tail_s) / run["duration"]) if run["duration"] > 0 else rel
    assert missing <= run["energy_consumed"] * allowed, (
        missing,
        run["energy_consumed"],
        head_s,
        tail_s,
    )


def check_epoch_metrics(rows: list[dict[str, float]], epochs: int) -> None:
    """Per-epoch figures: positive energies, totals that only grow."""
    assert len(rows) == epochs
    totals = [r["total_energy_kwh"] for r in rows]
    assert all(b > a for a, b in zip(totals, totals[1:])), totals
    for r in rows:
        assert r["epoch_energy_kwh"] > 0
        assert r["epoch_emissions_kg"] > 0
        assert r["epoch_duration_s"] > 0
        assert r["epoch_power_w"] > 0
        assert r["epoch_energy_kwh"] == pytest.approx(
            r["epoch_cpu_energy_kwh"] + r["epoch_gpu_energy_kwh"] + r["epoch_ram_energy_kwh"],
            rel=1e-9,
        )
        assert r["total_energy_kwh"] >= r["epoch_energy_kwh"]


def boamps_report(directory: Path, run_id: str) -> dict[str, Any]:
    return json.loads((directory / f"boamps_report_{run_id}.json").read_text())


def check_closing_line(stdout: str, directory: Path, *, status: str = "completed") -> None:
    """The one line a fit ends with: the last run's energy and emissions, and its report files."""
    import os

    lines = [line for line in stdout.splitlines() if line.startswith("codecarbon-callbacks:")]
    assert len(lines) == 1, lines
    run = read_runs(directory).iloc[-1]
    assert lines[0].startswith(f"codecarbon-callbacks: fit {status}: "), lines[0]
    assert f" {run['energy_consumed']:.6g} kWh, {run['emissions']:.6g} kg CO2eq; " in lines[0]
    assert lines[0].endswith(
        f"reports in {os.path.abspath(directory)}: emissions.csv, emissions_windows.csv"
    ), lines[0]


#: one secret of each kind, each unique, so that finding one anywhere says which leaked
SECRETS = {
    "api_key": "SECRET-api-key-0001",
    "electricitymaps_api_token": "SECRET-electricitymaps-token-0002",
    "webhook password": "SECRET-webhook-password-0003",
    "webhook token": "SECRET-webhook-token-0004",
    "api_endpoint password": "SECRET-api-password-0005",
    "prometheus password": "SECRET-prometheus-password-0006",
    "prometheus token": "SECRET-prometheus-token-0007",
}


def closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def secret_tracker_kwargs(output_dir: Path) -> dict[str, Any]:
    """Tracker parameters with every secret given as an argument at once, and every output that
    sends something pointing at a closed loopback port (so each one fails, logs and spools)."""
    port = closed_port()
    return {
        "country_iso_code": "FRA",
        "output_dir": str(output_dir),
        "measure_power_secs": 0.1,
        "allow_multiple_runs": True,
        "log_level": "debug",
        "output_methods": ["csv", "api", "prometheus"],
        "experiment_id": "5b0fa12a-3dd7-45bb-9766-cc326314d9f1",
        "api_key": SECRETS["api_key"],
        "electricitymaps_api_token": SECRETS["electricitymaps_api_token"],
        "emissions_endpoint": (
            f"http://hook:{SECRETS['webhook password']}@127.0.0.1:{port}/hook"
            f"?token={SECRETS['webhook token']}"
        ),
        "api_endpoint": f"http://user:{SECRETS['api_endpoint password']}@127.0.0.1:{port}",
        "prometheus_url": (
            f"http://user:{SECRETS['prometheus password']}@127.0.0.1:{port}/"
            f"?token={SECRETS['prometheus token']}"
        ),
    }


def check_secrets_given(tracker: Any, kwargs: dict[str, Any]) -> None:
    """The tracker of a (resumed) run uses the secrets its callback was given."""
    for name in (
        "api_key",
        "electricitymaps_api_token",
        "emissions_endpoint",
        "api_endpoint",
        "prometheus_url",
    ):
        assert getattr(tracker.config, name) == kwargs[name], name


def check_no_secret(folders: list[Path], *texts: str) -> list[Path]:
    """No secret in any byte of any file under ``folders`` nor in ``texts`` (log lines, printed
    output, warnings). Returns the files searched, for the caller to check it saw them."""
    searched = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            searched.append(path)
            for what, secret in SECRETS.items():
                assert secret.encode() not in data, f"the {what} is in {path}"
    for text in texts:
        for what, secret in SECRETS.items():
            assert secret not in text, f"the {what} is in a log line or the output"
    return searched

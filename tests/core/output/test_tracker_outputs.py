"""End to end: the lead's tracker driving the outputs (constant-power components)."""

from __future__ import annotations

import csv
import json
import logging
import threading
import time
import uuid
from pathlib import Path

import pytest
from codecarbon_callbacks_core.output.spool import SPOOL_DIRNAME
from output_records import RecordingServer, constant_components, free_port

from codecarbon_callbacks import OfflineEmissionsTracker

EXPERIMENT = "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"
BOAMPS_TASK = {
    "taskStage": "training",
    "taskFamily": "image classification",
    "algorithms": [{"framework": "pytorch"}],
    "dataset": [{"dataUsage": "input", "dataType": "image"}],
}


def tracker(tmp_path, **kwargs):
    params = {
        "country_iso_code": "FRA",
        "output_dir": str(tmp_path),
        "force_carbon_intensity_g_co2e_kwh": 50.0,
        "components": constant_components(),
        "measure_power_secs": 60,
    }
    params.update(kwargs)
    return OfflineEmissionsTracker(**params)


def test_tracker_feeds_webhook_logger_boamps(tmp_path, caplog):
    server = RecordingServer().start()
    try:
        log = logging.getLogger("e2e.energy")
        t = tracker(
            tmp_path,
            output_methods=["csv", "logger", "boamps"],
            logging_logger=log,
            emissions_endpoint=server.url + "/hook",
            webhook_windows=True,
        )
        with caplog.at_level(logging.INFO, logger="e2e.energy"):
            t.start()
            t.update_metadata({"boamps_task": BOAMPS_TASK, "framework": "pytorch"})
            for epoch in range(2):
                w = t.open_window("epoch", f"epoch {epoch}", epoch=epoch, phase="train")
                time.sleep(0.2)
                t.close_window(w)
            t.stop()
        bodies = [r["body"] for r in server.requests]
        kinds = [(b["record_type"], b.get("kind"), b.get("epoch")) for b in bodies]
        assert ("window", "epoch", 0) in kinds and ("window", "epoch", 1) in kinds
        runs = [b for b in bodies if b["record_type"] == "run"]
        assert len(runs) == 1 and runs[0]["run_id"] == t.run_id
        assert runs[0]["energy_consumed"] == pytest.approx(t.final_emissions_data.energy_consumed)
        lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "e2e.energy"]
        assert [ln["record_type"] for ln in lines].count("window") >= 2
        assert lines[-1]["record_type"] == "run"
        report = json.loads((tmp_path / f"boamps_report_{t.run_id}.json").read_text())
        assert report["task"]["taskFamily"] == "image classification"
        assert report["measures"][0]["powerConsumption"] == pytest.approx(
            t.final_emissions_data.energy_consumed
        )
        assert report["header"]["reportStatus"] == "final"
    finally:
        server.stop()


def test_boamps_status_follows_the_run_despite_the_context_file(tmp_path):
    """examples/boamps_context.json has reportStatus "final": draft at a flush, other on failure."""
    from codecarbon_callbacks import BoAmpsOutput

    context = Path(__file__).resolve().parents[3] / "examples" / "boamps_context.json"
    boamps = BoAmpsOutput.from_file(context, output_dir=tmp_path)
    t = tracker(tmp_path, output_methods=[], output_handlers=[boamps])
    report_path = tmp_path / f"boamps_report_{t.run_id}.json"
    with pytest.raises(RuntimeError, match="training broke"), t:
        t.flush()
        assert json.loads(report_path.read_text())["header"]["reportStatus"] == "draft"
        raise RuntimeError("training broke")
    report = json.loads(report_path.read_text())
    assert t.final_emissions_data.status == "failed"
    assert report["header"]["reportStatus"] == "other"
    assert "failed" in report["task"]["taskDescription"]


def test_stop_returns_fast_when_webhook_hangs(tmp_path):
    server = RecordingServer().start()
    server.mode, server.hang_s = "hang", 60.0
    try:
        t = tracker(tmp_path, output_methods=[], emissions_endpoint=server.url)
        t.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        t.stop()
        assert time.monotonic() - t0 < 5.0
        spool = tmp_path / SPOOL_DIRNAME
        assert len([p for p in spool.iterdir() if p.suffix == ".json"]) == 1
    finally:
        server.stop()


def api_server():
    """A loopback CodeCarbon API: (server, runs by id, emission bodies); 422 on a duration < 1 s."""
    runs: dict[str, dict] = {}
    emissions: list[dict] = []

    def api(path, headers, body):
        if headers.get("x-api-token") != "cpt_e2e-token-1234":
            return 403, {"detail": "Missing project token"}
        if path == "/runs":
            run_id = str(uuid.uuid4())
            runs[run_id] = body
            return 201, {"id": run_id}
        if not isinstance(body["duration"], int) or body["duration"] < 1:
            return 422, {"detail": "duration"}
        emissions.append(body)
        return 201, "ok"

    server = RecordingServer().start()
    server.handler_hook = api
    return server, runs, emissions


def test_api_deltas_through_tracker_sum_to_the_run(tmp_path):
    server, runs, emissions = api_server()
    try:
        t = tracker(
            tmp_path,
            output_methods=["api"],
            api_endpoint=server.url,
            api_key="cpt_e2e-token-1234",
            experiment_id=EXPERIMENT,
        )
        t.start()
        time.sleep(1.1)
        t.flush()
        time.sleep(1.1)
        t.stop()
        assert len(runs) == 1 and len(emissions) == 2
        assert sum(e["energy_consumed"] for e in emissions) == pytest.approx(
            t.final_emissions_data.energy_consumed, rel=1e-9
        )
        assert all(e["run_id"] in runs for e in emissions)
    finally:
        server.stop()


def test_api_sub_second_flushes_through_tracker_sum_to_the_csv_duration(tmp_path):
    """10 flush() 0.3 s apart, then stop(): the API's durations sum to emissions.csv's."""
    server, runs, emissions = api_server()
    try:
        t = tracker(
            tmp_path,
            output_methods=["api", "csv"],
            api_endpoint=server.url,
            api_key="cpt_e2e-token-1234",
            experiment_id=EXPERIMENT,
        )
        t.start()
        for _ in range(10):
            time.sleep(0.3)
            t.flush()
        t.stop()
        with open(tmp_path / "emissions.csv", newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row["run_id"] == t.run_id]
        csv_duration_s = float(rows[-1]["duration"])
        assert csv_duration_s == pytest.approx(t.final_emissions_data.duration)
        assert len(runs) == 1 and emissions
        assert abs(sum(e["duration"] for e in emissions) - csv_duration_s) <= 1.0
        assert sum(e["energy_consumed"] for e in emissions) == pytest.approx(
            t.final_emissions_data.energy_consumed, rel=1e-9
        )
        assert sum(e["emissions_sum"] for e in emissions) == pytest.approx(
            t.final_emissions_data.emissions, rel=1e-9
        )
    finally:
        server.stop()


def test_secrets_never_written_or_logged(tmp_path, monkeypatch, caplog, capfire):
    api_key = "cpt_SECRET-api-key-0001"
    prom_password = "SECRET-prom-password-0002"
    logfire_token = "SECRET-logfire-token-0003"
    monkeypatch.setenv("PROMETHEUS_USERNAME", "someone")
    monkeypatch.setenv("PROMETHEUS_PASSWORD", prom_password)
    monkeypatch.setenv("LOGFIRE_TOKEN", logfire_token)  # logfire is configured (capfire): unused
    webhook_token = "SECRET-webhook-token-0004"
    down = free_port()
    hook = f"http://user:{webhook_token}x@127.0.0.1:{down}/hook?token={webhook_token}"
    with caplog.at_level(logging.DEBUG):
        t = tracker(
            tmp_path,
            output_methods=["csv", "logger", "boamps", "api", "prometheus", "logfire"],
            api_endpoint=f"http://127.0.0.1:{down}",
            api_key=api_key,
            experiment_id=EXPERIMENT,
            prometheus_url=f"127.0.0.1:{down}",
            emissions_endpoint=hook,
            webhook_windows=True,
        )
        t.start()
        w = t.open_window("epoch", "e", epoch=0)
        t.close_window(w)
        t.stop()
    written = []
    for path in Path(tmp_path).rglob("*"):
        if path.is_file():
            written.append(path.read_text(errors="replace"))
    assert any(SPOOL_DIRNAME in str(p) for p in Path(tmp_path).rglob("*.json"))  # spooled
    everything = "\n".join(written) + caplog.text
    for secret in (api_key, prom_password, logfire_token, webhook_token):
        assert secret not in everything, f"{secret} leaked"
    assert api_key not in repr(t.config)


def test_next_process_resends_what_a_finished_process_left(tmp_path):
    """Process A runs with the webhook down and exits; tracker B (same output_dir) delivers."""
    import subprocess
    import sys

    port = free_port()
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from output_records import constant_components
from codecarbon_callbacks import OfflineEmissionsTracker
t = OfflineEmissionsTracker(country_iso_code="FRA", output_dir={str(tmp_path)!r},
                            components=constant_components(), output_methods=[],
                            emissions_endpoint="http://127.0.0.1:{port}/hook")
t.start()
t.stop()
print(t.run_id)
"""
    first = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert first.returncode == 0, first.stderr
    run_a = first.stdout.strip().splitlines()[-1]
    assert len(list((tmp_path / SPOOL_DIRNAME).glob("webhook-*.json"))) == 1
    server = RecordingServer(port).start()
    try:
        t = tracker(tmp_path, output_methods=[], emissions_endpoint=f"{server.url}/hook")
        t.start()
        t.stop()
        run_ids = sorted(b["run_id"] for b in server.accepted())
        assert run_ids == sorted([run_a, t.run_id])
        assert list((tmp_path / SPOOL_DIRNAME).glob("webhook-*.json")) == []
    finally:
        server.stop()


def test_stop_bounded_when_every_network_output_hangs(tmp_path):
    """Webhook, API and Prometheus all hanging: stop() still returns within the shared window."""
    server = RecordingServer().start()
    server.mode, server.hang_s = "hang", 60.0
    try:
        t = tracker(
            tmp_path,
            output_methods=["api", "prometheus"],
            api_endpoint=server.url,
            api_key="cpt_k3y-abcdef",
            experiment_id=EXPERIMENT,
            prometheus_url=server.url,
            emissions_endpoint=server.url + "/hook",
        )
        t.start()
        t0 = time.monotonic()
        t.stop()
        elapsed = time.monotonic() - t0
        assert elapsed < 7.0, elapsed
        assert {r["path"].split("/")[1] for r in server.requests} >= {"hook", "runs", "metrics"}
    finally:
        server.stop()


# -- threads: none outlives its tracker; process-wide workers stay bounded -------------------------

#: process-wide workers: one sender, one edge-read pool (at most 8 readers); never one per tracker
PROCESS_WIDE = ("codecarbon-callbacks-sender", "codecarbon-callbacks-gpu-edge")
PROCESS_WIDE_MAX = 1 + 8


def _threads_after_trackers(tmp_path, count, ignore=()):
    """Run ``count`` trackers one after another with every output that works offline; after each
    stop(), the threads started since the first one and still alive, minus the test's servers."""
    server, _runs, _emissions = api_server()
    closed = free_port()
    before = set(threading.enumerate())
    left_after_each = []
    try:
        for n in range(count):
            t = tracker(
                tmp_path,
                output_methods=["csv", "logger", "boamps", "api", "prometheus"],
                logging_logger=logging.getLogger("threads.energy"),
                api_endpoint=server.url,
                api_key="cpt_e2e-token-1234",
                experiment_id=EXPERIMENT,
                emissions_endpoint=server.url + "/hook",
                webhook_windows=True,
                prometheus_url=f"http://127.0.0.1:{closed}",
                measure_power_secs=0.05,
                api_call_interval=1,
            )
            t.start()
            w = t.open_window("epoch", f"epoch {n}", epoch=0, phase="train")
            time.sleep(0.06)  # a live update or two
            t.close_window(w)
            t.stop(timeout_s=5)
            alive = [
                th
                for th in threading.enumerate()
                if th not in before
                and th.is_alive()
                and "process_request_thread" not in th.name  # the loopback server's own
                and not th.name.startswith(ignore or ("\0",))
            ]
            left_after_each.append((t.run_id, alive))
    finally:
        server.stop()
    return left_after_each


def test_fifty_trackers_leave_no_thread_of_their_own(tmp_path):
    """After each stop(), no thread of that tracker is alive; process-wide ones do not grow."""
    left = _threads_after_trackers(tmp_path, 50)
    for run_id, alive in left:
        own = [th.name for th in alive if run_id[:8] in th.name]
        assert own == [], f"run {run_id}: {own} still alive after stop()"
        others = [th.name for th in alive if not th.name.startswith(PROCESS_WIDE)]
        assert others == [], f"run {run_id}: threads of unknown owners alive: {others}"
        assert len(alive) <= PROCESS_WIDE_MAX
    counts = [len(alive) for _run_id, alive in left]
    assert max(counts[10:]) <= max(counts[:10])  # bounded: no growth with the number of trackers
    with open(tmp_path / "emissions.csv", newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 50


def test_trackers_leave_no_csv_writer_thread(tmp_path):
    """The CSV output's writer thread ends at exit() (it was one idle thread per tracker)."""
    left = _threads_after_trackers(tmp_path, 5)
    csv_writers = [
        [th.name for th in alive if th.name.startswith("codecarbon-callbacks-csv")]
        for _run_id, alive in left
    ]
    assert csv_writers == [[]] * 5

"""Shared helpers for the output tests: records built by hand, so no tracker is needed."""

from __future__ import annotations

import socket
import uuid
from typing import Any

from codecarbon_callbacks_core.records import EmissionsData, WindowRecord


def make_total(**overrides: Any) -> EmissionsData:
    """A plausible run total: 2 CPU-packages + 1 GPU box, energies in kWh."""
    run_id = overrides.pop("run_id", str(uuid.uuid4()))
    values: dict[str, Any] = {
        "timestamp": "2026-11-28T20:00:10+00:00",
        "project_name": "proj",
        "run_id": run_id,
        "experiment_id": "5b0fa12a-3dd7-45bb-9766-cc326314d9f1",
        "duration": 10.0,
        "emissions": 0.0002,
        "emissions_rate": 0.00002,
        "cpu_power": 40.0,
        "gpu_power": 250.0,
        "ram_power": 5.0,
        "cpu_energy": 0.0001,
        "gpu_energy": 0.0007,
        "ram_energy": 0.00001,
        "energy_consumed": 0.00081,
        "country_name": "France",
        "country_iso_code": "FRA",
        "os": "Linux-6.1-x86_64",
        "python_version": "3.11.7",
        "codecarbon_version": "3.3.2",
        "cpu_count": 16,
        "cpu_model": "AMD EPYC 7513 32-Core Processor",
        "gpu_count": 1,
        "gpu_model": "1 x NVIDIA H200",
        "ram_total_size": 128.0,
        "cpu_utilization_percent": 55.0,
        "gpu_utilization_percent": 90.0,
        "status": "completed",
        "cpu_method": "rapl",
        "gpu_method": "nvml_energy",
        "ram_method": "constant",
        "carbon_intensity_g_per_kwh": 56.0,
        "carbon_intensity_source": "table:country",
        "tracker_version": "0.1.0",
        "metadata": {
            "components": [
                {
                    "kind": "cpu",
                    "name": "package-0",
                    "model": "AMD EPYC 7513",
                    "method": "rapl",
                    "energy_kwh": 0.0001,
                    "failure": None,
                },
                {
                    "kind": "gpu",
                    "name": "gpu-0",
                    "model": "NVIDIA H200",
                    "method": "nvml_energy",
                    "energy_kwh": 0.0007,
                    "failure": None,
                },
                {
                    "kind": "ram",
                    "name": "ram",
                    "model": "",
                    "method": "constant",
                    "energy_kwh": 0.00001,
                    "failure": None,
                },
            ],
            "run_start_timestamp": "2026-11-28T20:00:00+00:00",
            "window_count": 0,
        },
    }
    values.update(overrides)
    return EmissionsData(**values)


def make_window(**overrides: Any) -> WindowRecord:
    total = make_total()
    values = total.to_dict()
    values.update(
        window_id=str(uuid.uuid4()),
        kind="epoch",
        name="epoch 0",
        epoch=0,
        phase="train",
        start_timestamp="2026-11-28T20:00:00+00:00",
        end_timestamp="2026-11-28T20:00:05+00:00",
    )
    values.update(overrides)
    return WindowRecord(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RecordingServer:
    """A real HTTP server on loopback that records JSON POSTs and can misbehave on demand.

    ``mode``: "ok" (answer ``status``), "error" (answer 500), "hang" (sleep ``hang_s`` before
    answering). ``stop()`` closes the port (connection refused); ``start()`` reopens it.
    """

    def __init__(self, port: int | None = None, status: int = 201) -> None:
        import threading

        self.port = port or free_port()
        self.status = status
        self.mode = "ok"
        self.hang_s = 60.0
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.handler_hook = None  # callable(path, headers, body) -> (status, body) | None
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecordingServer:
        import json
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                entry = {
                    "path": self.path,
                    "headers": dict(self.headers),
                    "body": body,
                    "mode": owner.mode,
                }
                with owner.lock:
                    owner.requests.append(entry)
                if owner.mode == "hang":
                    time.sleep(owner.hang_s)
                status, reply = owner.status, {"id": "ok"}
                if owner.mode == "error":
                    status, reply = 500, {"detail": "boom"}
                if owner.handler_hook is not None:
                    hooked = owner.handler_hook(self.path, dict(self.headers), body)
                    if hooked is not None:
                        status, reply = hooked
                data = json.dumps(reply).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass

            do_PUT = do_POST  # the Pushgateway protocol

        ThreadingHTTPServer.daemon_threads = True
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self) -> list[dict]:
        """Bodies of the requests answered with 2xx in "ok" mode."""
        with self.lock:
            return [
                r["body"] for r in self.requests if r["mode"] == "ok" and 200 <= self.status < 300
            ]


def constant_components(cpu_w: float = 50.0, gpu_w: float = 300.0, ram_w: float = 5.0):
    """Components with known constant power (the machine has no RAPL/GPU): exact energies."""
    from codecarbon_callbacks_core.hardware.base import Component, MeasurementMethod

    class Constant(Component):
        def __init__(self, kind, name, power_w, model):
            self.kind, self.name, self.model = kind, name, model
            self.method = MeasurementMethod.CONSTANT
            self.sample_interval_s = None
            self._power_w, self._t0 = power_w, None

        def start(self, now_s):
            self._t0 = now_s

        def sample(self, now_s):
            pass

        def energy_j(self, now_s):
            return self._power_w * max(0.0, now_s - (self._t0 or now_s))

        def power_w(self):
            return self._power_w

    return [
        Constant("cpu", "cpu:package-0", cpu_w, "Intel Xeon Test"),
        Constant("gpu", "gpu:0", gpu_w, "NVIDIA Test"),
        Constant("ram", "ram", ram_w, ""),
    ]


def orphan_spool(output_dir) -> int:
    """Make every spool entry look owned by a dead process (as after a crash); returns count."""
    from pathlib import Path

    from codecarbon_callbacks_core.output.spool import SPOOL_DIRNAME

    count = 0
    for path in (Path(output_dir) / SPOOL_DIRNAME).glob("*.json"):
        if "@" not in path.name:
            continue
        base, owner = path.name[: -len(".json")].rsplit("@", 1)
        host = owner.split("-")[0]
        path.rename(path.with_name(f"{base}@{host}-7ffffffe-1.json"))
        count += 1
    return count

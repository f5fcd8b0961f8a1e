from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import time
import urllib.request
import uuid

import pytest
from codecarbon_callbacks_core.output.prometheus import PrometheusOutput
from codecarbon_callbacks_core.output.sender import Sender
from output_records import free_port, make_total

PUSHGATEWAY = shutil.which("prometheus-pushgateway") or "/usr/bin/prometheus-pushgateway"

USER = "trainer"
PASSWORD = "pushgateway-p4ssw0rd-xyz"


def _bcrypt_hash(password: str) -> str:
    try:
        import bcrypt

        return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    except ImportError:  # libxcrypt through the (deprecated) crypt module
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
        if not hashed or not hashed.startswith("$2"):
            pytest.skip("no bcrypt implementation (pip install bcrypt)")
        return hashed


class Gateway:
    def __init__(self, tmp_path, auth: bool = False, port: int | None = None) -> None:
        # only the tests that start a gateway need the binary; the others run without it
        if not os.path.exists(PUSHGATEWAY):
            pytest.skip("prometheus-pushgateway binary not installed")
        self.port = port or free_port()
        self.url = f"127.0.0.1:{self.port}"
        # Debian's build persists to /var/lib/prometheus by default: keep each test's own state
        args = [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{self.port}", "--persistence.file="]
        self.auth = auth
        if auth:
            config = tmp_path / "web.yml"
            config.write_text(f"basic_auth_users:\n  {USER}: '{_bcrypt_hash(PASSWORD)}'\n")
            args.append(f"--web.config.file={config}")
        self.log = open(tmp_path / f"pushgateway-{time.monotonic_ns()}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.get("/-/ready")
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("pushgateway did not start")

    def get(self, path: str):
        request = urllib.request.Request(f"http://{self.url}{path}")
        if self.auth:
            token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read()

    def groups(self) -> list[dict]:
        return json.loads(self.get("/api/v1/metrics"))["data"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def series(group: dict, name: str) -> list[tuple[dict, float]]:
    family = group.get(name)
    if family is None:
        return []
    return [(m["labels"], float(m["value"])) for m in family["metrics"]]


@pytest.fixture
def sender():
    return Sender(backoff_initial_s=0.05, backoff_max_s=0.2)


def test_push_latest_totals_with_labels_units_and_help(tmp_path, sender):
    gateway = Gateway(tmp_path)
    try:
        out = PrometheusOutput(gateway.url, sender=sender)
        run_id = str(uuid.uuid4())
        first = make_total(
            run_id=run_id,
            energy_consumed=0.5,
            cpu_energy=0.1,
            gpu_energy=0.35,
            ram_energy=0.05,
            emissions=0.02,
            duration=60.0,
            gpu_power=300.0,
            metadata={
                "framework": "lightning",
                "boamps_task": {"taskFamily": "nlp"},
                "components": [],
            },
        )
        out.live_out(first, first)
        second = make_total(**{**first.to_dict(), "energy_consumed": 0.75, "duration": 90.0})
        out.out(second, second)
        out.exit()
        [group] = gateway.groups()
        assert group["labels"] == {"job": "codecarbon", "run_id": run_id}
        [(labels, value)] = series(group, "codecarbon_energy_consumed_kwh_total")
        assert value == pytest.approx(0.75)  # the latest totals, not a sum of pushes
        assert labels["project_name"] == "proj" and labels["run_id"] == run_id
        assert labels["experiment_id"] == first.experiment_id
        assert labels["framework"] == "lightning" and labels["task_family"] == "nlp"
        assert group["codecarbon_energy_consumed_kwh_total"]["type"] == "COUNTER"
        assert "kWh" in group["codecarbon_energy_consumed_kwh_total"]["help"]
        per_component = {
            lab["component"]: v for lab, v in series(group, "codecarbon_component_energy_kwh_total")
        }
        assert per_component == pytest.approx({"cpu": 0.1, "gpu": 0.35, "ram": 0.05})
        power = {
            lab["component"]: v for lab, v in series(group, "codecarbon_component_power_watts")
        }
        assert (
            power["gpu"] == 300.0 and group["codecarbon_component_power_watts"]["type"] == "GAUGE"
        )
        assert series(group, "codecarbon_run_duration_seconds")[0][1] == 90.0
        assert series(group, "codecarbon_emissions_kg_total")[0][1] == pytest.approx(0.02)
        [(info, one)] = series(group, "codecarbon_run_info")
        assert one == 1 and info["cpu_method"] == "rapl" and info["status"] == "completed"
        # one group per run: a second run does not overwrite the first
        other = make_total()
        out2 = PrometheusOutput(gateway.url, sender=sender)
        out2.out(other, other)
        out2.exit()
        assert len(gateway.groups()) == 2
    finally:
        gateway.stop()


def test_basic_auth_from_environment_and_delete_on_exit(tmp_path, sender, monkeypatch, caplog):
    gateway = Gateway(tmp_path, auth=True)
    try:
        total = make_total()
        monkeypatch.delenv("PROMETHEUS_USERNAME", raising=False)
        monkeypatch.delenv("PROMETHEUS_PASSWORD", raising=False)
        refused = PrometheusOutput(gateway.url, sender=sender, exit_timeout_s=1.0)
        with caplog.at_level(logging.DEBUG):
            refused.out(total, total)
            refused.exit()
        assert gateway.groups() == []
        assert "401" in caplog.text
        monkeypatch.setenv("PROMETHEUS_USERNAME", USER)
        monkeypatch.setenv("PROMETHEUS_PASSWORD", PASSWORD)
        out = PrometheusOutput(gateway.url, sender=sender)
        out.out(total, total)
        sender.drain(out, 5)
        assert [g["labels"]["run_id"] for g in gateway.groups()] == [total.run_id]
        out.delete_on_exit = True
        out.exit()
        assert gateway.groups() == []
        assert PASSWORD not in caplog.text
    finally:
        gateway.stop()


def test_gateway_down_never_raises_and_exit_is_bounded(tmp_path, sender):
    out = PrometheusOutput(f"127.0.0.1:{free_port()}", sender=sender, exit_timeout_s=0.5)
    total = make_total()
    for _ in range(20):
        out.live_out(total, total)  # coalesced: only the latest waits
    assert sender.pending(out) <= 2
    t0 = time.monotonic()
    out.exit()
    assert time.monotonic() - t0 < 2.0


def test_failed_push_says_it_pushes_the_latest_totals_again_not_spool(sender, caplog):
    """A refused port: the warning must not talk of a spool; Prometheus pushes its totals again."""
    port = free_port()
    out = PrometheusOutput(f"127.0.0.1:{port}", sender=sender, exit_timeout_s=0.5)
    total = make_total()
    with caplog.at_level(logging.DEBUG, logger="codecarbon_callbacks_core"):
        out.live_out(total, total)
        out.exit()
    failed = [
        r.getMessage()
        for r in caplog.records
        if "could not deliver" in r.getMessage() and f":{port}" in r.getMessage()
    ]
    assert failed, caplog.text
    for message in failed:
        assert "spool" not in message.replace("not spooled", "")
        assert "latest totals are pushed again" in message


def test_gateway_back_gets_the_latest_totals_again(tmp_path, sender):
    gateway = Gateway(tmp_path)
    port = gateway.port
    gateway.stop()
    out = PrometheusOutput(f"127.0.0.1:{port}", sender=sender, exit_timeout_s=5)
    run_id = str(uuid.uuid4())
    out.live_out(make_total(run_id=run_id, energy_consumed=1.0), None)
    time.sleep(0.3)
    out.live_out(make_total(run_id=run_id, energy_consumed=2.0), None)
    # the gateway comes back on the same port: the next push carries the latest totals
    gateway = Gateway(tmp_path, port=port)
    try:
        out.exit()
        [group] = gateway.groups()
        assert series(group, "codecarbon_energy_consumed_kwh_total")[0][1] == 2.0
    finally:
        gateway.stop()


def test_own_registry_never_the_global_one(tmp_path, sender):
    from prometheus_client import REGISTRY

    before = set(REGISTRY._names_to_collectors)
    out = PrometheusOutput("127.0.0.1:9", sender=sender, exit_timeout_s=0.1)
    out.out(make_total(), make_total())
    out.exit()
    assert set(REGISTRY._names_to_collectors) == before
    assert not any(n.startswith("codecarbon") for n in REGISTRY._names_to_collectors)


def test_bad_url_is_clear():
    with pytest.raises(ValueError, match="prometheus_url"):
        PrometheusOutput("")


def test_two_runs_to_one_gateway_do_not_replace_each_other(tmp_path, sender):
    gateway = Gateway(tmp_path)
    try:
        a, b = (
            PrometheusOutput(gateway.url, sender=sender),
            PrometheusOutput(gateway.url, sender=sender),
        )
        ta, tb = make_total(energy_consumed=1.0), make_total(energy_consumed=2.0)
        a.live_out(ta, ta)
        b.live_out(tb, tb)  # queued right behind a's push: must not replace it
        a.exit()
        b.exit()
        values = {
            g["labels"]["run_id"]: series(g, "codecarbon_energy_consumed_kwh_total")[0][1]
            for g in gateway.groups()
        }
        assert values == {ta.run_id: 1.0, tb.run_id: 2.0}
    finally:
        gateway.stop()

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
from pathlib import Path

import pytest
from codecarbon_callbacks_core.output.prometheus import PrometheusOutput
from codecarbon_callbacks_core.output.sender import Sender
from output_records import constant_components, free_port, make_total

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
                "job": {"slurm_job_id": "4242", "slurm_array_task_id": "3", "k8s_pod": "t-0"},
            },
        )
        out.live_out(first, first)
        sender.drain(out, 5)  # the first push went out: the second carries only its own delta
        second = make_total(**{**first.to_dict(), "energy_consumed": 0.75, "duration": 90.0})
        out.out(second, second)
        out.exit()
        [group] = gateway.groups()
        assert group["labels"] == {"job": "codecarbon", "run_id": run_id}
        [(labels, value)] = series(group, "codecarbon_energy_joules_total")
        assert value == pytest.approx(0.75 * 3.6e6)  # the latest totals, not a sum of pushes
        assert labels["project_name"] == "proj" and labels["run_id"] == run_id
        assert labels["experiment_id"] == first.experiment_id
        assert "framework" not in labels  # descriptive labels live on codecarbon_run_info
        assert group["codecarbon_energy_joules_total"]["type"] == "COUNTER"
        assert "(J)" in group["codecarbon_energy_joules_total"]["help"]
        per_component = {
            c: series(group, f"codecarbon_{c}_energy_joules_total")[0][1]
            for c in ("cpu", "gpu", "ram")
        }
        assert per_component == pytest.approx({"cpu": 3.6e5, "gpu": 1.26e6, "ram": 1.8e5})
        assert series(group, "codecarbon_gpu_power_watts")[0][1] == 300.0
        assert group["codecarbon_gpu_power_watts"]["type"] == "GAUGE"
        assert series(group, "codecarbon_run_duration_seconds")[0][1] == 90.0
        assert series(group, "codecarbon_emissions_grams_total")[0][1] == pytest.approx(20.0)
        [(info, one)] = series(group, "codecarbon_run_info")
        assert one == 1 and info["cpu_method"] == "rapl" and info["status"] == "completed"
        assert info["framework"] == "lightning" and info["task_family"] == "nlp"
        # the job's identity, from metadata["job"]; the labels are there, empty, when absent
        assert (info["slurm_job_id"], info["slurm_array_task_id"]) == ("4242", "3")
        assert info["k8s_pod"] == "t-0" and info.get("torchelastic_run_id", "") == ""
        # CodeCarbon's counter holds the run's total in kWh, its gauges the delta
        [(cc_labels, cc_total)] = series(group, "codecarbon_energy_total")
        assert cc_total == pytest.approx(0.75) and cc_labels["cpu_model"].startswith("AMD")
        assert series(group, "codecarbon_duration")[0][1] == 90.0  # the second delta given
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
        assert series(group, "codecarbon_energy_total")[0][1] == 2.0
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
            g["labels"]["run_id"]: series(g, "codecarbon_energy_total")[0][1]
            for g in gateway.groups()
        }
        assert values == {ta.run_id: 1.0, tb.run_id: 2.0}
    finally:
        gateway.stop()


def test_gauges_hold_every_delta_the_gateway_has_not_accepted(tmp_path, sender):
    """CodeCarbon's delta gauges: two updates pushed while the gateway is down are not lost."""
    gateway = Gateway(tmp_path)
    port = gateway.port
    gateway.stop()
    out = PrometheusOutput(f"127.0.0.1:{port}", sender=sender, exit_timeout_s=5)
    run_id = str(uuid.uuid4())
    t1 = make_total(run_id=run_id, energy_consumed=1.0, duration=10.0, emissions=0.1)
    t2 = make_total(run_id=run_id, energy_consumed=1.5, duration=15.0, emissions=0.15)
    out.live_out(t1, t1)
    time.sleep(0.2)
    out.live_out(t2, t2.compute_delta_emission(t1))
    gateway = Gateway(tmp_path, port=port)
    try:
        out.exit()
        [group] = gateway.groups()
        assert series(group, "codecarbon_energy_consumed")[0][1] == pytest.approx(1.5)
        assert series(group, "codecarbon_duration")[0][1] == pytest.approx(15.0)
        assert series(group, "codecarbon_emissions_rate")[0][1] == pytest.approx(0.01)
        t3 = make_total(run_id=run_id, energy_consumed=1.75, duration=20.0)
        out.out(t3, t3.compute_delta_emission(t2))
        sender.drain(out, 5)
        [group] = gateway.groups()  # accepted deltas are not pushed again
        assert series(group, "codecarbon_energy_consumed")[0][1] == pytest.approx(0.25)
        assert series(group, "codecarbon_energy_total")[0][1] == pytest.approx(1.75)
    finally:
        gateway.stop()


PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


class PrometheusServer:
    """A real Prometheus server on loopback scraping ``targets`` every second."""

    def __init__(self, tmp_path, targets: list[str]) -> None:
        if PROMETHEUS is None:
            pytest.skip("prometheus binary not installed (apt-get install prometheus)")
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: targets\n"
            "    honor_labels: true\n"
            f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
        )
        self.log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2)
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("prometheus did not start")

    def query(self, promql: str) -> list[dict]:
        from urllib.parse import quote

        url = f"http://127.0.0.1:{self.port}/api/v1/query?query={quote(promql)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())["data"]["result"]

    def wait_for(self, promql: str, count: int, timeout_s: float = 15) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(promql)
            if len(result) >= count or time.monotonic() > deadline:
                return result
            time.sleep(0.25)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def _codecarbon_record(ours):
    from codecarbon.output_methods.emissions_data import EmissionsData as CodeCarbonData

    names = CodeCarbonData.__dataclass_fields__
    return CodeCarbonData(**{k: v for k, v in ours.to_dict().items() if k in names})


def _by_name(result: list[dict]) -> dict[str, tuple[dict, float]]:
    by_name = {}
    for item in result:
        labels = dict(item["metric"])
        by_name[labels.pop("__name__")] = (labels, float(item["value"][1]))
    return by_name


def test_codecarbon_332_series_carry_over_through_a_real_prometheus(tmp_path, sender):
    """CodeCarbon 3.3.2 and this output push the same two updates; Prometheus scrapes both."""
    pytest.importorskip("codecarbon.output_methods.metrics.prometheus")
    from codecarbon import __version__ as codecarbon_version
    from codecarbon.output_methods.metrics.prometheus import PrometheusOutput as CodeCarbonOutput
    from codecarbon_callbacks_core.output.prometheus_metrics import CODECARBON_LABELS
    from codecarbon_callbacks_core.output.prometheus_scrape import close_endpoints

    assert codecarbon_version == "3.3.2"
    gateway = Gateway(tmp_path)
    project = f"parity-{uuid.uuid4().hex[:8]}"
    first = make_total(project_name=project, energy_consumed=0.5, duration=30.0, emissions=0.01)
    second = make_total(
        **{**first.to_dict(), "energy_consumed": 0.8, "duration": 50.0, "emissions": 0.018}
    )
    delta = second.compute_delta_emission(first)
    ours = PrometheusOutput(gateway.url, sender=sender, scrape_address="127.0.0.1:0")
    theirs = CodeCarbonOutput(f"http://{gateway.url}", job_name="codecarbon_332")
    for total, d in ((first, first), (second, delta)):
        ours.out(total, d)
        theirs.out(_codecarbon_record(total), _codecarbon_record(d))
    sender.drain(ours, 5)
    assert ours.endpoint is not None
    scrape = f"127.0.0.1:{ours.endpoint.port}"
    server = PrometheusServer(tmp_path, [gateway.url, scrape])
    try:
        # types and help texts as the Pushgateway received them
        groups = {g["labels"]["job"]: g for g in gateway.groups()}
        cc_group, our_group = groups["codecarbon_332"], groups["codecarbon"]
        cc_names = {n for n in cc_group if n.startswith("codecarbon_")} - {
            "codecarbon_energy_created"
        }
        assert len(cc_names) == 11
        for name in cc_names:
            assert our_group[name]["type"] == cc_group[name]["type"], name
            assert our_group[name]["help"] == cc_group[name]["help"], name
        # and as Prometheus stores them: same names, CodeCarbon's labels filled, same values
        theirs_q = f'{{__name__=~"codecarbon_.*",job="codecarbon_332",project_name="{project}"}}'
        ours_q = f'{{__name__=~"codecarbon_.*",job="codecarbon",run_id="{first.run_id}"}}'
        our_names = {n for n in our_group if n.startswith("codecarbon_")}
        cc = _by_name(server.wait_for(theirs_q, len(cc_names) + 1))  # + codecarbon_energy_created
        pushed = _by_name(server.wait_for(ours_q, len(our_names)))
        assert set(pushed) == our_names
        for name in cc_names:
            cc_labels, cc_value = cc[name]
            labels, value = pushed[name]
            assert value == pytest.approx(cc_value), name
            assert labels["project_name"] == cc_labels["project_name"] == project
            assert set(labels) == {*CODECARBON_LABELS, "job", "run_id"} - {
                "region",
                "cloud_provider",
                "cloud_region",
            }  # Prometheus drops empty labels; CodeCarbon 3.3.2 fills project_name only
            assert labels["country_iso_code"] == "FRA" and labels["gpu_count"] == "1"
        assert pushed["codecarbon_energy_consumed"][1] == pytest.approx(0.3)  # the delta
        assert pushed["codecarbon_energy_total"][1] == pytest.approx(0.8)  # the run's total
        assert pushed["codecarbon_energy_joules_total"][1] == pytest.approx(0.8 * 3.6e6)
        # the scrape endpoint serves the same series, with run_id as a label of its own
        scraped = _by_name(
            server.wait_for(f'{{__name__=~"codecarbon_.*",instance="{scrape}"}}', len(pushed))
        )
        skip = {"codecarbon_last_push_timestamp_seconds"}
        assert {n: v for n, (_, v) in scraped.items() if n not in skip} == pytest.approx(
            {n: v for n, (_, v) in pushed.items() if n not in skip and n in scraped}
        )
        assert set(pushed) == set(scraped)
        assert {labels["run_id"] for labels, _ in scraped.values()} == {first.run_id}
        # promtool's lint accepts the exposition as served
        if PROMTOOL is not None:
            exposition = urllib.request.urlopen(f"http://{scrape}/metrics", timeout=5).read()
            lint = subprocess.run(
                [PROMTOOL, "check", "metrics"], input=exposition, capture_output=True
            )
            assert lint.returncode == 0, lint.stdout + lint.stderr
    finally:
        server.stop()
        gateway.stop()
        close_endpoints()


def test_scrape_endpoint_without_pushgateway(sender):
    from codecarbon_callbacks_core.output.prometheus_scrape import close_endpoints

    out = PrometheusOutput(None, scrape_address="127.0.0.1:0", sender=sender, delete_on_exit=True)
    try:
        a, b = make_total(energy_consumed=1.0), make_total(energy_consumed=2.0)
        out.out(a, a)
        other = PrometheusOutput(None, scrape_address=f"127.0.0.1:{out.endpoint.port}")
        other.out(b, b)
        assert other.endpoint is out.endpoint  # one server per address in a process
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{out.endpoint.port}/metrics", timeout=5)
            .read()
            .decode()
        )
        lines = [line for line in text.splitlines() if line.startswith("codecarbon_energy_total{")]
        assert len(lines) == 2 and f'run_id="{a.run_id}"' in text and f'run_id="{b.run_id}"' in text
        assert text.count("# TYPE codecarbon_energy_total counter") == 1
        assert sender.pending(out) == 0  # nothing pushed
        out.exit()  # delete_on_exit: the run leaves the endpoint, the other one stays
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{out.endpoint.port}/metrics", timeout=5)
            .read()
            .decode()
        )
        assert a.run_id not in text and b.run_id in text
    finally:
        close_endpoints()


def test_scrape_port_taken_warns_and_never_raises(caplog):
    import socket

    from codecarbon_callbacks_core.output.prometheus_scrape import close_endpoints

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        out = PrometheusOutput(None, scrape_address=f"127.0.0.1:{port}")
        with caplog.at_level(logging.WARNING):
            out.out(make_total(), make_total())
        assert out.endpoint is None and "scrape endpoint" in caplog.text
    close_endpoints()
    with pytest.raises(ValueError, match="prometheus_scrape_address"):
        PrometheusOutput(None, scrape_address="localhost:http")
    with pytest.raises(ValueError, match="scrape_address"):
        PrometheusOutput(None)


def test_a_delta_arriving_while_a_push_is_in_flight_goes_with_the_next_push(sender):
    out = PrometheusOutput(f"127.0.0.1:{free_port()}", sender=sender, exit_timeout_s=0.2)
    t1 = make_total(energy_consumed=1.0, duration=10.0)
    t2 = make_total(run_id=t1.run_id, energy_consumed=1.5, duration=15.0, gpu_power=123.0)
    t3 = make_total(run_id=t1.run_id, energy_consumed=1.6, duration=16.0)
    out.live_out(t1, t1)
    version, in_flight = out.unpushed_delta()  # what a push took
    out.live_out(t2, t2.compute_delta_emission(t1))
    out.pushed(version, in_flight)  # ... and the gateway accepted
    _, left = out.unpushed_delta()
    assert left is not None
    assert (left.energy_consumed, left.duration) == pytest.approx((0.5, 5.0))
    assert left.gpu_power == 123.0  # the newest power, not a sum
    out.live_out(t3, t3.compute_delta_emission(t2))
    version, both = out.unpushed_delta()
    assert both is not None and both.energy_consumed == pytest.approx(0.6)
    out.pushed(version, both)
    assert out.unpushed_delta()[1] is None
    out.exit()


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_tracker_parameter_serves_the_run_for_scraping(tmp_path):
    """prometheus_scrape_address as a tracker parameter: the run's series over HTTP, no push."""
    from codecarbon_callbacks_core.output.prometheus_scrape import close_endpoints

    from codecarbon_callbacks import OfflineEmissionsTracker

    port = free_port()
    with pytest.warns(DeprecationWarning, match="save_to_prometheus"):  # CodeCarbon's flag
        tracker = OfflineEmissionsTracker(
            country_iso_code="FRA",
            output_dir=str(tmp_path),
            components=constant_components(),
            measure_power_secs=60,
            save_to_prometheus=True,
            prometheus_scrape_address=f"127.0.0.1:{port}",
        )
    try:
        assert tracker.config.prometheus_url is None  # no Pushgateway named: scrape only
        tracker.start()
        time.sleep(0.05)
        tracker.flush()
        text = _scrape(port)
        assert f'run_id="{tracker.run_id}"' in text
        running = [
            line for line in text.splitlines() if line.startswith("codecarbon_energy_total{")
        ]
        assert len(running) == 1 and float(running[0].rsplit(" ", 1)[1]) > 0
        tracker.stop()
        final = [
            line
            for line in _scrape(port).splitlines()
            if line.startswith("codecarbon_energy_total{")
        ]
        assert float(final[0].rsplit(" ", 1)[1]) >= float(running[0].rsplit(" ", 1)[1])
    finally:
        tracker.stop()
        close_endpoints()


def test_bad_scrape_address_from_the_environment_names_it(tmp_path, monkeypatch):
    from codecarbon_callbacks import ConfigError, OfflineEmissionsTracker

    monkeypatch.setenv("CODECARBON_PROMETHEUS_SCRAPE_ADDRESS", "localhost:http")
    with pytest.raises(ConfigError) as caught:
        OfflineEmissionsTracker(
            country_iso_code="FRA", output_dir=str(tmp_path), output_methods=["prometheus"]
        )
    message = str(caught.value)
    assert "prometheus_scrape_address" in message
    assert "environment variable CODECARBON_PROMETHEUS_SCRAPE_ADDRESS" in message


def test_the_scrape_endpoint_answers_from_construction_before_any_update():
    """Bound when the output is built (a tracker builds it at start()), not at the first
    update, which comes measure_power_secs x api_call_interval later (2 min by default)."""
    from codecarbon_callbacks_core.output.prometheus_scrape import close_endpoints

    try:
        out = PrometheusOutput(None, scrape_address="127.0.0.1:0")
        assert out.endpoint is not None and out.endpoint.port > 0
        url = f"http://127.0.0.1:{out.endpoint.port}/metrics"
        assert urllib.request.urlopen(url, timeout=5).status == 200
    finally:
        close_endpoints()


@pytest.mark.parametrize(
    ("project", "experiment", "job"),
    [("codecarbon", "base", "codecarbon_base"), ("my proj", "exp/1.a", "my_proj_exp_1_a")],
)
def test_a_tracker_pushes_to_codecarbons_job_name(tmp_path, project, experiment, job):
    """CodeCarbon 3.3.2's tracker pushes to job f"{project_name}_{experiment_name}" with
    characters outside [a-zA-Z0-9_-] made "_", so dashboards keep matching after the switch."""
    from codecarbon_callbacks_core.config import TrackerConfig
    from codecarbon_callbacks_core.output.registry import create_output

    config = TrackerConfig(
        output_dir=str(tmp_path), project_name=project, experiment_name=experiment
    )
    assert create_output("prometheus", config).job == job
    codecarbon_tracker = pytest.importorskip("codecarbon.emissions_tracker")
    source = Path(codecarbon_tracker.__file__).read_text(encoding="utf-8")
    assert 'f"{self._project_name}_{self._experiment_name}"' in source  # the rule we copy

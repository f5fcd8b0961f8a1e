from __future__ import annotations

import json
import time
import uuid
import warnings
from pathlib import Path

import pytest
from codecarbon_callbacks_core import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.output.api import CodeCarbonAPIOutput
from codecarbon_callbacks_core.output.fanout import OutputFanout
from codecarbon_callbacks_core.output.resend import resend_spool
from codecarbon_callbacks_core.output.sender import Sender
from codecarbon_callbacks_core.output.spool import SPOOL_DIRNAME, Spool
from codecarbon_callbacks_core.records import EmissionsData, totals_from_state
from output_records import RecordingServer, free_port, make_total, orphan_spool

TOKEN = "cpt_s3cr3t-project-token-123"
EXPERIMENT = "5b0fa12a-3dd7-45bb-9766-cc326314d9f1"


#: The body fields CodeCarbon's API client sends (codecarbon 3.3.2, ``core/schemas.py``
#: ``RunBase``/``EmissionBase``); checked against the reference copy of the request shapes below.
API_BODY_FIELDS = {
    "/runs": {
        "codecarbon_version",
        "cpu_count",
        "cpu_model",
        "experiment_id",
        "gpu_count",
        "gpu_model",
        "latitude",
        "longitude",
        "os",
        "provider",
        "python_version",
        "ram_total_size",
        "region",
        "timestamp",
        "tracking_mode",
    },
    "/emissions": {
        "cpu_energy",
        "cpu_power",
        "cpu_utilization_percent",
        "duration",
        "emissions_rate",
        "emissions_sum",
        "energy_consumed",
        "gpu_energy",
        "gpu_power",
        "gpu_utilization_percent",
        "ram_energy",
        "ram_power",
        "ram_utilization_percent",
        "run_id",
        "timestamp",
        "wue",
    },
}


@pytest.fixture(scope="module")
def shapes():
    return API_BODY_FIELDS


def test_api_body_fields_match_the_reference_request_shapes(reference_dir: Path) -> None:
    """Reference: the fake API's field sets are the ones the CodeCarbon client really sends."""
    data = json.loads(
        (reference_dir / "codecarbon-api" / "client-payloads.example.json").read_text()
    )
    assert set(data["POST /runs"]["body"]) == API_BODY_FIELDS["/runs"]
    assert set(data["POST /emissions"]["body"]) == API_BODY_FIELDS["/emissions"]


class FakeApi(RecordingServer):
    """A loopback CodeCarbon API that checks token, paths and body shapes like the server."""

    def __init__(self, shapes, port=None):
        super().__init__(port)
        self.shapes = shapes
        self.runs: dict[str, dict] = {}
        self.emissions: list[dict] = []
        self.problems: list[str] = []
        self.handler_hook = self.handle

    def handle(self, path, headers, body):
        if self.mode != "ok":
            return None
        if headers.get("x-api-token") != TOKEN:
            self.problems.append(f"bad token on {path}")
            return 403, {"detail": "Missing project token"}
        expected = self.shapes.get(path)
        if expected is None:
            self.problems.append(f"unknown path {path}")
            return 404, {"detail": "not found"}
        if set(body) != expected:
            self.problems.append(f"{path} keys differ: {set(body) ^ expected}")
            return 422, {"detail": "shape"}
        if path == "/runs":
            uuid.UUID(body["experiment_id"])
            run_id = str(uuid.uuid4())
            self.runs[run_id] = body
            return 201, {"id": run_id}
        if body["run_id"] not in self.runs:
            self.problems.append("emission for unknown run")
            return 404, {"detail": "run"}
        if not isinstance(body["duration"], int) or body["duration"] <= 0:
            self.problems.append(f"bad duration {body['duration']!r}")
            return 422, {"detail": "duration"}
        if min(body[k] for k in ("cpu_energy", "gpu_energy", "ram_energy", "energy_consumed")) < 0:
            self.problems.append("negative energy")
            return 422, {"detail": "energy"}
        self.emissions.append(body)
        return 201, str(uuid.uuid4())


@pytest.fixture
def sender():
    return Sender(backoff_initial_s=0.05, backoff_max_s=0.2)


def fed(output, resumed_from: EmissionsData | None = None) -> OutputFanout:
    """The tracker's fan-out around one output: it hands the output its own deltas."""
    fanout = OutputFanout([output])
    fanout.begin_run("", resumed_from=resumed_from)
    return fanout


def totals(run_id, steps, status="completed"):
    """Cumulative totals of one run at the given durations (1 W CPU-equivalent per second)."""
    return [
        make_total(
            run_id=run_id,
            status=status,
            duration=d,
            cpu_energy=d * 1e-6,
            gpu_energy=d * 2e-6,
            ram_energy=d * 1e-7,
            energy_consumed=d * 3.1e-6,
            emissions=d * 1e-7,
        )
        for d in steps
    ]


def test_run_created_lazily_then_deltas_sum_to_the_total(tmp_path, shapes, sender):
    api = FakeApi(shapes).start()
    try:
        out = CodeCarbonAPIOutput(api.url, EXPERIMENT, TOKEN, output_dir=tmp_path, sender=sender)
        assert api.requests == []  # nothing at construction
        run_id = str(uuid.uuid4())
        seq = totals(run_id, [5.2, 10.4, 10.45, 20.0])
        feed = fed(out)
        feed.live_out(seq[0])
        feed.live_out(seq[1])
        feed.live_out(seq[2])  # 0.05 s later: deferred, it comes back in the next delta
        feed.out(seq[3])
        out.exit()
        assert api.problems == []
        assert len(api.runs) == 1
        [api_run_id] = api.runs
        assert out.api_run_id == api_run_id
        assert [e["run_id"] for e in api.emissions] == [api_run_id] * 3
        assert sum(e["energy_consumed"] for e in api.emissions) == pytest.approx(20.0 * 3.1e-6)
        assert sum(e["duration"] for e in api.emissions) == 20
        assert api.runs[api_run_id]["experiment_id"] == EXPERIMENT
        # later records carry the API run id; our run_id stays ours
        later = totals(run_id, [25.0])[0]
        feed.live_out(later)
        assert later.metadata["api_run_id"] == api_run_id and later.run_id == run_id
        out.exit()
    finally:
        api.stop()


def test_sub_second_flushes_are_carried_and_stop_settles_the_duration(tmp_path, shapes, sender):
    """10 flush() 0.3 s apart then stop(): whole seconds posted, their sum = the run's duration.

    flush() and stop() both reach ``out``; the totals' status tells them apart (``running``).
    """
    api = FakeApi(shapes).start()
    try:
        out = CodeCarbonAPIOutput(api.url, EXPERIMENT, TOKEN, output_dir=tmp_path, sender=sender)
        run_id = str(uuid.uuid4())
        feed = fed(out)
        flushes = totals(run_id, [round(0.3 * i, 1) for i in range(1, 11)], status="running")
        feed.out(flushes[0])  # 0.3 s: deferred, nothing posted yet
        assert out.flush(5.0) and api.emissions == []
        for total in flushes[1:]:
            feed.out(total)
        [final] = totals(run_id, [3.1], status="completed")
        feed.out(final)
        out.exit()
        assert api.problems == []
        durations = [e["duration"] for e in api.emissions]
        assert all(d >= 1 for d in durations)
        assert abs(sum(durations) - 3.1) <= 1.0, durations
        assert sum(e["energy_consumed"] for e in api.emissions) == pytest.approx(3.1 * 3.1e-6)
        assert sum(e["emissions_sum"] for e in api.emissions) == pytest.approx(3.1e-7)
        # each delta's emissions over its real duration (1e-7 kg/s throughout), not the rounded one
        assert [e["emissions_rate"] for e in api.emissions] == pytest.approx(
            [1e-7] * len(api.emissions)
        )
    finally:
        api.stop()


def test_stop_posts_a_sub_second_remainder_as_one_second(tmp_path, shapes, sender):
    api = FakeApi(shapes).start()
    try:
        out = CodeCarbonAPIOutput(api.url, EXPERIMENT, TOKEN, output_dir=tmp_path, sender=sender)
        run_id = str(uuid.uuid4())
        feed = fed(out)
        feed.live_out(totals(run_id, [0.4], status="running")[0])  # deferred
        feed.out(totals(run_id, [0.7], status="completed")[0])
        out.exit()
        assert api.problems == []
        [emission] = api.emissions
        assert emission["duration"] == 1
        assert emission["energy_consumed"] == pytest.approx(0.7 * 3.1e-6)
        assert emission["emissions_rate"] == pytest.approx(1e-7)  # 0.7e-7 kg over 0.7 s
        # a stop with nothing left posts nothing more
        feed.out(totals(run_id, [0.7], status="completed")[0])
        out.exit()
        assert len(api.emissions) == 1
    finally:
        api.stop()


def test_resumed_run_keeps_api_run_and_does_not_double_count(tmp_path, shapes, sender):
    api = FakeApi(shapes).start()
    try:
        run_id = str(uuid.uuid4())
        first = CodeCarbonAPIOutput(api.url, EXPERIMENT, TOKEN, output_dir=tmp_path, sender=sender)
        a = totals(run_id, [10.0])[0]
        fed(first).out(a)
        first.exit()
        second = CodeCarbonAPIOutput(api.url, EXPERIMENT, TOKEN, output_dir=tmp_path, sender=sender)
        b = totals(run_id, [30.0])[0]  # the resumed tracker's totals include what it resumed from
        fed(second, resumed_from=a).out(b)
        second.exit()
        assert len(api.runs) == 1 and api.problems == []
        assert sum(e["energy_consumed"] for e in api.emissions) == pytest.approx(30 * 3.1e-6)
    finally:
        api.stop()


def test_resumed_elsewhere_posts_only_the_new_part(tmp_path, shapes, sender):
    """A resume in another output_dir (no api_runs.json): what it resumed from is not re-posted."""
    api = FakeApi(shapes).start()
    try:
        out = CodeCarbonAPIOutput(api.url, EXPERIMENT, TOKEN, output_dir=tmp_path, sender=sender)
        t = totals(str(uuid.uuid4()), [30.0])[0]
        state = {
            "cpu_energy_kwh": 10e-6,
            "gpu_energy_kwh": 20e-6,
            "ram_energy_kwh": 1e-6,
            "emissions_kg": 1e-6,
            "duration_s": 10.0,
        }
        fed(out, resumed_from=totals_from_state(state)).out(t)
        out.exit()
        assert api.problems == []
        [emission] = api.emissions
        assert emission["duration"] == 20
        assert emission["energy_consumed"] == pytest.approx(30 * 3.1e-6 - 31e-6)
    finally:
        api.stop()


def test_down_then_back_from_spool_without_token_on_disk(tmp_path, shapes, sender):
    port = free_port()
    out = CodeCarbonAPIOutput(
        f"http://127.0.0.1:{port}",
        EXPERIMENT,
        TOKEN,
        output_dir=tmp_path,
        sender=sender,
        exit_timeout_s=0.3,
    )
    run_id = str(uuid.uuid4())
    feed = fed(out)
    for t in totals(run_id, [10.0, 20.0]):
        feed.live_out(t)
    out.exit()
    sender.forget(out)  # as if the process had ended...
    orphan_spool(tmp_path)  # ... leaving its entries without a live owner
    spool_dir = tmp_path / SPOOL_DIRNAME
    stored = "".join(p.read_text() for p in spool_dir.iterdir())
    assert TOKEN not in stored and "x-api-token" not in stored
    assert len(Spool(tmp_path).entries("api")) == 2
    api = FakeApi(shapes, port).start()
    try:
        again = CodeCarbonAPIOutput(
            f"http://127.0.0.1:{port}", EXPERIMENT, TOKEN, output_dir=tmp_path, sender=sender
        )
        t = totals(run_id, [30.0])[0]
        fed(again, resumed_from=totals(run_id, [20.0])[0]).out(t)  # the run resumed at 20 s
        again.exit()
        assert api.problems == []
        assert len(api.runs) == 1
        assert sum(e["duration"] for e in api.emissions) == 30
        assert Spool(tmp_path).entries("api") == []
    finally:
        api.stop()


def test_timeout_after_send_is_kept_uncertain_not_retried(tmp_path, shapes, sender):
    api = FakeApi(shapes).start()
    try:
        out = CodeCarbonAPIOutput(
            api.url,
            EXPERIMENT,
            TOKEN,
            output_dir=tmp_path,
            sender=sender,
            timeout_s=0.3,
            exit_timeout_s=2.0,
        )
        run_id = str(uuid.uuid4())
        t = totals(run_id, [10.0])[0]
        feed = fed(out)
        feed.out(t)  # creates the run
        out.exit()
        api.mode = "hang"
        api.hang_s = 1.0
        t2 = totals(run_id, [20.0])[0]
        feed.out(t2)
        out.exit()
        time.sleep(1.2)
        hung = [r for r in api.requests if r["mode"] == "hang"]
        assert len(hung) == 1  # sent once, never retried automatically
        [entry] = Spool(tmp_path).entries("api")
        assert entry.uncertain and "Timeout" in entry.last_error
        assert TOKEN not in json.dumps(entry.to_json())
        api.mode = "ok"
        sender.forget(out)
        assert resend_spool(tmp_path, api_endpoint=api.url, api_key=TOKEN)["delivered"] == 0
        counts = resend_spool(tmp_path, api_endpoint=api.url, api_key=TOKEN, include_uncertain=True)
        assert counts["delivered"] == 1 and api.problems == []
    finally:
        api.stop()


def test_bad_token_rejected_and_secret_never_logged(tmp_path, shapes, sender, caplog):
    api = FakeApi(shapes).start()
    try:
        wrong = "cpt_wrong-token-value-9876"
        out = CodeCarbonAPIOutput(api.url, EXPERIMENT, wrong, output_dir=tmp_path, sender=sender)
        t = totals(str(uuid.uuid4()), [10.0])[0]
        with caplog.at_level("DEBUG"):
            fed(out).out(t)
            out.exit()
        assert "HTTP 403" in caplog.text
        assert wrong not in caplog.text and wrong not in repr(out)
        assert Spool(tmp_path).entries("api") == []
    finally:
        api.stop()


def test_codecarbon_positional_order(tmp_path):
    out = CodeCarbonAPIOutput("http://x", EXPERIMENT, TOKEN, {"some": "conf"}, output_dir=tmp_path)
    assert out.experiment_id == EXPERIMENT and TOKEN not in repr(out)


def test_bad_arguments_are_clear(tmp_path):
    with pytest.raises(ValueError, match="experiment_id"):
        CodeCarbonAPIOutput("http://x", "", TOKEN, output_dir=tmp_path)
    with pytest.raises(ValueError, match="experiment_id must be a UUID"):
        CodeCarbonAPIOutput("http://x", "exp-1", TOKEN, output_dir=tmp_path)
    with pytest.raises(ValueError, match="endpoint_url"):
        CodeCarbonAPIOutput("api.codecarbon.io", EXPERIMENT, TOKEN, output_dir=tmp_path)


def test_503_is_retried_500_is_kept_uncertain(tmp_path, shapes, sender):
    api = FakeApi(shapes).start()
    answers = []
    normal = api.handle

    def flaky(path, headers, body):
        if path == "/emissions" and answers:
            return answers.pop(0), {"detail": "flaky"}
        return normal(path, headers, body)

    api.handler_hook = flaky
    try:
        out = CodeCarbonAPIOutput(api.url, EXPERIMENT, TOKEN, output_dir=tmp_path, sender=sender)
        run_id = str(uuid.uuid4())
        a, b = totals(run_id, [10.0, 20.0])
        answers[:] = [503, 503]  # "not processed": retried until it goes through
        feed = fed(out)
        feed.out(a)
        assert wait_for(lambda: len(api.emissions) == 1)
        answers[:] = [500]  # may have been stored: kept, marked, not re-sent
        feed.out(b)
        out.exit()
        time.sleep(0.3)
        assert len(api.emissions) == 1
        [entry] = Spool(tmp_path).entries("api")
        assert entry.uncertain and "HTTP 500" in entry.last_error
    finally:
        api.stop()


def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_resend_spool_403_keeps_records_uncertain_mark_included(tmp_path, shapes, sender, caplog):
    """A wrong or missing API key gets 403: every record is kept (an uncertain one stays
    uncertain), the key is never logged; the right key then delivers them."""
    port = free_port()
    out = CodeCarbonAPIOutput(
        f"http://127.0.0.1:{port}",
        EXPERIMENT,
        TOKEN,
        output_dir=tmp_path,
        sender=sender,
        exit_timeout_s=0.3,
    )
    run_id = str(uuid.uuid4())
    feed = fed(out)
    for t in totals(run_id, [10.0, 20.0, 30.0]):
        feed.live_out(t)
    out.exit()
    sender.forget(out)
    orphan_spool(tmp_path)
    spool = Spool(tmp_path)
    first = spool.entries("api")[0]
    first.uncertain = True
    spool.update(first)
    api = FakeApi(shapes, port).start()
    wrong = "cpt_wrong-resend-token-555"
    try:
        with caplog.at_level("DEBUG"):
            counts = resend_spool(
                tmp_path, api_endpoint=api.url, api_key=wrong, include_uncertain=True
            )
        kept = Spool(tmp_path).entries("api")
        assert len(kept) == 3 and [e.uncertain for e in kept] == [True, False, False]
        assert counts["unauthorized"] == 3 and counts["rejected"] == 0
        assert len(api.requests) == 1  # POST /runs refused: the others are not tried
        assert "HTTP 403" in caplog.text and "api_key" in caplog.text
        assert wrong not in caplog.text
        counts = resend_spool(tmp_path, api_endpoint=api.url, api_key=TOKEN, include_uncertain=True)
        assert counts["delivered"] == 3 and api.problems == ["bad token on /runs"]
        assert sum(e["duration"] for e in api.emissions) == 30
        assert Spool(tmp_path).entries("api") == []
    finally:
        api.stop()


def test_deltas_left_in_the_spool_at_exit_reach_the_user_once(tmp_path, sender):
    port = free_port()  # nothing listens: every delta stays in the spool

    def run(folder):
        out = CodeCarbonAPIOutput(
            f"http://127.0.0.1:{port}",
            EXPERIMENT,
            TOKEN,
            output_dir=folder,
            sender=sender,
            exit_timeout_s=0.2,
        )
        fed(out).out(totals(str(uuid.uuid4()), [5.0])[0])
        out.exit()
        sender.forget(out)
        return folder

    with pytest.warns(CodeCarbonCallbacksWarning, match="not delivered at exit") as first:
        run(tmp_path / "a")
    [message] = [str(w.message) for w in first]
    assert str(tmp_path / "a") in message and "resend_spool" in message and TOKEN not in message
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        run(tmp_path / "b")  # the next tracker of this process: logged, not warned again
    assert later == []
    assert len(Spool(tmp_path / "b").entries("api")) == 1

from __future__ import annotations

import json
import logging
import os
import time
import warnings

import pytest
from codecarbon_callbacks_core import CodeCarbonCallbacksWarning
from codecarbon_callbacks_core.output.resend import resend_spool
from codecarbon_callbacks_core.output.sender import Sender
from codecarbon_callbacks_core.output.spool import SPOOL_DIRNAME, Spool
from codecarbon_callbacks_core.output.webhook import WEBHOOK_SCHEMA_VERSION, WebhookOutput
from output_records import RecordingServer, free_port, make_total, make_window, orphan_spool


def wait_for(predicate, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def spool_files(directory):
    spool_dir = os.path.join(directory, SPOOL_DIRNAME)
    return (
        sorted(n for n in os.listdir(spool_dir) if n.endswith(".json"))
        if os.path.isdir(spool_dir)
        else []
    )


@pytest.fixture
def server():
    srv = RecordingServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def sender():
    return Sender(backoff_initial_s=0.05, backoff_max_s=0.2)


def test_records_arrive_with_schema_version_and_id(tmp_path, server, sender):
    out = WebhookOutput(server.url + "/hook", tmp_path, windows=True, sender=sender)
    total = make_total(energy_consumed=0.42)
    out.window_out(make_window(kind="epoch", epoch=1))
    out.out(total, total)
    out.exit()
    bodies = server.accepted()
    assert [b["record_type"] for b in bodies] == ["window", "run"]
    assert all(b["schema_version"] == WEBHOOK_SCHEMA_VERSION for b in bodies)
    assert len({b["record_id"] for b in bodies}) == 2
    assert bodies[1]["energy_consumed"] == 0.42 and bodies[1]["run_id"] == total.run_id
    assert bodies[0]["epoch"] == 1
    assert spool_files(tmp_path) == []  # delivered -> removed from the spool


def test_windows_not_posted_unless_asked(tmp_path, server, sender):
    out = WebhookOutput(server.url, tmp_path, sender=sender)
    out.window_out(make_window())
    out.out(make_total(), make_total())
    out.exit()
    assert [b["record_type"] for b in server.accepted()] == ["run"]


def test_down_500_hang_then_back_every_record_arrives_once(tmp_path, sender):
    """Endpoint down, then 500s, then hanging, then back: no loss, duplicates only by id."""
    port = free_port()
    server = RecordingServer(port)
    out = WebhookOutput(
        f"http://127.0.0.1:{port}/h", tmp_path, windows=True, sender=sender, timeout_s=0.3
    )
    sent_ids = []
    make_payload = out.payload

    def recording_payload(record, record_type):
        body = make_payload(record, record_type)
        sent_ids.append(body["record_id"])
        return body

    out.payload = recording_payload

    def emit(n):
        for _ in range(n):
            out.window_out(make_window())

    emit(3)  # endpoint down: connection refused
    time.sleep(0.3)
    assert server.requests == []
    server.start()
    server.mode = "error"
    emit(2)
    assert wait_for(lambda: len(server.requests) >= 3)
    server.mode = "hang"
    server.hang_s = 1.0
    emit(2)
    time.sleep(0.8)
    server.mode = "ok"
    assert wait_for(lambda: sender.pending(out) == 0, 15)
    out.exit()
    received = [r["body"]["record_id"] for r in server.requests if r["mode"] == "ok"]
    hung = [r["body"]["record_id"] for r in server.requests if r["mode"] == "hang"]
    # every one of the 7 records arrived (dedupe by id at the receiver shows no loss) ...
    assert len(sent_ids) == 7
    assert set(received) | set(hung) == set(sent_ids)
    # ... and only a record whose answer was lost (the hanging ones) may come twice
    duplicates = {i for i in received if received.count(i) > 1}
    assert duplicates <= set(hung)
    assert len([i for i in received if i not in hung]) == len(set(sent_ids) - set(hung))
    assert spool_files(tmp_path) == []
    server.stop()


def test_exit_is_bounded_when_endpoint_hangs(tmp_path, server, sender):
    server.mode = "hang"
    server.hang_s = 60.0
    out = WebhookOutput(server.url, tmp_path, sender=sender, timeout_s=30, exit_timeout_s=1.0)
    out.out(make_total(), make_total())
    t0 = time.monotonic()
    out.exit()
    assert time.monotonic() - t0 < 3.0
    # the record is still in the durable spool
    assert len(spool_files(tmp_path)) == 1


def test_next_output_resends_the_spool(tmp_path, sender):
    port = free_port()
    first = WebhookOutput(f"http://127.0.0.1:{port}/x", tmp_path, sender=sender, exit_timeout_s=0.3)
    total = make_total()
    first.out(total, total)
    first.exit()
    sender.forget(first)  # as if the process had ended...
    assert orphan_spool(tmp_path) == 1  # ... and its spool entry had no live owner
    [name] = spool_files(tmp_path)
    stored = json.loads((tmp_path / SPOOL_DIRNAME / name).read_text())
    assert stored["body"]["run_id"] == total.run_id
    server = RecordingServer(port).start()
    try:
        second = WebhookOutput(f"http://127.0.0.1:{port}/x", tmp_path, sender=sender)
        second.out(make_total(), make_total())
        second.exit()
        ids = [b["record_id"] for b in server.accepted()]
        assert stored["body"]["record_id"] in ids and len(ids) == 2
        assert spool_files(tmp_path) == []
    finally:
        server.stop()


def test_other_endpoint_entries_left_alone_and_resend_on_demand(tmp_path, sender):
    port = free_port()
    out = WebhookOutput(f"http://127.0.0.1:{port}/a", tmp_path, sender=sender, exit_timeout_s=0.2)
    out.out(make_total(), make_total())
    out.exit()
    sender.forget(out)
    server = RecordingServer(port).start()
    try:
        other = WebhookOutput(f"http://127.0.0.1:{port}/b", tmp_path, sender=sender)
        other.out(make_total(), make_total())
        other.exit()
        assert [r["path"] for r in server.requests] == ["/b"]
        assert len(spool_files(tmp_path)) == 1
        counts = resend_spool(tmp_path, emissions_endpoint=f"http://127.0.0.1:{port}/a")
        assert counts["delivered"] == 1
        assert [r["path"] for r in server.requests] == ["/b", "/a"]
        assert spool_files(tmp_path) == []
    finally:
        server.stop()


def test_4xx_is_dropped_with_warning(tmp_path, server, sender, caplog):
    server.status = 422
    out = WebhookOutput(server.url, tmp_path, sender=sender)
    with caplog.at_level(logging.WARNING):
        out.out(make_total(), make_total())
        out.exit()
    assert len(server.requests) == 1
    assert spool_files(tmp_path) == []
    assert "HTTP 422" in caplog.text


def test_spool_is_bounded_by_size_and_age(tmp_path):
    spool = Spool(tmp_path, max_bytes=3000, max_age_s=100)
    for i in range(10):
        spool.put("webhook", "http://h/x", {"i": i, "pad": "x" * 500})
    spool.prune()  # put() checks the bounds at most every PRUNE_INTERVAL_S
    kept = spool.entries()
    assert spool.size_bytes() <= 3000 and 0 < len(kept) < 10
    assert kept[-1].body["i"] == 9  # the newest are kept
    spool.prune(now_s=time.time() + 1000)
    assert spool.entries() == []
    with pytest.raises(ValueError, match="spool_max_bytes"):
        Spool(tmp_path, max_bytes=0)


def test_bad_url_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="emissions_endpoint"):
        WebhookOutput("ftp://x", tmp_path)


def test_entries_of_a_live_process_are_not_taken(tmp_path, sender):
    """A second output in the same (live) process never re-sends what the first still holds."""
    port = free_port()
    first = WebhookOutput(f"http://127.0.0.1:{port}/x", tmp_path, sender=sender, exit_timeout_s=0.2)
    first.out(make_total(), make_total())
    first.exit()
    server = RecordingServer(port).start()
    try:
        second = WebhookOutput(f"http://127.0.0.1:{port}/x", tmp_path, sender=sender)
        second.out(make_total(), make_total())
        assert wait_for(lambda: sender.pending() == 0, 10)
        ids = [b["record_id"] for b in server.accepted()]
        assert len(ids) == 2 and len(set(ids)) == 2  # both records, each once
    finally:
        server.stop()


def test_construction_is_cheap_and_offline(tmp_path):
    t0 = time.perf_counter()
    for _ in range(100):
        WebhookOutput("http://127.0.0.1:9/x", tmp_path)
    assert (time.perf_counter() - t0) / 100 < 0.005
    assert not os.path.exists(tmp_path / SPOOL_DIRNAME)


def test_unwritable_spool_still_delivers_from_memory(tmp_path, server, sender, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    out = WebhookOutput(server.url, blocker, sender=sender)
    with caplog.at_level(logging.WARNING):
        out.out(make_total(), make_total())
        out.exit()
    assert len(server.accepted()) == 1
    assert "without a durable copy" in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sender_is_fresh_after_fork(tmp_path):
    from codecarbon_callbacks_core.output.sender import CallJob, get_sender

    parent = get_sender()
    parent.submit(CallJob(lambda: None, queue_key="warm", label="warm", owner=None))
    pid = os.fork()
    if pid == 0:  # child: a new sender whose thread works
        code = 1
        try:
            child = get_sender()
            done = []
            child.submit(CallJob(lambda: done.append(1), queue_key="c", label="c", owner="me"))
            child.drain("me", 5)
            code = 0 if child is not parent and done == [1] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_resend_spool_keeps_records_on_401_and_posts_with_the_url_credentials(
    tmp_path, server, caplog
):
    """The spool stores the endpoint without user:password; resend_spool without them gets 401
    and keeps every record; with them in the URL (used, never stored or logged), all arrive."""
    import base64

    password = "hook-pa55word-xyz"
    expected = "Basic " + base64.b64encode(f"me:{password}".encode()).decode()
    server.handler_hook = lambda path, headers, body: (
        None if headers.get("Authorization") == expected else (401, {"detail": "auth"})
    )
    url = f"http://me:{password}@127.0.0.1:{server.port}/hook"
    spool = Spool(tmp_path)
    for i in range(4):
        spool.put("webhook", url, {"i": i})
    orphan_spool(tmp_path)
    with caplog.at_level(logging.DEBUG):
        refused = resend_spool(tmp_path, emissions_endpoint=server.url + "/hook")
        assert len(spool_files(tmp_path)) == 4  # kept, not dropped as rejected
        assert refused["unauthorized"] == 4 and refused["rejected"] == 0
        assert "refused the credentials (HTTP 401)" in caplog.text
        assert resend_spool(tmp_path, emissions_endpoint=url)["delivered"] == 4
    assert sorted(b["i"] for b in server.accepted()[1:]) == [0, 1, 2, 3]
    assert spool_files(tmp_path) == []
    assert password not in caplog.text


def test_resend_spool_counts_other_endpoints_and_unreadable_files(tmp_path, server, caplog):
    spool = Spool(tmp_path)
    spool.put("webhook", server.url + "/a", {"i": 0})
    spool.put("webhook", server.url + "/b?token=t0ken-value", {"i": 1})
    orphan_spool(tmp_path)
    for i in range(3):  # an entry's name, not its content
        path = tmp_path / SPOOL_DIRNAME / f"webhook-{time.time_ns()}-x{i}@0-1-1.json"
        path.write_text("{truncated")
    with caplog.at_level(logging.WARNING):
        counts = resend_spool(tmp_path, emissions_endpoint=server.url + "/a")
    assert counts["delivered"] == 1
    assert counts["other_endpoints"] == 1 and counts["unreadable"] == 3
    assert f"webhook {server.url}/b?***" in caplog.text and "t0ken-value" not in caplog.text
    assert len(spool.unreadable()) == 3 and len(spool_files(tmp_path)) == 4


def test_records_left_in_the_spool_at_exit_reach_the_user_once(tmp_path, sender):
    url = f"http://user:pw-s3cret@127.0.0.1:{free_port()}/x"  # nothing listens there

    def run(folder):
        out = WebhookOutput(url, folder, sender=sender, exit_timeout_s=0.2)
        out.out(make_total(), make_total())
        out.exit()
        sender.forget(out)

    with pytest.warns(CodeCarbonCallbacksWarning, match="not delivered at exit") as first:
        run(tmp_path / "a")
    [message] = [str(w.message) for w in first]
    assert str(tmp_path / "a") in message and "s3cret" not in message
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        run(tmp_path / "b")
    assert later == [] and len(spool_files(tmp_path / "b")) == 1


def test_the_retry_delay_stays_bounded_after_any_number_of_failures():
    # a long outage: 2 ** failures once overflowed a float and killed the sender thread
    sender = Sender(backoff_initial_s=0.05, backoff_max_s=0.2)
    for failures in (1, 2, 10, 1_100, 10**6):
        delay = sender._backoff(failures)
        assert 0.0 < delay <= 0.2 * 1.2, (failures, delay)
    assert sender._backoff(1) <= 0.05 * 1.2

"""Who measures what: the rank plan, this rank's CUDA device, the session's wiring (in-process).

The real process groups are in test_launches.py (subprocesses). Here the planning rules are
checked directly, and the session's wiring with a stand-in for a 2-rank ``torch.distributed``
whose other rank mirrors this one (the transport is what this process cannot have; everything
it carries is real: real trackers, real records, real CSV files).
"""

from __future__ import annotations

import copy
import sys
import time
import types
from typing import Any

import pytest

from codecarbon_callbacks import distributed
from codecarbon_callbacks.distributed import assign_ranks, local_gpu_ids, machine_id
from codecarbon_callbacks.session import EmissionsSession

A, B = "GPU-0000aaaa-0000-0000-0000-000000000000", "GPU-1111aaaa-0000-0000-0000-000000000001"


def test_each_rank_gets_its_own_gpu_and_the_host_goes_to_local_rank_zero():
    plans = assign_ranks([(1, "n1", [B]), (0, "n1", [A]), (2, "n2", [A]), (3, "n2", [B])])
    assert [plans[r].gpu_uuids for r in range(4)] == [(A,), (B,), (A,), (B,)]  # per machine
    assert [plans[r].measures_host for r in range(4)] == [True, False, True, False]
    assert [plans[r].writes for r in range(4)] == [True, False, False, False]
    assert {p.num_machines for p in plans.values()} == {2}
    assert {p.world_size for p in plans.values()} == {4}


def test_a_gpu_every_rank_sees_is_measured_once():
    # torchrun without CUDA in use: every rank sees both GPUs of its machine
    plans = assign_ranks([(0, "n1", [A, B]), (1, "n1", [A.lower(), B])])
    assert plans[0].gpu_uuids == (A, B) and plans[1].gpu_uuids == ()
    # two ranks sharing one CUDA device (UUID given without the GPU- prefix by one of them)
    plans = assign_ranks([(0, "n1", [A]), (1, "n1", [A.removeprefix("GPU-")])])
    assert plans[0].gpu_uuids == (A,) and plans[1].gpu_uuids == ()
    # a rank that offered nothing filters nothing
    assert assign_ranks([(0, "n1", None), (1, "n1", None)])[1].gpu_uuids is None


def test_process_mode_every_rank_measures_its_process():
    plans = assign_ranks([(0, "n1", []), (1, "n1", [])], tracking_mode="process")
    assert plans[0].measures_host and plans[1].measures_host
    with pytest.raises(ValueError, match="tracking_mode"):
        assign_ranks([(0, "n1", [])], tracking_mode="node")


def test_machine_id_from_the_environment():
    assert machine_id({"CODECARBON_CALLBACKS_MACHINE_ID": "node-7"}) == "node-7"
    assert machine_id({}) != ""


def test_local_gpu_ids_is_this_process_cuda_device(monkeypatch):
    """CUDA, which this machine lacks, stood in for at the torch.cuda calls the module makes."""
    props = {
        0: types.SimpleNamespace(uuid="0000aaaa-0000-0000-0000-000000000000"),
        1: types.SimpleNamespace(uuid="1111aaaa-0000-0000-0000-000000000001"),
    }
    cuda = types.SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: True,
        current_device=lambda: 1,
        get_device_properties=lambda i: props[i],
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert local_gpu_ids() == [B]
    cuda.is_initialized = lambda: False
    assert local_gpu_ids() is None
    monkeypatch.delitem(sys.modules, "torch")
    assert local_gpu_ids() is None


class MirrorGroup:
    """A 2-rank group seen from rank 0: rank 1 runs on another machine and measures the same.

    ``all_gather_object`` returns this rank's object and rank 1's copy of it (rank, machine and
    figures of a second machine that measured exactly what this one did).
    """

    def __init__(self) -> None:
        self.gathers: list[str] = []

    def is_available(self) -> bool:
        return True

    def is_initialized(self) -> bool:
        return True

    def get_world_size(self) -> int:
        return 2

    def get_rank(self) -> int:
        return 0

    #: what rank 1 answers when asked whether its tracker started
    other_started = True

    def all_gather_object(self, out: list[Any], obj: Any) -> None:
        if isinstance(obj, tuple):  # the plan: (rank, machine, gpus)
            self.gathers.append("plan")
            out[:] = [obj, (1, "other-machine", obj[2])]
        elif isinstance(obj, bool):  # did every rank's tracker start?
            self.gathers.append("started")
            out[:] = [obj, self.other_started]
        else:
            self.gathers.append(obj.get("kind", "run"))
            other = copy.deepcopy(obj)
            other.update(rank=1, machine="other-machine")
            out[:] = [obj, other]


@pytest.fixture
def mirror(monkeypatch) -> MirrorGroup:
    group = MirrorGroup()
    monkeypatch.setattr(distributed, "_dist", lambda: group)
    return group


def test_session_combines_at_every_window_and_decides_budgets_on_combined_figures(
    mirror, tmp_path, caplog
):
    import pandas as pd

    session = EmissionsSession(
        "custom",
        country_iso_code="FRA",
        output_dir=str(tmp_path),
        allow_multiple_runs=True,
        window_every_seconds=0.01,
        max_energy_kwh=1e-12,
    )
    assert session.begin_run("fit", rank=0)
    assert mirror.gathers[0] == "plan"
    assert session.tracker.record_combiner is not None
    session.begin_epoch(0)
    local = session.tracker.totals()
    figures = session.end_epoch(0, done=1, planned=3)
    # the figures logged (and the budget) are the two machines' sum
    assert figures["total_energy_kwh"] >= 2 * local.energy_consumed * 0.999
    assert session.stop_requested  # 1e-12 kWh: the combined figures cross it
    session.end_run()
    runs = pd.read_csv(tmp_path / "emissions.csv")
    windows = pd.read_csv(tmp_path / "emissions_windows.csv")
    assert list(runs["status"]) == ["budget_stop"]  # a collective end: combined
    run = runs.iloc[0]
    import json

    meta = json.loads(run["metadata"])
    assert meta["distributed"]["num_machines"] == 2 and meta["distributed"]["complete"]
    cpu = [c for c in meta["components"] if c["kind"] == "cpu"]
    assert len(cpu) == 2 and cpu[0]["energy_kwh"] == cpu[1]["energy_kwh"]
    assert run["cpu_energy"] == pytest.approx(2 * cpu[0]["energy_kwh"], rel=1e-9)
    # no time windows under a process group (ranks' clocks would disagree on when to close them)
    assert "time" not in set(windows["kind"])
    assert any("window_every_seconds is ignored" in r.getMessage() for r in caplog.records)
    # every window closed through the collective, the last one at the run's end
    assert mirror.gathers.count("run") >= 1
    assert len(windows) == sum(1 for g in mirror.gathers if g in ("epoch", "phase"))
    assert windows.iloc[-1]["end_timestamp"] == run["timestamp"]


def test_session_failure_path_starts_no_collective(mirror, tmp_path):
    import json

    import pandas as pd

    session = EmissionsSession(
        "custom", country_iso_code="FRA", output_dir=str(tmp_path), allow_multiple_runs=True
    )
    session.begin_run("fit", rank=0)
    session.begin_epoch(0)
    before = list(mirror.gathers)
    session.fail(RuntimeError("boom"))
    assert mirror.gathers == before  # nothing gathered after the failure
    run = pd.read_csv(tmp_path / "emissions.csv").iloc[0]
    assert run["status"] == "failed"
    assert json.loads(run["metadata"])["distributed"]["complete"] is False
    last = pd.read_csv(tmp_path / "emissions_windows.csv").iloc[-1]
    assert last["phase"] == "train" and last["status"] == "failed"
    assert session.summary()["windows"][-1]["status"] == "failed"


def test_non_writing_rank_resumes_with_the_run_id_only(monkeypatch, tmp_path):
    """The saved totals are the combined run's: rank zero carries them, other ranks add none."""

    class RankOne(MirrorGroup):
        def get_rank(self) -> int:
            return 1

        def all_gather_object(self, out: list[Any], obj: Any) -> None:
            if isinstance(obj, tuple):
                out[:] = [(0, obj[1], obj[2]), obj]
            elif isinstance(obj, bool):
                out[:] = [True, obj]
            else:
                other = copy.deepcopy(obj)
                other.update(rank=0)
                out[:] = [other, obj]

    monkeypatch.setattr(distributed, "_dist", lambda: RankOne())
    session = EmissionsSession(
        "custom", country_iso_code="FRA", output_dir=str(tmp_path), allow_multiple_runs=True
    )
    state = {
        "version": 1,
        "framework": "custom",
        "done": 1.0,
        "epochs": [],
        "tracker": {
            "version": 1,
            "run_id": "saved-run",
            "cpu_energy_kwh": 5.0,
            "gpu_energy_kwh": 7.0,
            "ram_energy_kwh": 1.0,
            "emissions_kg": 2.0,
            "duration_s": 100.0,
            "water_l": 0.0,
            "window_count": 3,
        },
    }
    session.load_state_dict(state)
    session.begin_run("fit", rank=1)
    assert not session.is_writer and session.tracker.writes_outputs is False
    # allow_multiple_runs=False is one run per machine: the machine's lock is rank 0's
    assert session.tracker.config.allow_multiple_runs is True
    assert session.tracker.run_id == "saved-run"
    assert session.tracker.totals().gpu_energy < 1.0  # the 7 kWh are rank zero's to carry
    # and rank 1 measures no CPU or RAM (rank 0 of the same machine does)
    assert {c.kind for c in session.tracker.components} <= {"gpu"}
    session.end_run()
    assert not (tmp_path / "emissions.csv").exists()


def test_sigterm_handler_only_during_a_distributed_run(mirror, tmp_path):
    import signal

    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("something else handles SIGTERM in this process")
    session = EmissionsSession(
        "custom", country_iso_code="FRA", output_dir=str(tmp_path), allow_multiple_runs=True
    )
    session.begin_run("fit", rank=0)
    assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    session.end_run()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_checkpoint_state_holds_the_combined_totals(mirror, tmp_path):
    session = EmissionsSession(
        "custom", country_iso_code="FRA", output_dir=str(tmp_path), allow_multiple_runs=True
    )
    session.begin_run("fit", rank=0)
    session.begin_epoch(0)
    time.sleep(0.2)  # the epoch dominates what this rank measures after its end
    session.end_epoch(0, done=1)
    gathers = len(mirror.gathers)
    state = session.state_dict()["tracker"]  # no collective: not every rank saves checkpoints
    assert len(mirror.gathers) == gathers
    local = session.tracker.state_dict()
    # both machines' energy up to the epoch's end, plus this rank's since
    assert state["ram_energy_kwh"] > 1.5 * local["ram_energy_kwh"]
    assert state["ram_energy_kwh"] < 2.0 * local["ram_energy_kwh"]
    assert state["run_id"] == session.tracker.run_id
    session.end_run()


def test_when_a_rank_cannot_start_no_rank_measures(mirror, tmp_path, caplog):
    """Else the ranks that started would wait forever in the window collectives."""
    mirror.other_started = False
    session = EmissionsSession(
        "custom", country_iso_code="FRA", output_dir=str(tmp_path), allow_multiple_runs=True
    )
    assert session.begin_run("fit", rank=0) is False
    assert mirror.gathers == ["plan", "started"]
    assert not session.running and session.tracker is None
    assert any("another rank could not start" in r.getMessage() for r in caplog.records)
    session.begin_epoch(0)
    session.end_epoch(0)
    session.end_run()
    assert mirror.gathers == ["plan", "started"]  # nothing more: no window, no collective
    assert not (tmp_path / "emissions.csv").exists()


def test_this_rank_measures_the_gpus_it_names_or_sees(mirror, monkeypatch, tmp_path):
    """No CUDA here: a rank offers the configured gpu_ids, else every GPU it sees (fake NVML)."""
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "fakes"))
    import fake_nvml

    fake = fake_nvml.from_spec({"devices": [{"uuid": A, "power_w": 300.0}, {"uuid": B}]})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    for gpu_ids, expected in (([B], {B}), (None, {A, B})):
        kwargs = {"gpu_ids": gpu_ids} if gpu_ids else {}
        session = EmissionsSession(
            "custom",
            country_iso_code="FRA",
            output_dir=str(tmp_path),
            allow_multiple_runs=True,
            **kwargs,
        )
        assert session.begin_run("fit", rank=0)
        gpus = {c.uuid for c in session.tracker.components if c.kind == "gpu"}
        session.end_run()
        assert gpus == expected


def test_amd_gpus_are_planned_once_per_machine_by_uuid(monkeypatch):
    """Two ranks on one machine with two AMD GPUs (fake amdsmi): each GPU is measured once,
    whether the ranks see both or each its own HIP device (torch's UUID on ROCm)."""
    from codecarbon_callbacks_core.hardware.amdsmi import detect_amdsmi
    from fakes.fake_amdsmi import FakeAmdGpu, FakeAmdsmi

    serials = ["0x8E2EC2D5A1B63F50", "0x8E2EC2D5A1B63F51"]
    devices = [
        FakeAmdGpu(uuid=f"{i}aff74a1-0000-1000-8000-00000000000{i}", unique_id=s)
        for i, s in enumerate(serials)
    ]

    def offers(gpu_ids=None, environ=None):
        gpus, _ = detect_amdsmi(amdsmi=FakeAmdsmi(devices), gpu_ids=gpu_ids, environ=environ or {})
        return [distributed._gpu_uuid(g) for g in gpus]

    # torchrun without a device chosen: every rank sees both, each GPU goes to one rank
    plans = assign_ranks([(0, "n1", offers()), (1, "n1", offers())])
    assert plans[0].gpu_uuids == tuple(d.uuid for d in devices) and plans[1].gpu_uuids == ()
    # each rank on its own HIP device: torch on ROCm prints the ASCII of the unique id as a UUID
    props = {
        i: types.SimpleNamespace(uuid=s[2:].lower().encode().hex()) for i, s in enumerate(serials)
    }
    rank_offers = []
    for rank in (0, 1):
        cuda = types.SimpleNamespace(
            is_available=lambda: True,
            is_initialized=lambda: True,
            current_device=lambda rank=rank: rank,
            get_device_properties=lambda i: props[i],
        )
        monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
        rank_offers.append((rank, "n1", offers(gpu_ids=local_gpu_ids())))
    plans = assign_ranks(rank_offers)
    assert [plans[r].gpu_uuids for r in (0, 1)] == [(devices[0].uuid,), (devices[1].uuid,)]

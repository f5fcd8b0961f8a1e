"""Combining ranks' records: energies add, host components counted once per machine."""

from __future__ import annotations

import pytest

from codecarbon_callbacks.core.records import WindowRecord
from codecarbon_callbacks.distributed import RankPlan, RecordCombiner, combine_records, plan_ranks


def rank_record(rank: int, machine: str, *, cpu: float, gpu: float, ram: float) -> dict:
    record = WindowRecord(run_id="r", duration=10.0, cpu_energy=cpu, gpu_energy=gpu, ram_energy=ram,
                          energy_consumed=cpu + gpu + ram, emissions=(cpu + gpu + ram) * 0.1,
                          gpu_count=1, gpu_model="1 x H200", gpu_method="nvml_energy",
                          cpu_method="rapl" if cpu else "", epoch=2, phase="train", kind="epoch",
                          metadata={"components": [{"kind": "gpu", "name": "gpu:0", "energy_kwh": gpu}]})
    d = record.to_dict()
    d.update(rank=rank, machine=machine)
    return d


def test_two_ranks_on_one_machine_count_host_once() -> None:
    records = [rank_record(0, "node-a", cpu=0.2, gpu=1.0, ram=0.05),
               rank_record(1, "node-a", cpu=0.0, gpu=1.5, ram=0.0)]  # rank 1 measures only its GPU
    template = WindowRecord(**{k: v for k, v in records[0].items() if k not in ("rank", "machine")})
    combined = combine_records(records, template)
    assert combined.gpu_energy == pytest.approx(2.5)
    assert combined.cpu_energy == pytest.approx(0.2)
    assert combined.energy_consumed == pytest.approx(2.75)
    assert combined.emissions == pytest.approx(0.275)
    assert combined.duration == 10.0 and combined.epoch == 2
    assert combined.gpu_count == 2
    info = combined.metadata["distributed"]
    assert info["world_size"] == 2 and info["num_machines"] == 1
    assert [g["rank"] for g in info["per_gpu"]] == [0, 1]
    assert info["per_machine"][0]["ranks"] == [0, 1]


def test_two_machines() -> None:
    records = [rank_record(0, "a", cpu=0.2, gpu=1.0, ram=0.05), rank_record(1, "b", cpu=0.3, gpu=1.0, ram=0.05)]
    template = WindowRecord(**{k: v for k, v in records[0].items() if k not in ("rank", "machine")})
    combined = combine_records(records, template)
    assert combined.cpu_energy == pytest.approx(0.5)
    assert combined.metadata["distributed"]["num_machines"] == 2
    by_machine = {m["machine"]: m for m in combined.metadata["distributed"]["per_machine"]}
    assert by_machine["b"]["cpu_energy_kwh"] == pytest.approx(0.3)


def test_single_process_plan_and_passthrough() -> None:
    plan = plan_ranks()
    assert plan.world_size == 1 and plan.writes and plan.measures_host and not plan.distributed
    record = WindowRecord(gpu_energy=1.0)
    assert RecordCombiner(plan)(record, True) is record
    partial = RecordCombiner(RankPlan(rank=1, world_size=2, measures_host=False, writes=False))(record, False)
    assert "partial" in partial.metadata["distributed"]

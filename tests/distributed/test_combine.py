"""Combining ranks' records: energies add, host components counted once per machine."""

from __future__ import annotations

import pytest
from codecarbon_callbacks_core.records import WindowRecord

from codecarbon_callbacks.distributed import RankPlan, RecordCombiner, combine_records, plan_ranks


def rank_record(rank: int, machine: str, *, cpu: float, gpu: float, ram: float) -> dict:
    record = WindowRecord(
        run_id="r",
        duration=10.0,
        cpu_energy=cpu,
        gpu_energy=gpu,
        ram_energy=ram,
        energy_consumed=cpu + gpu + ram,
        emissions=(cpu + gpu + ram) * 0.1,
        gpu_count=1,
        gpu_model="1 x H200",
        gpu_method="nvml_energy",
        cpu_method="rapl" if cpu else "",
        epoch=2,
        phase="train",
        kind="epoch",
        metadata={"components": [{"kind": "gpu", "name": "gpu:0", "energy_kwh": gpu}]},
    )
    d = record.to_dict()
    d.update(rank=rank, machine=machine)
    return d


def test_two_ranks_on_one_machine_count_host_once() -> None:
    records = [
        rank_record(0, "node-a", cpu=0.2, gpu=1.0, ram=0.05),
        rank_record(1, "node-a", cpu=0.0, gpu=1.5, ram=0.0),
    ]  # rank 1 measures only its GPU
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
    records = [
        rank_record(0, "a", cpu=0.2, gpu=1.0, ram=0.05),
        rank_record(1, "b", cpu=0.3, gpu=1.0, ram=0.05),
    ]
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
    partial = RecordCombiner(RankPlan(rank=1, world_size=2, measures_host=False, writes=False))(
        record, False
    )
    assert "partial" in partial.metadata["distributed"]


def _two_machine_host_records() -> list[dict]:
    def host(rank: int, machine: str, gpu_model: str) -> dict:
        record = rank_record(rank, machine, cpu=0.2, gpu=1.0, ram=0.05)
        record.update(cpu_count=64, cpu_model="AMD EPYC 9654", ram_total_size=512.0)
        record["metadata"]["components"] = [
            {"kind": "cpu", "name": "cpu:0", "energy_kwh": 0.2},
            {"kind": "gpu", "name": "gpu:0", "model": gpu_model, "energy_kwh": 1.0},
            {"kind": "ram", "name": "ram", "energy_kwh": 0.05},
        ]
        return record

    return [host(0, "a", "NVIDIA H200"), host(1, "b", "NVIDIA H200")]


def _combined_report(records: list[dict]) -> dict:
    from codecarbon_callbacks_core.output.boamps import build_report

    template = WindowRecord(**{k: v for k, v in records[0].items() if k not in ("rank", "machine")})
    return build_report(
        combine_records(records, template), task={"taskStage": "training", "taskFamily": "chatbot"}
    )


def test_combined_record_counts_machines_in_its_columns_and_boamps_components() -> None:
    from codecarbon_callbacks_core.output.boamps import build_report, validate_report

    records = _two_machine_host_records()
    template = WindowRecord(**{k: v for k, v in records[0].items() if k not in ("rank", "machine")})
    combined = combine_records(records, template)
    assert combined.cpu_count == 128 and combined.ram_total_size == 1024.0
    assert combined.gpu_model == "2 x NVIDIA H200"
    report = build_report(combined, task={"taskStage": "training", "taskFamily": "chatbot"})
    components = {c["componentType"]: c for c in report["infrastructure"]["components"]}
    assert components["cpu"]["nbComponent"] == 128 and components["cpu"]["share"] == 1.0
    assert components["gpu"]["nbComponent"] == 2 and components["gpu"]["share"] == 1.0
    assert components["ram"]["nbComponent"] == 2 and components["ram"]["memorySize"] == 512.0
    assert [p for p in validate_report(report) if "infrastructure" in p] == []

    # process mode: each rank's share of its machine is not a fixed fraction, so no share
    for r in records:
        r["tracking_mode"] = "process"
    template.tracking_mode = "process"
    process = build_report(combine_records(records, template))
    cpu = next(c for c in process["infrastructure"]["components"] if c["componentType"] == "cpu")
    assert "share" not in cpu


def test_combined_boamps_infrastructure_matches_the_official_schema(boamps_validator) -> None:
    """Reference: combined report's infrastructure (nbComponent, share) by the official schema."""
    from boamps_checks import schema_errors

    report = _combined_report(_two_machine_host_records())
    assert [
        e for e in schema_errors(boamps_validator, report) if e.startswith("infrastructure")
    ] == []

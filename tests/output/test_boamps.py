from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from jsonschema import Draft4Validator
from output_records import make_total
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from codecarbon_callbacks import (
    BoAmpsAlgorithm,
    BoAmpsDataset,
    BoAmpsHeader,
    BoAmpsOutput,
    BoAmpsPublisher,
    BoAmpsTask,
)
from codecarbon_callbacks.output.boamps import validate_report

SCHEMA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "boamps"


@pytest.fixture(scope="module")
def validator() -> Draft4Validator:
    if not SCHEMA_DIR.is_dir():
        pytest.skip(f"BoAmps schemas not found at {SCHEMA_DIR}")
    schemas = {
        name: json.loads((SCHEMA_DIR / f"{name}_schema.json").read_text())
        for name in ("report", "algorithm", "dataset", "hardware", "measure")
    }
    registry = Registry().with_resources(
        (schema["id"], Resource.from_contents(schema, default_specification=DRAFT4))
        for schema in schemas.values()
    )
    return Draft4Validator(schemas["report"], registry=registry)


def schema_errors(validator, report) -> list[str]:
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(report)]


def full_task() -> BoAmpsTask:
    return BoAmpsTask(
        task_stage="training",
        task_family="image classification",
        algorithms=[
            BoAmpsAlgorithm(
                algorithm_name="resnet18",
                framework="pytorch",
                parameters_number=0.0117,
                epochs_number=3,
            )
        ],
        dataset=[
            BoAmpsDataset(
                data_usage="input",
                data_type="image",
                data_quantity=50000,
                shape="(50000, 3, 32, 32)",
            )
        ],
    )


def test_report_with_task_validates_and_carries_the_run(tmp_path, validator):
    total = make_total(
        energy_consumed=0.0123,
        duration=42.0,
        cpu_utilization_percent=55.0,
        gpu_utilization_percent=90.0,
        carbon_intensity_g_per_kwh=56.0,
    )
    out = BoAmpsOutput(
        tmp_path,
        task=full_task(),
        quality="high",
        header=BoAmpsHeader(publisher=BoAmpsPublisher(name="ACME", confidentiality_level="public")),
    )
    out.out(total, total)
    path = tmp_path / f"boamps_report_{total.run_id}.json"
    assert out.save_file_path == str(path)
    report = json.loads(path.read_text())
    assert schema_errors(validator, report) == []
    assert out.last_problems == []
    measure = report["measures"][0]
    assert measure["powerConsumption"] == pytest.approx(0.0123)
    assert measure["measurementDuration"] == pytest.approx(42.0)
    assert measure["averageUtilizationCpu"] == pytest.approx(0.55)
    assert measure["averageUtilizationGpu"] == pytest.approx(0.90)
    assert measure["cpuTrackingMode"] == "rapl" and measure["gpuTrackingMode"] == "nvml_energy"
    assert measure["measurementDateTime"] == "2026-11-28 20:00:00"
    types = {c["componentType"]: c for c in report["infrastructure"]["components"]}
    assert types["gpu"]["nbComponent"] == 1 and types["gpu"]["manufacturer"] == "NVIDIA"
    assert types["cpu"]["manufacturer"] == "AMD"
    assert types["ram"]["memorySize"] == 128.0
    assert report["environment"]["country"] == "France"
    assert report["environment"]["powerSourceCarbonIntensity"] == 56.0
    assert report["header"]["reportId"] == total.run_id
    assert report["header"]["reportStatus"] == "final"
    assert report["task"]["algorithms"][0]["parametersNumber"] == pytest.approx(0.0117)


def test_without_task_still_written_with_warning_naming_fields(tmp_path, validator, caplog):
    total = make_total(
        gpu_count=0,
        gpu_model="",
        gpu_method="",
        metadata={"components": [{"kind": "cpu", "method": "tdp_estimate"}]},
    )
    out = BoAmpsOutput(tmp_path)
    with caplog.at_level(logging.WARNING):
        out.out(total, total)
    report = json.loads(Path(out.save_file_path).read_text())
    assert "task" not in report
    errors = schema_errors(validator, report)
    assert errors and any("task" in e for e in errors)
    assert "missing required field task" in out.last_problems
    assert "missing required field task" in caplog.text
    assert all(c["componentType"] != "gpu" for c in report["infrastructure"]["components"])
    assert "gpuTrackingMode" not in report["measures"][0]


def test_task_from_record_metadata_merged_under_user_task(tmp_path, validator):
    framework_task = {
        "taskStage": "training",
        "taskFamily": "set by framework",
        "algorithms": [
            {
                "framework": "lightning",
                "frameworkVersion": "2.5",
                "parametersNumber": 124_000_000,
                "epochsNumber": 2,
            }
        ],
        "dataset": [{"dataUsage": "input", "dataType": "text", "shape": [1000, 128]}],
    }
    total = make_total()
    total.metadata["boamps_task"] = framework_task
    user = BoAmpsTask(
        task_family="text classification", algorithms=[BoAmpsAlgorithm(algorithm_name="gpt2")]
    )
    out = BoAmpsOutput(tmp_path, task=user)
    out.out(total, total)
    report = json.loads(Path(out.save_file_path).read_text())
    assert schema_errors(validator, report) == []
    task = report["task"]
    assert task["taskFamily"] == "text classification"  # user wins
    assert task["taskStage"] == "training"  # from the framework
    algorithm = task["algorithms"][0]
    assert algorithm["algorithmName"] == "gpt2" and algorithm["framework"] == "lightning"
    assert algorithm["parametersNumber"] == pytest.approx(0.124)  # raw count -> billions
    assert task["dataset"][0]["shape"] == "(1000, 128)"


def test_from_file_and_roundtrip(tmp_path, validator):
    context = {
        "header": {
            "licensing": "CC-BY-4.0",
            "publisher": {"name": "ACME", "confidentialityLevel": "internal"},
        },
        "task": full_task().to_dict(),
        "quality": "medium",
        "infrastructure": {
            "infraType": "privateCloud",
            "cloudInstance": "a1.large",
            "components": [
                {"componentType": "gpu", "nbComponent": 1, "memorySize": 141, "family": "Hopper"}
            ],
        },
        "environment": {"powerSource": "nuclear", "location": "Paris"},
    }
    path = tmp_path / "context.json"
    path.write_text(json.dumps(context))
    out = BoAmpsOutput.from_file(path, output_dir=tmp_path / "out")
    total = make_total(status="running")
    out.out(total, total)
    report = json.loads(Path(out.save_file_path).read_text())
    assert schema_errors(validator, report) == []
    assert report["quality"] == "medium"
    assert report["header"]["reportStatus"] == "draft"
    assert report["header"]["publisher"]["confidentialityLevel"] == "internal"
    assert report["infrastructure"]["infraType"] == "privateCloud"
    gpu = next(c for c in report["infrastructure"]["components"] if c["componentType"] == "gpu")
    assert gpu["memorySize"] == 141 and gpu["family"] == "Hopper"
    assert gpu["componentName"] == "1 x NVIDIA H200"  # detected, kept
    assert report["environment"] == {
        **report["environment"],
        "powerSource": "nuclear",
        "location": "Paris",
        "country": "France",
    }
    assert BoAmpsTask.from_dict(full_task().to_dict()) == full_task()
    assert BoAmpsHeader.from_dict(context["header"]).publisher.name == "ACME"


def test_bad_inputs_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown field 'taskStag'"):
        BoAmpsTask.from_dict({"taskStag": "training"})
    with pytest.raises(ValueError, match="quality"):
        BoAmpsOutput(tmp_path, quality="excellent")
    with pytest.raises(FileNotFoundError, match="context file"):
        BoAmpsOutput.from_file(tmp_path / "nope.json")


def test_validate_report_agrees_with_jsonschema_on_enums(validator):
    report = {
        "task": {
            "taskStage": "t",
            "taskFamily": "f",
            "algorithms": [{}],
            "dataset": [{"dataUsage": "input", "dataType": "pictures", "dataFormat": "tensor"}],
        },
        "measures": [
            {"measurementMethod": "m", "powerConsumption": 1, "averageUtilizationCpu": 55}
        ],
        "infrastructure": {
            "infraType": "onPremise",
            "components": [{"componentType": "cpu", "nbComponent": 1}],
        },
    }
    ours = validate_report(report)
    assert len(ours) == 3 and len(schema_errors(validator, report)) == 3
    assert any("dataType" in p for p in ours) and any("averageUtilizationCpu" in p for p in ours)
    assert any("dataFormat='tensor'" in p and "other" in p for p in ours)


def test_unwritable_dir_never_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = BoAmpsOutput(blocker / "sub", task=full_task())
    out.out(make_total(), make_total())  # must not raise
    assert out.save_file_path is None


def test_unknown_fields_from_record_metadata_are_dropped_not_fatal(tmp_path, validator, caplog):
    total = make_total()
    total.metadata["boamps_task"] = {
        **full_task().to_dict(),
        "gpuHours": 3,
        "algorithms": [{"framework": "keras", "seed": 1}],
    }
    out = BoAmpsOutput(tmp_path)
    with caplog.at_level(logging.WARNING):
        out.out(total, total)
    report = json.loads(Path(out.save_file_path).read_text())
    assert schema_errors(validator, report) == []
    assert report["task"]["algorithms"] == [{"framework": "keras"}]
    assert "gpuHours" in caplog.text and "algorithms[].seed" in caplog.text

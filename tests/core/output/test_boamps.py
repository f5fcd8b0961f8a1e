from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from boamps_checks import schema_errors
from codecarbon_callbacks_core.output.boamps import validate_report
from output_records import make_total

from codecarbon_callbacks import (
    BoAmpsAlgorithm,
    BoAmpsDataset,
    BoAmpsHeader,
    BoAmpsOutput,
    BoAmpsPublisher,
    BoAmpsTask,
)


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


def report_with_task(tmp_path):
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
    return out, total, json.loads((tmp_path / f"boamps_report_{total.run_id}.json").read_text())


def test_report_with_task_validates_and_carries_the_run(tmp_path):
    out, total, report = report_with_task(tmp_path)
    assert out.save_file_path == str(tmp_path / f"boamps_report_{total.run_id}.json")
    assert validate_report(report) == []
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


def report_without_task(tmp_path):
    total = make_total(
        gpu_count=0,
        gpu_model="",
        gpu_method="",
        metadata={"components": [{"kind": "cpu", "method": "tdp_estimate"}]},
    )
    out = BoAmpsOutput(tmp_path)
    out.out(total, total)
    return out, json.loads(Path(out.save_file_path).read_text())


def test_without_task_still_written_with_warning_naming_fields(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        out, report = report_without_task(tmp_path)
    assert "task" not in report
    assert "missing required field task" in out.last_problems
    assert "missing required field task" in caplog.text
    assert all(c["componentType"] != "gpu" for c in report["infrastructure"]["components"])
    assert "gpuTrackingMode" not in report["measures"][0]


def report_with_framework_and_user_task(tmp_path):
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
    return json.loads(Path(out.save_file_path).read_text())


def test_task_from_record_metadata_merged_under_user_task(tmp_path):
    report = report_with_framework_and_user_task(tmp_path)
    assert validate_report(report) == []
    task = report["task"]
    assert task["taskFamily"] == "text classification"  # user wins
    assert task["taskStage"] == "training"  # from the framework
    algorithm = task["algorithms"][0]
    assert algorithm["algorithmName"] == "gpt2" and algorithm["framework"] == "lightning"
    assert algorithm["parametersNumber"] == pytest.approx(0.124)  # raw count -> billions
    assert task["dataset"][0]["shape"] == "(1000, 128)"


def report_from_context_file(tmp_path):
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
    return context, json.loads(Path(out.save_file_path).read_text())


def test_from_file_and_roundtrip(tmp_path):
    context, report = report_from_context_file(tmp_path)
    assert validate_report(report) == []
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


EXAMPLE_CONTEXT = Path(__file__).resolve().parents[3] / "examples" / "boamps_context.json"


@pytest.mark.parametrize(
    ("run_status", "report_status", "reason_words"),
    [
        ("running", "draft", None),
        ("completed", "final", None),
        ("failed", "other", "failed"),
        ("interrupted", "other", "interrupted"),
        ("incomplete", "other", "never seen"),
        ("budget_stop", "other", "budget"),
    ],
)
def test_report_status_comes_from_the_run_not_the_context_file(
    tmp_path, run_status, report_status, reason_words
):
    """examples/boamps_context.json says reportStatus "final": the run's state wins."""
    assert json.loads(EXAMPLE_CONTEXT.read_text())["header"]["reportStatus"] == "final"
    out = BoAmpsOutput.from_file(EXAMPLE_CONTEXT, output_dir=tmp_path)
    total = make_total(status=run_status)
    out.out(total, total)
    report = json.loads(Path(out.save_file_path).read_text())
    assert report["header"]["reportStatus"] == report_status
    assert report["header"]["licensing"] == "CC-BY-4.0"  # the rest of the header is the user's
    description = report["task"]["taskDescription"]
    assert description.startswith("Tiny MLP classifier")  # the user's text is kept
    if reason_words is None:
        assert "reportStatus" not in description
    else:
        assert "reportStatus other:" in description and reason_words in description
        assert f"run status '{run_status}'" in description
    assert validate_report(report) == []


def test_status_set_in_python_header_is_ignored_and_budget_reason_kept(tmp_path):
    out = BoAmpsOutput(tmp_path, task=full_task(), header=BoAmpsHeader(report_status="final"))
    total = make_total(status="budget_stop")
    total.metadata["budget_stop_reason"] = "budget: 0.5 kWh would be exceeded"
    out.out(total, total)
    report = json.loads(Path(out.save_file_path).read_text())
    assert report["header"]["reportStatus"] == "other"
    assert "0.5 kWh would be exceeded" in report["task"]["taskDescription"]


def test_other_status_report_matches_the_official_schema(tmp_path, boamps_validator):
    """Reference: a failed run's report (status other, reason in taskDescription) validates."""
    out = BoAmpsOutput.from_file(EXAMPLE_CONTEXT, output_dir=tmp_path)
    total = make_total(status="failed")
    out.out(total, total)
    report = json.loads(Path(out.save_file_path).read_text())
    assert report["header"]["reportStatus"] == "other"
    assert schema_errors(boamps_validator, report) == []


def test_bad_inputs_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unknown field 'taskStag'"):
        BoAmpsTask.from_dict({"taskStag": "training"})
    with pytest.raises(ValueError, match="quality"):
        BoAmpsOutput(tmp_path, quality="excellent")
    with pytest.raises(FileNotFoundError, match="context file"):
        BoAmpsOutput.from_file(tmp_path / "nope.json")


def test_validate_report_agrees_with_the_official_schema_on_enums(boamps_validator):
    """Reference: our own checks find what the official schema finds on a report with 3 errors."""
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
    assert len(ours) == 3 and len(schema_errors(boamps_validator, report)) == 3
    assert any("dataType" in p for p in ours) and any("averageUtilizationCpu" in p for p in ours)
    assert any("dataFormat='tensor'" in p and "other" in p for p in ours)


def test_unwritable_dir_never_raises(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    out = BoAmpsOutput(blocker / "sub", task=full_task())
    out.out(make_total(), make_total())  # must not raise
    assert out.save_file_path is None


def report_with_unknown_metadata_fields(tmp_path):
    total = make_total()
    total.metadata["boamps_task"] = {
        **full_task().to_dict(),
        "gpuHours": 3,
        "algorithms": [{"framework": "keras", "seed": 1}],
    }
    out = BoAmpsOutput(tmp_path)
    out.out(total, total)
    return json.loads(Path(out.save_file_path).read_text())


def test_unknown_fields_from_record_metadata_are_dropped_not_fatal(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        report = report_with_unknown_metadata_fields(tmp_path)
    assert validate_report(report) == []
    assert report["task"]["algorithms"] == [{"framework": "keras"}]
    assert "gpuHours" in caplog.text and "algorithms[].seed" in caplog.text


#: the reports the tests above write, for the one comparison with the official schemas
VALID_REPORTS = {
    "with_task": lambda tmp_path: report_with_task(tmp_path)[2],
    "framework_and_user_task": report_with_framework_and_user_task,
    "from_context_file": lambda tmp_path: report_from_context_file(tmp_path)[1],
    "unknown_metadata_fields": report_with_unknown_metadata_fields,
}


@pytest.mark.parametrize("case", sorted(VALID_REPORTS))
def test_reports_match_the_official_schema(case, tmp_path, boamps_validator):
    """Reference: every report our checks accept, the official BoAmps 1.1 schemas accept too."""
    report = VALID_REPORTS[case](tmp_path)
    assert validate_report(report) == []
    assert schema_errors(boamps_validator, report) == []


def test_report_without_task_fails_the_official_schema_on_task(tmp_path, boamps_validator):
    """Reference: a report without a task is written, and the official schema names the task."""
    _, report = report_without_task(tmp_path)
    errors = schema_errors(boamps_validator, report)
    assert errors and any("task" in e for e in errors)


def test_amd_gpus_are_named_in_the_components_with_their_method():
    """Two AMD GPUs as the amdsmi backend describes them (fake amdsmi): BoAmps names the model,
    AMD as the manufacturer, and amdsmi_energy as the GPU's tracking mode."""
    from codecarbon_callbacks_core.hardware.amdsmi import detect_amdsmi
    from codecarbon_callbacks_core.output.boamps.report import build_report
    from fakes.fake_amdsmi import FakeAmdGpu, FakeAmdsmi

    devices = [FakeAmdGpu(uuid=f"{i}aff74a1-0000-1000-8000-00000000000{i}") for i in range(2)]
    gpus, _ = detect_amdsmi(amdsmi=FakeAmdsmi(devices), environ={})
    total = make_total(gpu_model="", gpu_count=2, gpu_method="")
    total.metadata["components"] = [dict(g.describe()) for g in gpus]
    report = build_report(total)
    (gpu,) = [c for c in report["infrastructure"]["components"] if c["componentType"] == "gpu"]
    assert gpu["componentName"] == "AMD Instinct MI300X" and gpu["manufacturer"] == "AMD"
    assert gpu["nbComponent"] == 2
    assert report["measures"][0]["gpuTrackingMode"] == "amdsmi_energy"

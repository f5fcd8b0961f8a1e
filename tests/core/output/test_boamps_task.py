"""The BoAmps task built in the core from plain facts (no framework involved)."""

from __future__ import annotations

from codecarbon_callbacks_core.output.boamps.task import TaskFacts, build_task


def test_a_pretrained_model_in_training_is_finetuning_and_the_user_stage_wins():
    facts = TaskFacts(framework="lightning", pretrained=True, epochs=3, parameters=2.5e9)
    task = build_task(facts)
    assert task["taskStage"] == "finetuning"
    algorithm = task["algorithms"][0]
    assert algorithm["parametersNumber"] == 2.5 and algorithm["epochsNumber"] == 3
    assert build_task(facts, task_stage="training")["taskStage"] == "training"


def test_inference_keeps_requests_and_drops_training_only_fields():
    facts = TaskFacts(
        framework="keras",
        task_stage="inference",
        training=False,
        epochs=3,
        training_type="supervisedLearning",
        nb_request=12,
        data_type="not a boamps type",
        n_samples=5,
    )
    task = build_task(facts, task_family="tabular regression")
    assert task["taskStage"] == "inference" and task["nbRequest"] == 12
    assert task["taskFamily"] == "tabular regression"
    assert "epochsNumber" not in task["algorithms"][0]
    assert "trainingType" not in task["algorithms"][0]
    assert task["dataset"] == [{"dataUsage": "input", "dataType": "other", "dataQuantity": 5}]


def test_the_user_task_and_dataset_lie_over_the_facts():
    facts = TaskFacts(framework="transformers", class_path="pkg.Model", data_type="token")
    user_dataset = [{"dataUsage": "input", "dataType": "text"}]
    task = build_task(facts, task={"algorithms": [{"algorithmName": "bert"}]}, dataset=user_dataset)
    assert task["algorithms"][0]["classPath"] == "pkg.Model"  # merged, not replaced
    assert task["algorithms"][0]["algorithmName"] == "bert"
    assert task["dataset"] == user_dataset  # replaces the one the facts give
    only_task = build_task(facts, task={"dataset": [{"dataType": "image"}]})
    assert only_task["dataset"] == [{"dataType": "image"}]

"""The MLflow dashboard as a user compares in it, read back through the MLflow client: run
names, the pipeline-run group, run times, dataset inputs, the logged and registered model, the
experiment's kind and saved view, and a quiet stage output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from conftest import learnable_images
from mlflow import MlflowClient

from cifarlab import tracking
from cifarlab.linear.classifier import LinearClassifier, save_linear_model
from cifarlab.tracking import dashboard, naming

MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
SRC = str(Path(tracking.__file__).resolve().parents[2])


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    monkeypatch.chdir(tmp_path)
    return MlflowClient(uri)


def _runs(client, name="exp"):
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id], max_results=100)


def _by_stage(client):
    return {
        r.data.tags["cifarlab.stage"]: r
        for r in _runs(client)
        if "mlflow.parentRunId" not in r.data.tags
    }


# --------------------------------------------------------------------------- run names


@pytest.mark.parametrize(
    ("stage", "params", "name"),
    [
        ("svm_train", {"svm.loss": "hinge", "svm.reg": "1"}, "svm_train · hinge · brisk-lark"),
        ("knn_evaluate", {"knn.distance": "l1", "knn.k": "5"},
         "knn_evaluate · l1 k=5 · brisk-lark"),
        ("knn_cv", {"knn.k_choices": "[1, 3]"}, "knn_cv · k-NN · brisk-lark"),
        ("svm_evaluate", {}, "svm_evaluate · linear · brisk-lark"),
        ("download", {"data.url": "x"}, "download · brisk-lark"),
        ("summarize", {"svm.loss": "softmax", "knn.distance": "l2", "knn.k": "1"},
         "summarize · softmax, l2 k=1 · brisk-lark"),
    ],
)  # fmt: skip
def test_run_name_tells_stage_model_and_experiment(stage, params, name):
    assert naming.run_name(stage, params, "brisk-lark") == name


def test_runs_are_named_by_stage_model_and_dvc_experiment(store, monkeypatch):
    with tracking.stage_run("svm_train", {"svm": {"loss": "softmax"}}, experiment="exp") as run:
        with run.child("trial 0: lr=1e-06"):
            pass
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lark")
    with tracking.stage_run("knn_evaluate", {"knn": {"distance": "l1", "k": 5}}, experiment="exp"):
        pass
    with tracking.stage_run("svm_evaluate", {}, experiment="exp", label="hinge"):
        pass
    names = {r.info.run_name for r in _runs(store)}
    assert names == {
        "svm_train · softmax · workspace",
        "trial 0: lr=1e-06",
        "knn_evaluate · l1 k=5 · brisk-lark",
        "svm_evaluate · hinge · brisk-lark",
    }


# --------------------------------------------------------------------------- pipeline runs

# What dvc does: run each stage's command line through `sh -c`, with DVC_STAGE set.
CALLER = """
import os, subprocess, sys
env = dict(os.environ, DVC_STAGE=sys.argv[1])
for _ in range(2):
    subprocess.run(["/bin/sh", "-c", f"{sys.executable} -c '{sys.argv[2]}'"], env=env, check=True)
"""
PRINT_GROUP = "from cifarlab.tracking.naming import pipeline_run; print(pipeline_run())"


def _groups(tmp_path, dvc_stage):
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.run(
        [sys.executable, "-c", CALLER, dvc_stage, PRINT_GROUP],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return proc.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_stages_of_one_dvc_process_share_a_pipeline_run(tmp_path):
    first, second = _groups(tmp_path, "svm_train"), _groups(tmp_path, "svm_train")
    assert len(first) == 2 and first[0] == first[1]  # one caller: one pipeline run
    assert second[0] == second[1] and second[0] != first[0]  # another caller: another


def test_a_stage_run_by_hand_is_a_pipeline_run_of_its_own(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DVC_STAGE"}
    proc = subprocess.run(
        [sys.executable, "-c", CALLER.replace("DVC_STAGE=sys.argv[1]", "X=sys.argv[1]"),
         "x", PRINT_GROUP],
        cwd=tmp_path, env=dict(env, PYTHONPATH=SRC), capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    first, second = proc.stdout.split()
    assert first != second


def test_stage_runs_carry_the_pipeline_run_tag(store, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "knn_cv")  # both "stages" run by this process's parent
    for stage in ("knn_cv", "summarize"):
        with tracking.stage_run(stage, {}, experiment="exp") as run:
            with run.child("l2 k=1"):
                pass
    tags = {r.info.run_name: r.data.tags[naming.PIPELINE_TAG] for r in _runs(store)}
    assert len(tags) == 3 and set(tags.values()) == {naming.pipeline_run()}


# --------------------------------------------------------------------------- run times


def test_run_times_cover_the_stage_block(store):
    before = int(time.time() * 1000)
    with tracking.stage_run("svm_evaluate", {}, experiment="exp") as run:
        time.sleep(1.0)
        with run.child("part"):
            time.sleep(0.3)
        time.sleep(0.2)
    after = int(time.time() * 1000)
    runs = {r.info.run_name: r.info for r in _runs(store)}
    stage, child = runs["svm_evaluate · linear · workspace"], runs["part"]
    assert before <= stage.start_time and stage.end_time <= after
    assert stage.end_time - stage.start_time >= 1500
    assert stage.start_time + 1000 <= child.start_time
    assert 300 <= child.end_time - child.start_time and child.end_time + 200 <= stage.end_time


# --------------------------------------------------------------------------- dataset inputs


def test_the_dataset_is_an_input_with_digest_source_and_split_sizes(store, tmp_path):
    (tmp_path / "data/prepared").mkdir(parents=True)
    sizes = {"train": 49000, "val": 1000, "test": 10000}
    (tmp_path / naming.META_FILE).write_text(json.dumps({"archive_md5": MD5, "sizes": sizes}))
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
    for stage in ("knn_cv", "knn_evaluate"):
        with tracking.stage_run(stage, {}, experiment="exp", data_md5=MD5, dataset={"source": url}):
            pass
    runs = _by_stage(store)
    for stage, context in (("knn_cv", "train"), ("knn_evaluate", "test")):
        (entry,) = runs[stage].inputs.dataset_inputs
        assert (entry.dataset.name, entry.dataset.digest) == ("CIFAR-10", MD5)
        assert entry.dataset.source_type == "http"
        assert json.loads(entry.dataset.source) == {"url": url}
        profile = json.loads(entry.dataset.profile)
        assert profile["train_size"] == 49000 and profile["test_size"] == 10000
        assert profile["num_rows"] == 60000
        assert {t.key: t.value for t in entry.tags} == {"mlflow.data.context": context}


def test_before_prepare_the_dataset_has_no_sizes(store, tmp_path):
    with tracking.stage_run("download", {}, experiment="exp", data_md5=MD5):
        pass
    (entry,) = _by_stage(store)["download"].inputs.dataset_inputs
    assert json.loads(entry.dataset.profile) == {"archive_md5": MD5}
    with tracking.stage_run("prepare", {}, experiment="exp"):  # no md5: no dataset
        pass
    assert not _by_stage(store)["prepare"].inputs.dataset_inputs


# --------------------------------------------------------------------------- the model


def test_the_linear_model_is_a_logged_and_registered_model_with_its_metrics(store, tmp_path):
    X, y = learnable_images(0, 60, d=3072)
    model = LinearClassifier(learning_rate=1e-5, reg=1e-2, batch_size=10, epochs=2).fit(X, y)
    save_linear_model(tmp_path / "svm.npz", model)
    with tracking.stage_run("svm_train", {"svm": {"loss": "hinge"}}, experiment="exp") as run:
        run.log_linear_model(tmp_path / "svm.npz", input_example=X[:2])
        run.log_metrics({"model_val_accuracy": 0.25})
    experiment = store.get_experiment_by_name("exp")
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id], output_format="list"
    )
    assert logged.name == "model" and logged.source_run_id == run.run_id
    assert logged.params["svm.loss"] == "hinge"
    assert {m.key: m.value for m in logged.metrics} == {"model_val_accuracy": 0.25}
    (version,) = store.search_model_versions(f"name='{tracking.REGISTERED_MODEL_NAME}'")
    assert version.run_id == run.run_id and version.source == f"models:/{logged.model_id}"
    assert not (tmp_path / "mlruns").exists()  # nothing in MLflow's default experiment

    # The evaluation of that file links its test accuracy to the model; another file, nothing.
    with tracking.stage_run("svm_evaluate", {}, experiment="exp") as evaluation:
        evaluation.use_model(tmp_path / "svm.npz")
        evaluation.log_metrics({"test_accuracy": 0.3})
    (logged,) = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id], output_format="list"
    )
    metrics = {(m.key, m.run_id): m.value for m in logged.metrics}
    assert metrics == {("model_val_accuracy", run.run_id): 0.25,
                       ("test_accuracy", evaluation.run_id): 0.3}  # fmt: skip
    used = store.get_run(evaluation.run_id).inputs.model_inputs
    assert [m.model_id for m in used] == [logged.model_id]
    (tmp_path / "other.npz").write_bytes(b"not a logged model")
    with tracking.stage_run("svm_evaluate", {}, experiment="exp") as other:
        other.use_model(tmp_path / "other.npz")
        other.log_metrics({"test_accuracy": 0.5})
    assert not store.get_run(other.run_id).inputs.model_inputs


# --------------------------------------------------------------------------- the experiment


def test_the_experiment_opens_on_training_runs_with_the_saved_view(store):
    with tracking.stage_run("download", {}, experiment="exp"):
        pass
    tags = store.get_experiment_by_name("exp").tags
    assert tags[dashboard.KIND_TAG] == "custom_model_development"
    envelope = json.loads(tags[dashboard.VIEW_TAG])
    assert envelope["name"] == dashboard.VIEW_NAME and isinstance(envelope["createdAt"], int)
    columns = json.loads(envelope["state"])["selectedColumns"]
    assert columns[:2] == ["metrics.`knn_test_accuracy`", "metrics.`svm_test_accuracy`"]
    assert "params.`svm.loss`" in columns and "tags.`cifarlab.pipeline_run`" in columns


def test_a_kind_the_user_chose_stays(store):
    experiment_id = store.create_experiment("exp", tags={dashboard.KIND_TAG: "genai_development"})
    assert dashboard.prepare_experiment(store, "exp") == experiment_id
    tags = store.get_experiment(experiment_id).tags
    assert tags[dashboard.KIND_TAG] == "genai_development" and dashboard.VIEW_TAG in tags
    assert dashboard.experiment_tags_to_set(tags) == {}  # nothing more to write next time


def test_make_ui_prints_the_runs_page_of_the_saved_view(store, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")  # main() sets it when unset
    (tmp_path / "params.yaml").write_text(
        (Path(SRC).parent / "params.yaml")
        .read_text()
        .replace("experiment: cifarlab", "experiment: exp")
    )
    assert dashboard.main(["--print-only", "--port", "5001"]) == 0
    experiment_id = store.get_experiment_by_name("exp").experiment_id
    assert capsys.readouterr().out.strip() == (
        f"MLflow runs page: http://127.0.0.1:5001/#/experiments/{experiment_id}/runs"
        f"?viewStateShareKey={dashboard.VIEW_KEY}&workflowType=machine_learning"
    )


# --------------------------------------------------------------------------- quiet output

QUIET_STAGE = """
import numpy as np
from cifarlab import tracking
from cifarlab.linear.classifier import LinearClassifier, save_linear_model
rng = np.random.default_rng(0)
X = rng.integers(0, 256, (40, 3072), dtype=np.uint8)
y = np.arange(40) % 10
save_linear_model("svm.npz", LinearClassifier(batch_size=10, epochs=1).fit(X, y))
with tracking.stage_run("svm_train", {}, experiment="exp", data_md5="ab" * 16) as run:
    run.log_linear_model("svm.npz", input_example=X[:2])
print("stage done")
"""


def test_mlflow_info_chatter_stays_out_of_the_stage_output(store, tmp_path):
    # A fresh store: MLflow creates its tables, runs alembic, validates the input example.
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_LOGGING_LEVEL"}
    proc = subprocess.run(
        [sys.executable, "-c", QUIET_STAGE], cwd=tmp_path, env=dict(env, PYTHONPATH=SRC),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "stage done"
    assert proc.stderr == "", proc.stderr[-3000:]
    assert (tmp_path / "mlflow.db").is_file()

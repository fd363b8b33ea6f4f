"""MLflow tracking against a real SQLite store in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow import MlflowClient

from cifarlab import tracking
from cifarlab.errors import ConfigError


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)
    return MlflowClient(uri)


def _runs(client, name="exp"):
    experiment = client.get_experiment_by_name(name)
    return client.search_runs([experiment.experiment_id], max_results=100)


def test_stage_run_records_params_tags_metrics_and_series(store, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lark")
    with tracking.stage_run(
        "svm_train", {"svm": {"reg": 2.5e4, "epochs": 3}}, experiment="exp", data_md5="ab" * 16
    ) as run:
        run.log_metrics({"val_accuracy": 0.4})
        run.log_series("loss", [float(i) for i in range(2500)])  # more than one log_batch
        with run.child("lr=1e-07", {"learning_rate": 1e-7}) as child:
            child.log_metrics({"val_accuracy": 0.3})
    runs = {r.info.run_name: r for r in _runs(store)}
    parent, child = runs["svm_train"], runs["lr=1e-07"]
    assert parent.info.status == "FINISHED" and child.info.status == "FINISHED"
    assert parent.data.params == {"svm.reg": "25000.0", "svm.epochs": "3"}
    assert parent.data.tags["cifarlab.stage"] == "svm_train"
    assert parent.data.tags["cifarlab.data_md5"] == "ab" * 16
    assert parent.data.tags["dvc.exp_name"] == "brisk-lark"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["cifarlab.stage"] == "svm_train"
    history = store.get_metric_history(parent.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(2500))
    assert {m.value for m in history} == {float(i) for i in range(2500)}


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")]
)
def test_a_failing_stage_ends_its_runs_failed_or_killed(store, error, status):
    with pytest.raises(error):
        with tracking.stage_run("knn_cv", {}, experiment="exp") as run:
            with run.child("l2 k=1"):
                raise error()
    assert {r.info.status for r in _runs(store)} == {status}


def test_empty_experiment_name_is_a_config_error(store):
    with pytest.raises(ConfigError, match="tracking.experiment"):
        with tracking.stage_run("download", {}, experiment=""):
            pass


def test_project_root_leaves_dvc_experiment_workspaces(tmp_path):
    workspace = tmp_path / "proj" / ".dvc" / "tmp" / "exps" / "tmpab12"
    assert tracking.project_root(workspace) == (tmp_path / "proj").resolve()
    assert tracking.project_root(tmp_path / "proj") == (tmp_path / "proj").resolve()


def test_default_store_is_sqlite_at_the_project_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{Path(tmp_path).resolve() / 'mlflow.db'}"


def test_flatten_nested_params():
    assert tracking.flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": None}) == {
        "a.b": "1",
        "a.c.d": "[1, 2]",
        "e": "None",
    }

"""MLflow tracking against a real SQLite store in a temporary folder."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import learnable_images
from mlflow import MlflowClient

from cifarlab import tracking
from cifarlab.errors import ConfigError, TrackingError
from cifarlab.linear.classifier import LinearClassifier, save_linear_model


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)  # run names end in "workspace"
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
    parent, child = runs["svm_train · linear · brisk-lark"], runs["lr=1e-07"]
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


# --------------------------------------------------------------------------- linear models


def _images(n=60, seed=0):
    """Raw uint8 CIFAR-shaped rows whose class shows in the first pixels."""
    return learnable_images(seed, n, d=3072)


def _logged_model(tmp_path):
    X, y = _images()
    model = LinearClassifier(learning_rate=1e-5, reg=1e-2, batch_size=10, epochs=3).fit(X, y)
    save_linear_model(tmp_path / "svm.npz", model)
    with tracking.stage_run("svm_train", {}, experiment="exp") as run:
        run.log_linear_model(tmp_path / "svm.npz", input_example=X[:2])
    return model, X, f"runs:/{run.run_id}/model"


def test_linear_model_is_a_pyfunc_model_of_raw_images(store, tmp_path):
    import mlflow.pyfunc

    model, X, uri = _logged_model(tmp_path)
    (tmp_path / "loaded").mkdir()  # MLflow downloads there, not to a temporary folder it keeps
    loaded = mlflow.pyfunc.load_model(uri, dst_path=str(tmp_path / "loaded"))
    labels = loaded.predict(X)
    assert labels.dtype == np.int64 and labels.shape == (60,)
    np.testing.assert_array_equal(labels, model.predict(X))
    (inputs,) = loaded.metadata.signature.inputs.inputs
    (outputs,) = loaded.metadata.signature.outputs.inputs
    assert (inputs.type, inputs.shape) == (np.dtype(np.uint8), (-1, 3072))
    assert (outputs.type, outputs.shape) == (np.dtype(np.int64), (-1,))
    (tmp_path / "dl").mkdir()
    local = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "dl")))
    assert (local / "input_example.json").is_file()
    assert (local / "code" / "cifarlab" / "serving.py").is_file()
    assert not list(local.rglob("__pycache__"))
    with pytest.raises(Exception, match="3072"):  # MLflow's schema check or ours
        loaded.predict(X[:, :100])


def test_pyfunc_model_loads_where_cifarlab_is_not_installed(store, tmp_path):
    model, X, uri = _logged_model(tmp_path)
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "loaded").mkdir()
    src = str(Path(tracking.__file__).resolve().parents[2])
    script = f"""
import importlib.util, sys
sys.path = [p for p in sys.path if p and p.rstrip("/") != {src!r}]
assert importlib.util.find_spec("cifarlab") is None, "cifarlab still importable"
import mlflow.pyfunc, numpy as np
model = mlflow.pyfunc.load_model({uri!r}, dst_path={str(tmp_path / "loaded")!r})
labels = model.predict(np.load({str(tmp_path / "x.npy")!r}))
import cifarlab
print(cifarlab.__file__)
print(",".join(map(str, labels)))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    origin, labels = proc.stdout.strip().splitlines()[-2:]
    assert "/code/cifarlab/" in origin and not origin.startswith(src)
    assert [int(v) for v in labels.split(",")] == model.predict(X).tolist()


def test_epoch_logger_streams_the_curves_of_a_fit(store):
    X, y = _images()
    X_val, y_val = _images(n=30, seed=1)
    with tracking.stage_run("svm_train", {}, experiment="exp") as run:
        with run.epoch_logger() as on_epoch_end:
            model = LinearClassifier(
                learning_rate=1e-5, reg=1e-2, batch_size=16, epochs=3
            ).fit(X, y, X_val, y_val, on_epoch_end=on_epoch_end)
    loss = sorted(store.get_metric_history(run.run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in loss] == list(range(model.n_steps_))  # 3 epochs x 4 steps
    assert [m.value for m in loss] == model.loss_history_.tolist()
    for key, history in (
        ("train_accuracy", model.train_accuracy_history_),
        ("val_accuracy", model.val_accuracy_history_),
    ):
        logged = sorted(store.get_metric_history(run.run_id, key), key=lambda m: m.step)
        assert [(m.step, m.value) for m in logged] == list(enumerate(history.tolist()))


def _record(number, state, error=None, **histories):
    from cifarlab.linear.search import TrialRecord

    empty = np.empty(0)
    return TrialRecord(
        number=number,
        hyperparameters={"learning_rate": 1e-6 * (number + 1), "reg": 100.0, "batch_size": 200},
        state=state,
        loss_history=histories.get("loss", empty),
        train_accuracy_history=histories.get("train", empty),
        val_accuracy_history=histories.get("val", empty),
        best_epoch=histories.get("best_epoch", -1),
        seconds=1.5,
        error=error,
        worker="host:1",
        retry_of=None,
    )


def test_log_trial_makes_a_child_run_per_optuna_state(store):
    curves = dict(loss=np.array([2.0, 1.0, 0.5]), train=np.array([0.3, 0.4]),
                  val=np.array([0.25, 0.35]), best_epoch=1)  # fmt: skip
    ok = _record(0, "COMPLETE", **curves)
    pruned = _record(1, "PRUNED", loss=np.array([2.0]), train=np.array([0.2]),
                     val=np.array([0.1]), best_epoch=0)  # fmt: skip
    bad = _record(2, "FAIL", "training diverged: the loss became inf at step 3")
    killed = _record(3, "FAIL", val=np.array([0.2]))  # its worker died after one epoch
    with tracking.stage_run("svm_tune", {}, experiment="exp", data_md5="cd" * 16) as run:
        for record in (ok, pruned, bad, killed):
            run.log_trial(record)
    runs = {r.info.run_name: r for r in _runs(store)}
    child_ok, child_bad = runs[ok.name], runs[bad.name]
    child_pruned, child_killed = runs[pruned.name], runs[killed.name]
    assert child_ok.info.status == "FINISHED" and child_bad.info.status == "FAILED"
    # Pruning is the search working, not a failure: FINISHED, and the state says pruned.
    assert child_pruned.info.status == "FINISHED"
    assert child_pruned.data.tags["cifarlab.trial_state"] == "PRUNED"
    assert child_ok.data.tags["cifarlab.trial_state"] == "COMPLETE"
    assert child_killed.info.status == "KILLED"
    assert "cifarlab.error" not in child_killed.data.tags
    assert child_bad.data.tags["cifarlab.error"].startswith("training diverged")
    assert child_ok.data.tags["cifarlab.worker"] == "host:1"
    assert child_ok.data.params["learning_rate"] == "1e-06"
    assert child_ok.data.params["trial"] == "0"
    assert child_ok.data.metrics["best_val_accuracy"] == 0.35
    assert child_pruned.data.metrics["epochs_run"] == 1
    assert child_ok.data.tags["cifarlab.data_md5"] == "cd" * 16
    history = store.get_metric_history(child_killed.info.run_id, "val_accuracy")
    assert [m.value for m in history] == [0.2]
    parent = runs["svm_tune · linear · workspace"]
    assert child_ok.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert len(store.get_metric_history(child_ok.info.run_id, "loss")) == 3
    assert child_bad.data.tags["cifarlab.error"].startswith("training diverged")


def test_a_failed_stage_run_keeps_the_error_as_a_tag(store):
    with pytest.raises(ValueError):
        with tracking.stage_run("svm_train", {}, experiment="exp"):
            raise ValueError("learning_rate=1e+30 diverged at step 7")
    (run,) = _runs(store)
    assert run.info.status == "FAILED"
    assert run.data.tags["cifarlab.error"] == "ValueError: learning_rate=1e+30 diverged at step 7"


def test_training_error_still_stores_the_epochs_done(store):
    X, y = _images()
    calls = []

    def fail_in_epoch_2(epoch, *args):
        calls.append(epoch)
        if epoch == 1:
            raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        with tracking.stage_run("svm_train", {}, experiment="exp") as run:
            with run.epoch_logger() as on_epoch_end:

                def both(epoch, *args):
                    on_epoch_end(epoch, *args)
                    fail_in_epoch_2(epoch, *args)

                LinearClassifier(learning_rate=1e-5, batch_size=16, epochs=4).fit(
                    X, y, on_epoch_end=both
                )
    (logged,) = _runs(store)
    assert logged.info.status == "FAILED" and calls == [0, 1]
    assert len(store.get_metric_history(run.run_id, "train_accuracy")) == 2


# --------------------------------------------------------------------------- the tracking worker


def test_a_failure_in_the_worker_is_a_tracking_error_and_fails_the_run(store):
    with pytest.raises(TrackingError, match="svm.reg"):
        with tracking.stage_run("svm_train", {"svm": {"reg": 1}}, experiment="exp") as run:
            run.log_params({"svm": {"reg": 2}})  # MLflow refuses to change a logged param
    (logged,) = _runs(store)
    assert logged.info.status == "FAILED"
    assert "svm.reg" in logged.data.tags["cifarlab.error"]


def test_the_worker_error_stops_the_stage_at_its_next_tracking_call(store):
    with pytest.raises(TrackingError, match="svm.reg"):
        with tracking.stage_run("svm_train", {"svm": {"reg": 1}}, experiment="exp") as run:
            run.log_params({"svm": {"reg": 2}})
            assert run.run_id  # waits for the worker, which has failed by then
            run.log_metrics({"val_accuracy": 0.5})
            pytest.fail("the stage went on after the worker failed")


def test_logging_a_missing_file_is_an_error_at_once(store, tmp_path):
    with pytest.raises(ConfigError, match="missing.png not found"):
        with tracking.stage_run("svm_train", {}, experiment="exp") as run:
            run.log_artifact(tmp_path / "missing.png")
    (logged,) = _runs(store)
    assert logged.info.status == "FAILED"


def test_a_worker_that_cannot_start_is_a_clear_error(store, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(TrackingError, match="tracking worker exited with code 1"):
        with tracking.stage_run("download", {}, experiment="exp") as run:
            run.log_metrics({"archive_bytes": 1})


def test_a_worker_that_cannot_be_launched_is_a_clear_error(store, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with pytest.raises(TrackingError, match="cannot start the MLflow tracking worker"):
        with tracking.stage_run("download", {}, experiment="exp"):
            pytest.fail("the stage ran without its tracking worker")


def _stage_script(body: str) -> str:
    return f"""
import os, signal, sys, time
from cifarlab import tracking
with tracking.stage_run("svm_train", {{}}, experiment="exp") as run:
    run.log_metrics({{"val_accuracy": 0.25}})
    print(run.run_id, flush=True)
{body}
"""


def _wait_for_status(client, run_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_run(run_id).info.status
        if status != "RUNNING" or time.monotonic() > deadline:
            return client.get_run(run_id)
        time.sleep(0.2)


def test_a_killed_stage_process_leaves_its_run_killed(store, tmp_path):
    script = _stage_script("    os.kill(os.getpid(), signal.SIGKILL)")
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL
    run = _wait_for_status(store, proc.stdout.split()[0])
    assert run.info.status == "KILLED"
    assert run.data.metrics["val_accuracy"] == 0.25
    assert "exited without ending" in run.data.tags["cifarlab.error"]


def test_ctrl_c_to_the_process_group_ends_the_run_killed(store, tmp_path):
    # A terminal's Ctrl-C reaches the stage and its tracking worker: the worker must outlive it.
    proc = subprocess.Popen(
        [sys.executable, "-c", _stage_script("    time.sleep(120)")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        run_id = proc.stdout.readline().strip()
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) != 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    run = store.get_run(run_id)  # ended before the stage exited: no waiting
    assert run.info.status == "KILLED"
    assert run.data.metrics["val_accuracy"] == 0.25

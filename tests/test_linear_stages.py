"""The linear stages run as scripts in a project copy: divergence fails them cleanly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cifarlab.data.prepared import Split, save_split

pytestmark = pytest.mark.e2e

OUTPUTS = {
    "svm_tune": ["reports/svm_tune.csv", "reports/svm_choice.json", "reports/plots/svm_tune.png"],
    "svm_train": [
        "data/models/svm.npz",
        "reports/svm_train.json",
        "reports/svm_loss.csv",
        "reports/svm_epochs.csv",
        "reports/plots/svm_loss.png",
        "reports/plots/svm_templates.png",
    ],
}


def prepared(project, loss="hinge"):
    """Tiny prepared splits (what `prepare` writes) and quick linear params."""
    rng = np.random.default_rng(0)
    for name, n in (("train", 60), ("val", 20)):
        y = (np.arange(n) % 10).astype(np.uint8)
        X = rng.integers(0, 256, size=(n, 3072)).astype(np.uint8)
        save_split(project.root / f"data/prepared/{name}.npz", Split(X, y))
    meta = {"class_names": [f"c{i}" for i in range(10)], "archive_md5": "ab" * 16, "sizes": {}}
    (project.root / "data/prepared/meta.json").write_text(json.dumps(meta))
    project.set_params(
        svm={"loss": loss, "epochs": 3, "patience": None},
        svm_tune={
            "sampler": "grid", "learning_rates": [1.0e-7, 1.0e30], "regs": [1.0e2],
            "batch_sizes": [16],
        },
        resources={"n_jobs": 2},
    )  # fmt: skip


def runs_by_name(project):
    """Stage runs by their stage (the ``cifarlab.stage`` tag), child runs by their name."""
    from mlflow import MlflowClient

    client = MlflowClient(project.tracking_uri)
    experiment = client.get_experiment_by_name("cifarlab")
    return {
        r.info.run_name if "mlflow.parentRunId" in r.data.tags else r.data.tags["cifarlab.stage"]: r
        for r in client.search_runs([experiment.experiment_id])
    }


def assert_failed_cleanly(project, proc, stage):
    assert proc.returncode == 1, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and "training diverged" in message
    assert "at step " in message and "learning_rate=1e+30" in message and "reg=100.0" in message
    for path in OUTPUTS[stage]:
        assert not (project.root / path).exists(), path
    leftovers = [p for p in project.root.rglob("*.tmp") if ".git" not in p.parts]
    assert not leftovers, leftovers
    run = runs_by_name(project)[stage]
    assert run.info.status == "FAILED"
    assert "training diverged" in run.data.tags["cifarlab.error"]


@pytest.mark.parametrize("loss", ["hinge", "softmax"])
def test_svm_train_diverging_fails_its_run_and_writes_nothing(project, loss):
    prepared(project, loss)
    choice = {"learning_rate": 1.0e30, "reg": 100.0, "batch_size": 16, "val_accuracy": 0.1}
    (project.root / "reports").mkdir()
    (project.root / "reports/svm_choice.json").write_text(json.dumps(choice))
    proc = project.run("python", "stages/svm_train.py", check=False)
    assert_failed_cleanly(project, proc, "svm_train")
    assert f"loss='{loss}'" in proc.stderr


def test_svm_tune_diverging_trial_fails_the_search_and_writes_nothing(project):
    prepared(project)
    proc = project.run("python", "stages/svm_tune.py", check=False)
    assert_failed_cleanly(project, proc, "svm_tune")
    assert "trial 1: lr=1e+30" in proc.stderr
    runs = runs_by_name(project)
    trial = next(r for name, r in runs.items() if name.startswith("trial 1:"))
    assert trial.info.status == "FAILED" and "at step" in trial.data.tags["cifarlab.error"]

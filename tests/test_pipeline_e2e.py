"""End to end: `dvc repro` in a temporary project copy, on archives the tests build and serve."""

from __future__ import annotations

import json

import numpy as np
import pytest
from archive_builder import build_archive, records_to_bytes, serve_directory
from conftest import MIRROR, QUICK_PARAMS, REPO, STAGES
from test_dvc_yaml import code_closure

pytestmark = pytest.mark.e2e



def mlflow_runs(project):
    from mlflow import MlflowClient

    client = MlflowClient(project.tracking_uri)
    experiment = client.get_experiment_by_name("cifarlab")
    assert experiment is not None, "no 'cifarlab' experiment in the project's store"
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


@pytest.fixture
def served_archive(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    md5 = build_archive(www / "cifar-10-binary.tar.gz", records_per_batch=24, test_records=30)
    with serve_directory(www) as base_url:
        yield f"{base_url}cifar-10-binary.tar.gz", md5


def test_repro_end_to_end_then_force_is_identical(project, served_archive):
    url, md5 = served_archive
    project.set_params(data={"url": url, "md5": md5}, **QUICK_PARAMS)
    project.dvc("repro")

    metrics = json.loads((project.root / "reports/metrics.json").read_text())
    assert set(metrics) == {"knn", "svm"}
    assert list(metrics["knn"]) == ["test_accuracy", "cv_accuracy"]
    assert list(metrics["svm"]) == ["test_accuracy", "val_accuracy"]
    choices = json.loads((project.root / "reports/choices.json").read_text())
    assert choices["knn"]["distance"] in ("l1", "l2") and choices["knn"]["k"] in (1, 3, 5)
    assert set(choices["svm"]) == {"loss", "learning_rate", "reg", "batch_size"}
    for model in ("knn", "svm"):
        assert 0.0 <= metrics[model]["test_accuracy"] <= 1.0

    for path in [
        "data/raw/cifar-10-binary.tar.gz",
        "data/prepared/train.npz",
        "data/prepared/val.npz",
        "data/prepared/test.npz",
        "data/models/svm.npz",
        "reports/class_counts.csv",
        "reports/knn_cv.csv",
        "reports/knn_choice.json",
        "reports/plots/knn_cv.png",
        "reports/svm_tune.csv",
        "reports/svm_choice.json",
        "reports/svm_train.json",
        "reports/svm_loss.csv",
        "reports/plots/svm_loss.png",
        "reports/plots/svm_templates.png",
        "reports/plots/svm_tune.png",
        "reports/knn_cv_summary.csv",
        "reports/svm_epochs.csv",
        "reports/choices.json",
        "reports/index.html",
    ] + [
        f"reports/{name}"
        for model in ("knn", "svm")
        for name in (f"{model}_predictions.csv", f"{model}_per_class.csv",
                     f"plots/{model}_confusion.png", f"plots/{model}_misclassified.png")
    ] + ["reports/plots/knn_neighbors.png"]:
        assert (project.root / path).is_file(), path
    counts = (project.root / "reports/class_counts.csv").read_text().splitlines()
    assert counts[0] == "class,train,val,test" and len(counts) == 11
    cv = (project.root / "reports/knn_cv.csv").read_text().splitlines()
    assert len(cv) == 1 + 2 * 3 * 3  # header + distances x k x folds

    client, runs = mlflow_runs(project)
    by_stage = {}
    for run in runs:
        by_stage.setdefault(run.data.tags.get("cifarlab.stage"), []).append(run)
    parents = {
        s: [r for r in by_stage[s] if "mlflow.parentRunId" not in r.data.tags] for s in STAGES
    }
    assert all(len(parents[s]) == 1 for s in STAGES), {s: len(v) for s, v in parents.items()}
    for stage in STAGES:
        run = parents[stage][0]
        assert run.info.status == "FINISHED"
        assert run.data.tags["cifarlab.data_md5"] == md5
        assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    assert parents["knn_cv"][0].data.params["knn.folds"] == "3"
    knn_children = [r for r in by_stage["knn_cv"] if "mlflow.parentRunId" in r.data.tags]
    assert len(knn_children) == 6
    assert all(
        r.data.tags["mlflow.parentRunId"] == parents["knn_cv"][0].info.run_id for r in knn_children
    )
    tune_children = [r for r in by_stage["svm_tune"] if "mlflow.parentRunId" in r.data.tags]
    assert len(tune_children) == 4
    assert {(r.data.params["learning_rate"], r.data.params["reg"]) for r in tune_children} == {
        (lr, reg) for lr in ("1e-07", "1e-06") for reg in ("100.0", "10000.0")
    }
    for child in tune_children:
        assert child.info.status == "FINISHED"
        assert child.data.params["batch_size"] == "16"
        epochs_run = len(client.get_metric_history(child.info.run_id, "val_accuracy"))
        assert 1 <= epochs_run <= 3
        assert len(client.get_metric_history(child.info.run_id, "loss")) == epochs_run * 7
    tune_table = (project.root / "reports/svm_tune.csv").read_text().splitlines()
    assert tune_table[0].startswith("trial,learning_rate,reg,batch_size,") and len(tune_table) == 5
    choice = json.loads((project.root / "reports/svm_choice.json").read_text())
    train_run = parents["svm_train"][0]
    summary = json.loads((project.root / "reports/svm_train.json").read_text())
    assert summary["val_accuracy"] == choice["val_accuracy"]  # the chosen trial, reproduced
    n_steps = len((project.root / "reports/svm_loss.csv").read_text().splitlines()) - 1
    steps_per_epoch = -(-(24 * 5 - 20) // 16)  # ceil(train / batch)
    assert n_steps == summary["epochs_run"] * steps_per_epoch
    loss = sorted(client.get_metric_history(train_run.info.run_id, "loss"), key=lambda m: m.step)
    assert [m.step for m in loss] == list(range(n_steps))
    assert len(client.get_metric_history(train_run.info.run_id, "val_accuracy")) == (
        summary["epochs_run"]
    )
    artifacts = {a.path for a in client.list_artifacts(train_run.info.run_id)}
    assert {"svm_loss.png", "svm_templates.png"} <= artifacts
    logged = [
        m for m in client.search_logged_models([train_run.info.experiment_id])
        if m.source_run_id == train_run.info.run_id
    ]  # fmt: skip
    assert [m.name for m in logged] == ["model"]
    model_files = {a.path for a in client.list_logged_model_artifacts(logged[0].model_id)}
    assert {"MLmodel", "code", "data"} <= model_files
    assert client.search_model_versions(f"run_id = '{train_run.info.run_id}'")  # registered
    # One `dvc repro`: one pipeline run shared by all its stages.
    assert len({parents[s][0].data.tags["cifarlab.pipeline_run"] for s in STAGES}) == 1
    summary_run = parents["summarize"][0]
    assert summary_run.data.metrics["knn_test_accuracy"] == metrics["knn"]["test_accuracy"]
    assert summary_run.data.metrics["svm_test_accuracy"] == metrics["svm"]["test_accuracy"]
    for model in ("knn", "svm"):
        run = parents[f"{model}_evaluate"][0]
        assert run.data.metrics["test_accuracy"] == metrics[model]["test_accuracy"]
    # The report page links the stage runs and is logged on its own run.
    page = (project.root / "reports/index.html").read_text()
    assert summary_run.info.run_id in page
    report_artifacts = client.list_artifacts(parents["report"][0].info.run_id)
    assert {a.path for a in report_artifacts} == {"index.html"}
    # Settings that cannot change a result are recorded on the runs, though no DVC params.
    assert parents["knn_cv"][0].data.params["resources.memory_budget_mb"] == "64"
    assert parents["svm_tune"][0].data.params["resources.n_jobs"] == "2"

    # Reproducible: every random choice is seeded from params. The stages that draw random
    # numbers, run again, write the same bytes: dvc.lock's hashes of all their outputs still
    # match, so nothing downstream is out of date.
    project.commit("first run")
    project.dvc("repro", "--force", "--single-item", "prepare", "knn_cv", "svm_tune", "svm_train")
    assert changed_stages(project) == set()
    assert (project.root / "reports/svm_tune.csv").read_text().splitlines() == tune_table
    check_dvc_status_names_the_importers(project)

    # svm.loss switches the whole linear chain to softmax and reruns none of the k-NN work; an
    # experiment in a temporary DVC workspace logs to the project's own store.
    before = len(mlflow_runs(project)[1])
    project.dvc("exp", "run", "--temp", "-S", "svm.loss=softmax")
    after = mlflow_runs(project)[1]
    exp_runs = [r for r in after if r.data.tags.get("dvc.exp_name")]
    assert len(after) > before and exp_runs
    exp_stages = {
        r.data.tags["cifarlab.stage"]: r
        for r in exp_runs
        if "mlflow.parentRunId" not in r.data.tags
    }
    assert set(exp_stages) == {"svm_tune", "svm_train", "svm_evaluate", "summarize", "report"}
    assert all(r.info.status == "FINISHED" for r in exp_stages.values())
    assert exp_stages["svm_train"].data.params["svm.loss"] == "softmax"
    assert not list((project.root / ".dvc" / "tmp").rglob("mlflow.db"))


def changed_stages(project) -> set[str]:
    return set(json.loads(project.dvc("status", "--json").stdout or "{}"))


def check_dvc_status_names_the_importers(project):
    """After a run: editing a module makes `dvc status` name exactly the stages whose scripts
    import it (followed statically, as tests/test_dvc_yaml.py does); a setting that cannot
    change a result names none; a k-NN param names only k-NN stages, a linear one only linear
    stages."""
    assert changed_stages(project) == set()
    closures = {stage: code_closure(REPO / "stages" / f"{stage}.py") for stage in STAGES}
    modules = sorted(set().union(*closures.values()))
    assert len(modules) >= 15
    for module in modules:
        path = project.root / module
        original = path.read_bytes()
        path.write_bytes(original + b"\n# an edit\n")
        try:
            importers = {stage for stage, files in closures.items() if module in files}
            assert changed_stages(project) == importers, module
        finally:
            path.write_bytes(original)
    for section, values, expected in [
        ("tracking", {"experiment": "renamed"}, set()),
        ("resources", {"memory_budget_mb": 128, "n_jobs": 1}, set()),
        ("knn", {"folds": 4}, {"knn_cv"}),
        ("svm", {"epochs": 2}, {"svm_tune", "svm_train"}),
        ("svm_tune", {"regs": [1.0e2, 1.0e3]}, {"svm_tune"}),
    ]:
        original = (project.root / "params.yaml").read_bytes()
        project.set_params(**{section: values})
        try:
            assert changed_stages(project) == expected, section
        finally:
            (project.root / "params.yaml").write_bytes(original)
    assert changed_stages(project) == set()


def test_wrong_md5_fails_clearly_and_leaves_nothing(project, served_archive):
    url, md5 = served_archive
    wrong = "0" * 32
    project.set_params(data={"url": url, "md5": wrong}, **QUICK_PARAMS)
    proc = project.dvc("repro", check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert wrong in output and md5 in output
    assert not (project.root / "data/raw/cifar-10-binary.tar.gz").exists()
    assert not list((project.root / "data").rglob("*")) or all(
        p.is_dir() for p in (project.root / "data").rglob("*")
    )
    _, runs = mlflow_runs(project)
    assert [r.info.status for r in runs] == ["FAILED"]


def test_bad_archive_stops_prepare_with_no_outputs(project, tmp_path):
    www = tmp_path / "bad"
    www.mkdir()
    X = np.zeros((3, 3072), np.uint8)
    bad = records_to_bytes(X, np.array([1, 12, 3], np.uint8))
    md5 = build_archive(www / "a.tar.gz", batches={"cifar-10-batches-bin/data_batch_2.bin": bad})
    project.set_params(data={"url": str(www / "a.tar.gz"), "md5": md5}, **QUICK_PARAMS)
    proc = project.dvc("repro", check=False)
    assert proc.returncode != 0
    assert "12" in proc.stderr and "data_batch_2.bin" in proc.stderr
    assert not (project.root / "data/prepared").exists() or not any(
        (project.root / "data/prepared").iterdir()
    )
    assert not (project.root / "reports/class_counts.csv").exists()


def _mirror_subset(path, per_batch, test_records):
    from cifarlab.data.archive import read_cifar10_archive

    full = read_cifar10_archive(MIRROR / "cifar-10-binary.tar.gz")
    members = {
        f"cifar-10-batches-bin/data_batch_{i}.bin": records_to_bytes(X[:per_batch], y[:per_batch])
        for i, (X, y) in enumerate(full.train_batches, start=1)
    }
    X, y = full.test
    members["cifar-10-batches-bin/test_batch.bin"] = records_to_bytes(
        X[:test_records], y[:test_records]
    )
    return build_archive(path, batches=members)


@pytest.mark.skipif(not (MIRROR / "cifar-10-binary.tar.gz").exists(), reason="no CIFAR-10 mirror")
def test_repro_on_a_subset_of_the_mirror(project, tmp_path):
    www = tmp_path / "mirror"
    www.mkdir()
    md5 = _mirror_subset(www / "cifar-10-binary.tar.gz", per_batch=800, test_records=1000)
    with serve_directory(www) as base_url:
        project.set_params(
            data={"url": f"{base_url}cifar-10-binary.tar.gz", "md5": md5},
            split={"val_size": 500, "seed": 0},
            knn={"k_choices": [1, 5, 10], "folds": 3, "train_size": None},
            svm={"epochs": 5},
            svm_tune={"sampler": "random", "n_trials": 4, "batch_sizes": [100, 200]},
        )
        project.dvc("repro")
    metrics = json.loads((project.root / "reports/metrics.json").read_text())
    # Chance is 0.10; real images from 3,500 training samples do far better.
    assert metrics["knn"]["test_accuracy"] > 0.18
    assert metrics["svm"]["test_accuracy"] > 0.20

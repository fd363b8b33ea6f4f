"""Stage summarize: the answer first. reports/metrics.json holds each model's test accuracy
(then its CV / val accuracy); reports/choices.json the hyperparameters they were chosen with.

It reads only the small result files of the other stages, so a change to one model scores
that model again and rewrites this summary, without touching the other model.
"""

import json

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.params import load_params
from cifarlab.tracking import stage_run

KNN, KNN_CV = "reports/knn_test.json", "reports/knn_cv.json"
SVM, SVM_TRAIN = "reports/svm_test.json", "reports/svm_train.json"
METRICS, CHOICES = "reports/metrics.json", "reports/choices.json"
SVM_CHOSEN = ("loss", "learning_rate", "reg", "batch_size")


def main() -> None:
    params = load_params()
    knn = io.read_json(KNN, keys=("test_accuracy", "distance", "k"))
    knn_cv = io.read_json(KNN_CV, keys=("cv_accuracy",))
    svm = io.read_json(SVM, keys=("test_accuracy",))
    svm_train = io.read_json(SVM_TRAIN, keys=("val_accuracy", *SVM_CHOSEN))
    meta = io.read_json("data/prepared/meta.json")
    choices = {
        "knn": {"distance": knn["distance"], "k": knn["k"]},
        "svm": {key: svm_train[key] for key in SVM_CHOSEN},
    }
    # The choices are this run's params, so the MLflow runs table shows them beside the answer.
    with stage_run(
        "summarize",
        choices,
        experiment=params["tracking"]["experiment"],
        data_md5=meta["archive_md5"],
    ) as run:
        metrics = {
            "knn": {"test_accuracy": knn["test_accuracy"], "cv_accuracy": knn_cv["cv_accuracy"]},
            "svm": {
                "test_accuracy": svm["test_accuracy"],
                "val_accuracy": svm_train["val_accuracy"],
            },
        }
        # Not io.write_json, which sorts keys: the file's order is the column order of
        # `dvc exp show` / `dvc metrics diff`, test accuracy first.
        io.write_text(METRICS, json.dumps(metrics, indent=2) + "\n")
        io.write_json(CHOICES, choices)
        run.log_metrics(
            {
                "knn_test_accuracy": knn["test_accuracy"],
                "svm_test_accuracy": svm["test_accuracy"],
                "knn_cv_accuracy": knn_cv["cv_accuracy"],
                "svm_val_accuracy": svm_train["val_accuracy"],
            }
        )
        run.log_artifact(METRICS)
        run.log_artifact(CHOICES)
        print(
            f"summarize: k-NN ({knn['distance']}, k={knn['k']}) test accuracy "
            f"{knn['test_accuracy']:.4f}; linear ({svm_train['loss']} loss) test "
            f"accuracy {svm['test_accuracy']:.4f}"
        )


if __name__ == "__main__":
    run_stage(main)

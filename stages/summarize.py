"""Stage summarize: both test evaluations and the linear model's choice in reports/metrics.json.

It reads only the small result files of the evaluation stages, so a change to one model
scores that model again and rewrites this summary, without touching the other model.
"""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.params import load_params
from cifarlab.tracking import stage_run

KNN, SVM, SVM_TRAIN = "reports/knn_test.json", "reports/svm_test.json", "reports/svm_train.json"
METRICS = "reports/metrics.json"


def main() -> None:
    params = load_params()
    knn = io.read_json(KNN, keys=("test_accuracy", "distance", "k"))
    svm = io.read_json(SVM, keys=("test_accuracy",))
    svm_train = io.read_json(SVM_TRAIN, keys=("val_accuracy", "learning_rate", "reg"))
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "summarize", {}, experiment=params["tracking"]["experiment"], data_md5=meta["archive_md5"]
    ) as run:
        metrics = {
            "knn": {key: knn[key] for key in ("test_accuracy", "distance", "k")},
            "svm": {
                "test_accuracy": svm["test_accuracy"],
                **{key: svm_train[key] for key in ("val_accuracy", "learning_rate", "reg")},
            },
        }
        io.write_json(METRICS, metrics)
        run.log_metrics(
            {"knn_test_accuracy": knn["test_accuracy"], "svm_test_accuracy": svm["test_accuracy"]}
        )
        run.log_artifact(METRICS)
        print(
            f"summarize: k-NN ({knn['distance']}, k={knn['k']}) test accuracy "
            f"{knn['test_accuracy']:.4f}; linear ({svm_train.get('loss', 'hinge')} loss) test "
            f"accuracy {svm['test_accuracy']:.4f}"
        )


if __name__ == "__main__":
    run_stage(main)

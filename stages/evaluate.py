"""Stage evaluate: the one look at the test split, for the chosen k-NN and the final SVM."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.params import load_params
from cifarlab.pipeline import knn_test_accuracy, load_linear_model, load_split
from cifarlab.tracking import stage_run

METRICS = "reports/metrics.json"


def main() -> None:
    params = load_params()
    memory_budget = params["knn"].int("memory_budget_mb", minimum=16) << 20
    knn_choice = io.read_json("reports/knn_choice.json")
    svm_summary = io.read_json("reports/svm_train.json")
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "evaluate",
        {"knn": knn_choice, "svm": svm_summary},
        experiment=params["tracking"].str("experiment"),
        data_md5=meta["archive_md5"],
    ) as run:
        train, val, test = (load_split(f"data/prepared/{s}.npz") for s in ("train", "val", "test"))
        # k-NN has nothing to tune on val, so its reference set is all 50,000 training images.
        knn_accuracy = knn_test_accuracy(
            [train, val],
            test,
            metric=knn_choice["distance"],
            k=knn_choice["k"],
            memory_budget_bytes=memory_budget,
        )
        svm_accuracy = float(load_linear_model("data/models/svm.npz").score(test.X, test.y))
        metrics = {
            "knn": {
                "test_accuracy": knn_accuracy,
                "distance": knn_choice["distance"],
                "k": knn_choice["k"],
            },
            "svm": {
                "test_accuracy": svm_accuracy,
                "val_accuracy": svm_summary["val_accuracy"],
                "learning_rate": svm_summary["learning_rate"],
                "reg": svm_summary["reg"],
            },
        }
        io.write_json(METRICS, metrics)
        run.log_metrics({"knn_test_accuracy": knn_accuracy, "svm_test_accuracy": svm_accuracy})
        run.log_artifact(METRICS)
        print(
            f"evaluate: k-NN ({knn_choice['distance']}, k={knn_choice['k']}) test accuracy "
            f"{knn_accuracy:.4f}; linear ({svm_summary.get('loss', 'hinge')} loss) test accuracy "
            f"{svm_accuracy:.4f}"
        )


if __name__ == "__main__":
    run_stage(main)

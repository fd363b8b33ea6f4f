"""Stage knn_evaluate: the one look at the test split for k-NN, with knn_cv's k and distance."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.data.prepared import concatenate, load_split
from cifarlab.knn.estimator import KNearestNeighbor
from cifarlab.params import load_params
from cifarlab.tracking import stage_run

CHOICE, RESULT = "reports/knn_choice.json", "reports/knn_test.json"


def main() -> None:
    params = load_params()
    resources = params["resources"]
    choice = io.read_json(CHOICE, keys=("distance", "k"))
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "knn_evaluate",
        {"chosen": choice, "resources": resources},
        experiment=params["tracking"]["experiment"],
        data_md5=meta["archive_md5"],
    ) as run:
        # k-NN has nothing to tune on val, so its reference set is all 50,000 training images.
        reference = concatenate(*(load_split(f"data/prepared/{s}.npz") for s in ("train", "val")))
        test = load_split("data/prepared/test.npz")
        model = KNearestNeighbor(
            k=choice["k"],
            distance=choice["distance"],
            memory_budget_bytes=resources["memory_budget_mb"] << 20,
            progress=True,
        )
        accuracy = float(model.fit(reference.X, reference.y).score(test.X, test.y))
        io.write_json(RESULT, {"test_accuracy": accuracy, **choice})
        run.log_metrics({"test_accuracy": accuracy})
        print(
            f"knn_evaluate: k-NN ({choice['distance']}, k={choice['k']}) test accuracy "
            f"{accuracy:.4f}"
        )


if __name__ == "__main__":
    run_stage(main)

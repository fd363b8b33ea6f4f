"""Stage knn_evaluate: the one look at the test split for k-NN, with knn_cv's k and distance."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.data.prepared import concatenate, load_split
from cifarlab.evaluation.metrics import evaluate_predictions
from cifarlab.evaluation.neighbors import neighbors_examples
from cifarlab.evaluation.outputs import EvaluationFiles, write_evaluation
from cifarlab.knn.estimator import KNearestNeighbor
from cifarlab.params import load_params
from cifarlab.plots import save_figure
from cifarlab.tracking import stage_run

CHOICE, RESULT = "reports/knn_choice.json", "reports/knn_test.json"
FILES = EvaluationFiles(
    "reports/knn_predictions.csv",
    "reports/knn_per_class.csv",
    "reports/plots/knn_confusion.png",
    "reports/plots/knn_misclassified.png",
)
NEIGHBORS = "reports/plots/knn_neighbors.png"


def main() -> None:
    params = load_params()
    resources = params["resources"]
    choice = io.read_json(CHOICE, keys=("distance", "k"))
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "knn_evaluate",
        {"knn": choice, "resources": resources},
        experiment=params["tracking"]["experiment"],
        data_md5=meta["archive_md5"],
    ) as run:
        # k-NN has nothing to tune on val, so its reference set is all 50,000 training images.
        ref = concatenate(*(load_split(f"data/prepared/{s}.npz") for s in ("train", "val")))
        test = load_split("data/prepared/test.npz")
        budget = resources["memory_budget_mb"] << 20
        k, distance = choice["k"], choice["distance"]
        model = KNearestNeighbor(k, distance, memory_budget_bytes=budget, progress=True)
        predicted = model.fit(ref.X, ref.y).predict(test.X)  # the only prediction of the test set
        evaluation = evaluate_predictions(test.y, predicted, meta["class_names"])
        name = f"k-NN ({distance.upper()}, k={k})"
        write_evaluation(FILES, evaluation, test.X, name)
        figure = neighbors_examples(
            ref.X, ref.y, test.X, test.y, predicted, meta["class_names"], k=k,
            distance=distance, memory_budget_bytes=budget,
        )  # fmt: skip
        save_figure(figure, NEIGHBORS)
        io.write_json(RESULT, {"test_accuracy": evaluation.accuracy, "distance": distance, "k": k})
        run.log_metrics(evaluation.metrics())
        for path in [*FILES.paths(), NEIGHBORS]:
            run.log_artifact(path)
        print(f"knn_evaluate: {name} test accuracy {evaluation.accuracy:.4f}")


if __name__ == "__main__":
    run_stage(main)

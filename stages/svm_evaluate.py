"""Stage svm_evaluate: the one look at the test split for the final linear model."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.data.prepared import load_split
from cifarlab.evaluation.metrics import evaluate_predictions
from cifarlab.evaluation.outputs import EvaluationFiles, write_evaluation
from cifarlab.linear.classifier import load_linear_model
from cifarlab.params import load_params
from cifarlab.tracking import stage_run

MODEL, RESULT = "data/models/svm.npz", "reports/svm_test.json"
FILES = EvaluationFiles(
    "reports/svm_predictions.csv",
    "reports/svm_per_class.csv",
    "reports/plots/svm_confusion.png",
    "reports/plots/svm_misclassified.png",
)


def main() -> None:
    params = load_params()
    meta = io.read_json("data/prepared/meta.json")
    model = load_linear_model(MODEL)
    with stage_run(
        "svm_evaluate",
        {"svm": model.get_params()},
        experiment=params["tracking"]["experiment"],
        data_md5=meta["archive_md5"],
    ) as run:
        run.use_model(MODEL)  # the test metrics below are linked to svm_train's LoggedModel
        test = load_split("data/prepared/test.npz")
        predicted = model.predict(test.X)  # the only prediction of the test set
        evaluation = evaluate_predictions(test.y, predicted, meta["class_names"])
        name = f"linear ({model.loss} loss)"
        write_evaluation(FILES, evaluation, test.X, name)
        io.write_json(RESULT, {"test_accuracy": evaluation.accuracy})
        run.log_metrics(evaluation.metrics())
        for path in FILES.paths():
            run.log_artifact(path)
        print(f"svm_evaluate: {name} test accuracy {evaluation.accuracy:.4f}")


if __name__ == "__main__":
    run_stage(main)

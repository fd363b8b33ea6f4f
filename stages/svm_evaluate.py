"""Stage svm_evaluate: the one look at the test split for the final linear model."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.data.prepared import load_split
from cifarlab.linear.classifier import load_linear_model
from cifarlab.params import load_params
from cifarlab.tracking import stage_run

MODEL, RESULT = "data/models/svm.npz", "reports/svm_test.json"


def main() -> None:
    params = load_params()
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "svm_evaluate",
        {},
        experiment=params["tracking"]["experiment"],
        data_md5=meta["archive_md5"],
    ) as run:
        model = load_linear_model(MODEL)
        test = load_split("data/prepared/test.npz")
        accuracy = float(model.score(test.X, test.y))
        io.write_json(RESULT, {"test_accuracy": accuracy})
        run.log_params({f"model.{k}": v for k, v in model.get_params().items()})
        run.log_metrics({"test_accuracy": accuracy})
        print(f"svm_evaluate: linear ({model.loss} loss) test accuracy {accuracy:.4f}")


if __name__ == "__main__":
    run_stage(main)

"""Stage svm_train: the final linear SVM with the hyperparameters chosen on val."""

import pandas as pd

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.params import linear_hyperparameters, load_params
from cifarlab.pipeline import load_split, save_linear_model, train_svm
from cifarlab.plots import save_figure, training_figure
from cifarlab.tracking import stage_run

MODEL, SUMMARY = "data/models/svm.npz", "reports/svm_train.json"
LOSS_CSV, PLOT = "reports/svm_loss.csv", "reports/plots/svm_loss.png"


def main() -> None:
    params = load_params()
    svm = params["svm"]
    choice = io.read_json("reports/svm_choice.json")
    hyper = {
        **linear_hyperparameters(svm),
        "learning_rate": float(choice["learning_rate"]),
        "reg": float(choice["reg"]),
    }
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "svm_train",
        {"svm": svm.to_dict(), "chosen": choice},
        experiment=params["tracking"].str("experiment"),
        data_md5=meta["archive_md5"],
    ) as run:
        train, val = load_split("data/prepared/train.npz"), load_split("data/prepared/val.npz")
        model = train_svm(train, val, hyper)
        run.log_series("loss", model.loss_history_)
        run.log_series("train_accuracy", model.train_accuracy_history_)
        run.log_series("val_accuracy", model.val_accuracy_history_)
        summary = {
            "learning_rate": hyper["learning_rate"],
            "reg": hyper["reg"],
            "train_accuracy": float(model.train_accuracy_history_[-1]),
            "val_accuracy": float(model.val_accuracy_history_[-1]),
        }
        save_linear_model(MODEL, model)
        io.write_text(
            LOSS_CSV,
            pd.DataFrame(
                {"step": range(len(model.loss_history_)), "loss": model.loss_history_}
            ).to_csv(index=False),
        )
        figure = training_figure(
            model.loss_history_,
            model.train_accuracy_history_,
            model.val_accuracy_history_,
            title="linear SVM, final training",
        )
        run.log_figure(figure, "svm_loss.png")
        save_figure(figure, PLOT)
        io.write_json(SUMMARY, summary)
        run.log_artifact(MODEL, "model")
        print(f"svm_train: val accuracy {summary['val_accuracy']:.4f}")


if __name__ == "__main__":
    run_stage(main)

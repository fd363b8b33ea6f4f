"""Stage svm_train: the final linear model with the hyperparameters chosen on val."""

import pandas as pd

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.params import linear_hyperparameters, load_params
from cifarlab.pipeline import load_split, save_linear_model, train_linear
from cifarlab.plots import save_figure, templates_figure, training_figure
from cifarlab.tracking import stage_run

MODEL, SUMMARY = "data/models/svm.npz", "reports/svm_train.json"
LOSS_CSV, PLOT = "reports/svm_loss.csv", "reports/plots/svm_loss.png"
TEMPLATES = "reports/plots/svm_templates.png"


def main() -> None:
    params = load_params()
    svm = params["svm"]
    choice = io.read_json("reports/svm_choice.json")
    hyper = {
        **linear_hyperparameters(svm),
        "learning_rate": float(choice["learning_rate"]),
        "reg": float(choice["reg"]),
        "batch_size": int(choice["batch_size"]),
    }
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "svm_train",
        {"svm": svm.to_dict(), "chosen": choice},
        experiment=params["tracking"].str("experiment"),
        data_md5=meta["archive_md5"],
        will_log_model=True,
    ) as run:
        train, val = load_split("data/prepared/train.npz"), load_split("data/prepared/val.npz")
        with run.epoch_logger() as log_epoch:  # loss and accuracies logged as training runs
            model, summary = train_linear(train, val, hyper, on_epoch_end=log_epoch)
        # Nothing is written before training has succeeded.
        save_linear_model(MODEL, model)
        run.log_linear_model(MODEL, input_example=val.X[:2])  # stored while the figures render
        curves = {
            "loss": model.loss_history_,
            "train_accuracy": model.train_accuracy_history_,
            "val_accuracy": model.val_accuracy_history_,
        }
        steps = pd.DataFrame({"step": range(len(model.loss_history_)), "loss": curves["loss"]})
        io.write_text(LOSS_CSV, steps.to_csv(index=False))
        title = f"{hyper['loss']} loss, lr={hyper['learning_rate']:g} reg={hyper['reg']:g}"
        figure = training_figure(*curves.values(), title=title, best_epoch=model.best_epoch_)
        save_figure(figure, PLOT)
        save_figure(templates_figure(model.W_, meta["class_names"], title), TEMPLATES)
        io.write_json(SUMMARY, summary)
        run.log_metrics({f"model_{k}": summary[k] for k in ("train_accuracy", "val_accuracy")})
        run.log_artifact(PLOT)
        run.log_artifact(TEMPLATES)
        print(f"svm_train: {title}: val accuracy {summary['val_accuracy']:.4f}")


if __name__ == "__main__":
    run_stage(main)

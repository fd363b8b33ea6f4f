"""Stage svm_train: the final linear model with the hyperparameters chosen on val."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.data.prepared import load_split
from cifarlab.linear.classifier import (
    epoch_message,
    save_linear_model,
    train_linear,
    training_tables,
)
from cifarlab.linear.plots import templates_figure, training_figure
from cifarlab.params import linear_hyperparameters, load_params
from cifarlab.plots import save_figure
from cifarlab.tracking import stage_run

MODEL, SUMMARY = "data/models/svm.npz", "reports/svm_train.json"
LOSS_CSV, PLOT = "reports/svm_loss.csv", "reports/plots/svm_loss.png"
EPOCHS_CSV = "reports/svm_epochs.csv"
TEMPLATES = "reports/plots/svm_templates.png"


def main() -> None:
    params = load_params()
    svm = params["svm"]
    searched_keys = ("learning_rate", "reg", "batch_size")
    choice = io.read_json("reports/svm_choice.json", keys=searched_keys)
    searched = {key: choice[key] for key in searched_keys}
    hyper = {**linear_hyperparameters(svm), **searched}
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "svm_train",
        {"svm": {**svm, **searched}},  # the hyperparameters it trains with
        experiment=params["tracking"]["experiment"],
        data_md5=meta["archive_md5"],
        will_log_model=True,
    ) as run:
        train, val = load_split("data/prepared/train.npz"), load_split("data/prepared/val.npz")
        with run.epoch_logger() as log_epoch:  # loss and accuracies logged as training runs

            def on_epoch_end(epoch, step_losses, train_acc, val_acc):
                log_epoch(epoch, step_losses, train_acc, val_acc)
                line = epoch_message(epoch, hyper["epochs"], step_losses, train_acc, val_acc)
                print(f"svm_train: {line}", flush=True)

            model, summary = train_linear(train, val, hyper, on_epoch_end=on_epoch_end)
        # Nothing is written before training has succeeded.
        save_linear_model(MODEL, model)
        run.log_linear_model(MODEL, input_example=val.X[:2])  # stored while the figures render
        curves = [model.loss_history_, model.train_accuracy_history_, model.val_accuracy_history_]
        steps, epochs = training_tables(model)
        io.write_text(LOSS_CSV, steps.to_csv(index=False))
        io.write_text(EPOCHS_CSV, epochs.to_csv(index=False))
        title = f"{hyper['loss']} loss, lr={hyper['learning_rate']:g} reg={hyper['reg']:g}"
        save_figure(training_figure(*curves, title=title, best_epoch=model.best_epoch_), PLOT)
        save_figure(templates_figure(model.W_, meta["class_names"], title), TEMPLATES)
        io.write_json(SUMMARY, summary)
        run.log_metrics({f"model_{k}": summary[k] for k in ("train_accuracy", "val_accuracy")})
        run.log_artifact(PLOT)
        run.log_artifact(TEMPLATES)
        print(f"svm_train: {title}: val accuracy {summary['val_accuracy']:.4f}")


if __name__ == "__main__":
    run_stage(main)

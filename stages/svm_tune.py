"""Stage svm_tune: grid over learning rate x regularization, trained on train, scored on val."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.params import linear_hyperparameters, load_params
from cifarlab.pipeline import load_split, svm_grid_search
from cifarlab.tracking import stage_run

TABLE, CHOICE = "reports/svm_tune.csv", "reports/svm_choice.json"


def main() -> None:
    params = load_params()
    svm, grid = params["svm"], params["svm_tune"]
    base = {**linear_hyperparameters(svm), "epochs": grid.int("epochs", minimum=1)}
    learning_rates = grid.list("learning_rates", "float")
    regs = grid.list("regs", "float")
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "svm_tune",
        {"svm": svm.to_dict(), "svm_tune": grid.to_dict()},
        experiment=params["tracking"].str("experiment"),
        data_md5=meta["archive_md5"],
    ) as run:
        train, val = load_split("data/prepared/train.npz"), load_split("data/prepared/val.npz")

        def track_trial(hyper, model):
            name = f"lr={hyper['learning_rate']:g} reg={hyper['reg']:g}"
            with run.child(name, hyper) as child:
                child.log_series("loss", model.loss_history_)
                child.log_series("train_accuracy", model.train_accuracy_history_)
                child.log_series("val_accuracy", model.val_accuracy_history_)
            print(f"svm_tune: {name} val accuracy {model.val_accuracy_history_[-1]:.4f}")

        table, best = svm_grid_search(
            train,
            val,
            learning_rates=learning_rates,
            regs=regs,
            base_params=base,
            on_trial=track_trial,
        )
        io.write_text(TABLE, table.to_csv(index=False))
        io.write_json(CHOICE, best)
        run.log_params({"chosen.learning_rate": best["learning_rate"], "chosen.reg": best["reg"]})
        run.log_metrics({"val_accuracy": best["val_accuracy"]})
        print(
            f"svm_tune: best learning_rate={best['learning_rate']:g} reg={best['reg']:g} "
            f"val accuracy {best['val_accuracy']:.4f}"
        )


if __name__ == "__main__":
    run_stage(main)

"""Stage svm_tune: grid or random search over learning rate x reg x batch size, scored on val."""

import sys
import time

from tqdm import tqdm

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.data.prepared import load_split
from cifarlab.linear.plots import search_figure
from cifarlab.linear.search import linear_search, linear_search_trials, progress_message
from cifarlab.params import linear_hyperparameters, load_params
from cifarlab.plots import save_figure
from cifarlab.tracking import stage_run

TABLE, CHOICE = "reports/svm_tune.csv", "reports/svm_choice.json"
PLOT = "reports/plots/svm_tune.png"


def main() -> None:
    params = load_params()
    svm, tune, resources = params["svm"], params["svm_tune"], params["resources"]
    trials = linear_search_trials(linear_hyperparameters(svm), tune["method"], tune)
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "svm_tune",
        {"svm": svm, "svm_tune": tune, "resources": resources},
        experiment=params["tracking"]["experiment"],
        data_md5=meta["archive_md5"],
    ) as run:
        train, val = load_split("data/prepared/train.npz"), load_split("data/prepared/val.npz")

        started = time.monotonic()
        # A bar on stderr (done / total, time left) and one line per trial on stdout.
        with tqdm(total=len(trials), desc="svm_tune", unit="trial", leave=False) as bar:

            def track_trial(trial):
                run.log_trial(trial)
                bar.update()
                elapsed = time.monotonic() - started
                line = progress_message(trial, bar.n, len(trials), elapsed)
                bar.write(f"svm_tune: {line}", file=sys.stdout)
                sys.stdout.flush()  # the line shows now, also when stdout is a pipe

            table, best = linear_search(
                train, val, trials, n_jobs=resources["n_jobs"], on_trial=track_trial
            )
        io.write_text(TABLE, table.to_csv(index=False))
        save_figure(search_figure(table, f"{svm['loss']} loss, {tune['method']} search"), PLOT)
        io.write_json(CHOICE, best)
        run.log_artifact(PLOT)
        chosen = {f"chosen_{k}": best[k] for k in ("learning_rate", "reg", "batch_size")}
        run.log_metrics({"val_accuracy": best["val_accuracy"], **chosen})  # outputs, not params
        print(
            f"svm_tune: best learning_rate={best['learning_rate']:g} reg={best['reg']:g} "
            f"batch_size={best['batch_size']} val accuracy {best['val_accuracy']:.4f}"
        )


if __name__ == "__main__":
    run_stage(main)

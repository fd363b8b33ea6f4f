"""Stage svm_tune: an Optuna search over learning rate x reg x batch size, scored on val."""

import os
import sys
import time

from tqdm import tqdm

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.data.prepared import load_split
from cifarlab.linear.plots import search_figure
from cifarlab.linear.search import linear_search, progress_message
from cifarlab.linear.trials import queued_trials
from cifarlab.params import linear_hyperparameters, load_params
from cifarlab.plots import save_figure
from cifarlab.tracking import stage_run
from cifarlab.tuning.storage import open_storage, redact, storage_url

TABLE, CHOICE = "reports/svm_tune.csv", "reports/svm_choice.json"
PLOT = "reports/plots/svm_tune.png"
SPLITS = ("data/prepared/train.npz", "data/prepared/val.npz")


def main() -> None:
    params = load_params()
    svm, tune, resources = params["svm"], params["svm_tune"], params["resources"]
    total, url = len(queued_trials(tune)), storage_url()
    open_storage(url)  # reachable and usable, or one line now, before any work
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "svm_tune",
        {"svm": svm, "svm_tune": tune, "resources": resources},
        experiment=params["tracking"]["experiment"],
        data_md5=meta["archive_md5"],
    ) as run:
        train, val = (load_split(path) for path in SPLITS)
        experiment = os.environ.get("DVC_EXP_NAME") or "workspace"
        description = {"experiment": experiment, "md5": {p: io.file_md5(p) for p in SPLITS}}
        print(f"svm_tune: {total} trials, {tune['sampler']} sampler, {tune['pruner']} pruner; "
              f"study in {redact(url)} (join it: cifarlab tune join)", flush=True)  # fmt: skip
        started = time.monotonic()
        # A bar on stderr (ended / total, time left) and one line per trial on stdout.
        with tqdm(total=total, desc="svm_tune", unit="trial", leave=False) as bar:

            def track_trial(record, counts):
                run.log_trial(record)
                bar.update()
                line = progress_message(record, counts, total, time.monotonic() - started)
                bar.write(f"svm_tune: {line}", file=sys.stdout)
                sys.stdout.flush()  # the line shows now, also when stdout is a pipe

            table, best, study = linear_search(
                train, val, linear_hyperparameters(svm), tune, n_jobs=resources["n_jobs"],
                storage_url=url, description=description, on_trial=track_trial,
            )  # fmt: skip
        io.write_text(TABLE, table.to_csv(index=False))
        save_figure(search_figure(table, f"{svm['loss']} loss, {tune['sampler']} search"), PLOT)
        io.write_json(CHOICE, best)
        run.log_artifact(PLOT)
        run.set_tags({"cifarlab.study": study})
        chosen = {f"chosen_{k}": best[k] for k in ("learning_rate", "reg", "batch_size")}
        run.log_metrics({"val_accuracy": best["val_accuracy"], **chosen})  # outputs, not params
        print(f"svm_tune: best trial {best['trial']}: learning_rate={best['learning_rate']:g} "
              f"reg={best['reg']:g} batch_size={best['batch_size']} "
              f"val accuracy {best['val_accuracy']:.4f}")  # fmt: skip


if __name__ == "__main__":
    run_stage(main)

"""Stage knn_cv: k-fold cross-validation of k-NN over k and L1 / L2 on the training split."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.data.prepared import load_split
from cifarlab.knn.cv import cross_validation, cv_summary
from cifarlab.knn.plots import cv_figure
from cifarlab.params import load_params
from cifarlab.plots import save_figure
from cifarlab.tracking import stage_run

TABLE, PLOT = "reports/knn_cv.csv", "reports/plots/knn_cv.png"
SUMMARY = "reports/knn_cv_summary.csv"  # mean accuracy: k, then one column per distance
# The choice alone is what knn_evaluate depends on: a change of the CV scores that keeps the
# same k and distance does not score the test split again.
CHOICE, SCORES = "reports/knn_choice.json", "reports/knn_cv.json"


def main() -> None:
    params = load_params()
    knn, resources = params["knn"], params["resources"]
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "knn_cv",
        {"knn": knn, "resources": resources},
        experiment=params["tracking"]["experiment"],
        data_md5=meta["archive_md5"],
    ) as run:
        train = load_split("data/prepared/train.npz")
        table, choice = cross_validation(
            train.X,
            train.y,
            k_choices=knn["k_choices"],
            distances=knn["distances"],
            n_folds=knn["folds"],
            train_size=knn["train_size"],
            seed=knn["seed"],
            memory_budget_bytes=resources["memory_budget_mb"] << 20,
        )
        io.write_text(TABLE, table.to_csv(index=False))
        io.write_text(SUMMARY, cv_summary(table).to_csv(index=False))
        io.write_json(CHOICE, {"distance": choice["distance"], "k": choice["k"]})
        scores = {"cv_accuracy": choice["mean_accuracy"], "cv_accuracy_std": choice["std_accuracy"]}
        io.write_json(SCORES, scores)
        save_figure(cv_figure(table), PLOT)
        run.log_artifact(PLOT)
        for (distance, k), rows in table.groupby(["distance", "k"], sort=False):
            with run.child(f"{distance} k={k}", {"distance": distance, "k": k}) as child:
                child.log_series("fold_accuracy", rows["accuracy"].tolist(), rows["fold"].tolist())
                child.log_metrics(
                    {
                        "cv_accuracy": rows["accuracy"].mean(),
                        "cv_accuracy_std": rows["accuracy"].std(ddof=0),
                    }
                )
        run.set_tags({"knn.chosen_distance": choice["distance"]})  # outputs, not params
        run.log_metrics(
            {
                "cv_accuracy": choice["mean_accuracy"],
                "cv_accuracy_std": choice["std_accuracy"],
                "chosen_k": choice["k"],
            }
        )
        print(
            f"knn_cv: best {choice['distance']} k={choice['k']} "
            f"cv accuracy {choice['mean_accuracy']:.4f} ± {choice['std_accuracy']:.4f}"
        )


if __name__ == "__main__":
    run_stage(main)

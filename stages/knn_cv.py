"""Stage knn_cv: k-fold cross-validation of k-NN over k and L1 / L2 on the training split."""

from cifarlab import io
from cifarlab.cli import run_stage
from cifarlab.knn import METRICS
from cifarlab.params import load_params
from cifarlab.pipeline import knn_cross_validation, load_split
from cifarlab.plots import cv_figure, save_figure
from cifarlab.tracking import stage_run

TABLE, CHOICE, PLOT = "reports/knn_cv.csv", "reports/knn_choice.json", "reports/plots/knn_cv.png"


def main() -> None:
    params = load_params()
    knn = params["knn"]
    settings = dict(
        k_choices=knn.list("k_choices", "int"),
        metrics=knn.list("distances", "str", choices=METRICS),
        n_folds=knn.int("folds", minimum=2),
        train_size=knn.optional_int("train_size", minimum=2),
        seed=knn.int("seed"),
        memory_budget_bytes=knn.int("memory_budget_mb", minimum=16) << 20,
    )
    meta = io.read_json("data/prepared/meta.json")
    with stage_run(
        "knn_cv",
        {"knn": knn.to_dict()},
        experiment=params["tracking"].str("experiment"),
        data_md5=meta["archive_md5"],
    ) as run:
        train = load_split("data/prepared/train.npz")
        table, choice = knn_cross_validation(train.X, train.y, **settings)
        io.write_text(TABLE, table.to_csv(index=False))
        io.write_json(
            CHOICE,
            {
                "distance": choice["metric"],
                "k": choice["k"],
                "cv_accuracy": choice["mean_accuracy"],
                "cv_accuracy_std": choice["std_accuracy"],
            },
        )
        figure = cv_figure(table)
        save_figure(figure, PLOT)
        run.log_artifact(PLOT)
        for (metric, k), rows in table.groupby(["metric", "k"], sort=False):
            with run.child(f"{metric} k={k}", {"distance": metric, "k": k}) as child:
                child.log_series("fold_accuracy", rows["accuracy"].tolist(), rows["fold"].tolist())
                child.log_metrics(
                    {
                        "cv_accuracy": rows["accuracy"].mean(),
                        "cv_accuracy_std": rows["accuracy"].std(ddof=0),
                    }
                )
        run.log_params({"chosen.distance": choice["metric"], "chosen.k": choice["k"]})
        run.log_metrics({"cv_accuracy": choice["mean_accuracy"]})
        print(
            f"knn_cv: best {choice['metric']} k={choice['k']} "
            f"cv accuracy {choice['mean_accuracy']:.4f} ± {choice['std_accuracy']:.4f}"
        )


if __name__ == "__main__":
    run_stage(main)

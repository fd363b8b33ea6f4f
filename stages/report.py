"""Stage report: one self-contained page, reports/index.html, of the pipeline's results.

The figures are embedded and nothing is fetched, so the page opens from disk anywhere; its
provenance links each stage's MLflow run, found by the stage hash dvc.lock records for it.
"""

import os

from cifarlab import io, report, tracking
from cifarlab.cli import run_stage
from cifarlab.params import load_params

PAGE = "reports/index.html"
METRICS, CHOICES, KNN_CV = "reports/metrics.json", "reports/choices.json", "reports/knn_cv.json"
META, COUNTS = "data/prepared/meta.json", "reports/class_counts.csv"
PER_CLASS = {"knn": "reports/knn_per_class.csv", "svm": "reports/svm_per_class.csv"}
FIGURES = (
    "reports/plots/knn_cv.png",
    "reports/plots/svm_tune.png",
    "reports/plots/svm_loss.png",
    "reports/plots/svm_templates.png",
    "reports/plots/knn_confusion.png",
    "reports/plots/svm_confusion.png",
    "reports/plots/knn_neighbors.png",
    "reports/plots/knn_misclassified.png",
    "reports/plots/svm_misclassified.png",
)


def main() -> None:
    params = load_params()
    inputs = report.read_inputs(
        metrics=METRICS, choices=CHOICES, knn_cv=KNN_CV, meta=META, class_counts=COUNTS,
        per_class=PER_CLASS, figures=FIGURES,
    )  # fmt: skip
    with tracking.stage_run(
        "report", {}, experiment=params["tracking"]["experiment"],
        data_md5=inputs.meta["archive_md5"],
    ) as run:  # fmt: skip
        runs = report.pipeline_runs("dvc.lock", tracking.runs_tagged)
        origin = report.provenance(
            inputs.meta, runs, report_run=report.StageRun("report", run.run_id, "RUNNING"),
            tracking_uri=tracking.tracking_uri(), experiment=os.environ.get("DVC_EXP_NAME"),
        )  # fmt: skip
        page = report.render_page(inputs, origin)
        io.write_text(PAGE, page)
        run.log_artifact(PAGE)
        found = sum(r.run_id is not None for r in runs)
        print(f"report: {PAGE} ({len(page) >> 10} KiB, {found} of {len(runs)} stage runs linked)")


if __name__ == "__main__":
    run_stage(main)

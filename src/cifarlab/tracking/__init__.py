"""MLflow tracking for the pipeline stages: the only package of cifarlab that imports mlflow.

One MLflow run per stage execution (``stage_run``), named "<stage> · <model> · <DVC experiment>",
timed from entering the block to leaving it, tagged with the stage, the git commit, the data md5,
the DVC stage fingerprint and the pipeline run (``cifarlab.pipeline_run``: one per ``dvc repro``
/ ``dvc exp run``), with CIFAR-10 as its dataset input; its inputs as params, its outputs as
metrics; one child run per candidate of cross-validation and tuning; the final linear model
logged with MLflow's model API (a LoggedModel in the Models tab, registered as
``cifarlab-linear``: ``Run.log_linear_model``). The experiment opens on the training runs table
with a saved view of the useful columns (``dashboard``, ``make ui``).

The MLflow work runs in a tracking worker, a child process (``python -m
cifarlab.tracking.worker``) that the stage starts when it opens its run, so it costs the stage's
computation nothing: the worker imports MLflow, creates the run and stores what the stage sends
it over a socket, while the stage only pickles small messages. Leaving ``with stage_run(...)``
waits until the worker has stored everything and ended the run. Entering it waits for one thing:
the worker has created the run, so a store that cannot write fails the stage before it
computes. A later failure in the worker is a ``TrackingError`` in the stage at its next
tracking call or at the end of the block, and the run ends FAILED; if the stage process dies,
the worker ends its runs KILLED; if both die at once (SIGKILL to the process group), the next
stage of this host ends them KILLED (``store.sweep``; also ``cifarlab runs sweep``).

    store.py         where the store is, opening it, run lookups (stage, worker and CLI)
    connectivity.py  the quick check that the store answers
    messages.py      the message kinds between stage and worker
    stage.py         the stage's side: stage_run, Run
    worker.py        the worker's side: carries out the messages
    models.py        the linear model as a pyfunc model
    naming.py        run names, the pipeline-run id, the dataset input (the stage's side)
    dashboard.py     the experiment's kind and saved view, the runs page URL (`make ui`)
"""

from cifarlab.tracking.connectivity import check_tracking_uri
from cifarlab.tracking.naming import PIPELINE_TAG
from cifarlab.tracking.stage import REGISTERED_MODEL_NAME, Run, flatten, stage_run
from cifarlab.tracking.store import (
    ARTIFACTS_DIR,
    DB_NAME,
    project_root,
    run_description,
    runs_tagged,
    sweep_store,
    tracking_uri,
)

__all__ = [
    "ARTIFACTS_DIR",
    "DB_NAME",
    "PIPELINE_TAG",
    "REGISTERED_MODEL_NAME",
    "Run",
    "check_tracking_uri",
    "flatten",
    "project_root",
    "run_description",
    "runs_tagged",
    "stage_run",
    "sweep_store",
    "tracking_uri",
]

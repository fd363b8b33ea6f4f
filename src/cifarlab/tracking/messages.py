"""The kinds of message between a stage and its tracking worker, named once.

A message is a tuple ``(kind, *args)``, pickled over the socket; ``args`` are plain data (ints,
strings, dicts, lists, a small array). Requests, stage → worker, with their args:

    OPEN      handle, stage, params, experiment, data_md5, exp_name, opening: {run_name,
              start_ms (the stage entered stage_run), pipeline_run, dataset (dict or None)}
    CHILD     handle, parent handle, run_name, start_ms
    PARAMS    handle, {name: str}
    TAGS      handle, {name: str}
    METRICS   handle, {name: float}, step, timestamp_ms
    POINTS    handle, [(key, values, steps), ...], timestamp_ms
    TRIAL     handle, record (dict), timestamp_ms
    MODEL     handle, model_file, name, input_example, artifact_path, registered_model_name
    ARTIFACT  handle, path, name, artifact_path
    USE_MODEL handle, model_file          (the run evaluates the LoggedModel of that file)
    AFTER_OPEN  handle, stage             (the DVC stage fingerprint tag; end the runs of this
                                           host's dead processes KILLED)
    PREPARE_MODEL                         (MLflow's slow one-off work before a model save)
    END       handle, status, error, end_ms (when the stage ended the run)
    RUN_ID    handle                      (answered by RUN_IDS)
    CLOSE                                 (answered by RUN_IDS, then the worker exits)

Replies, worker → stage, as ``(kind, payload)``:

    RUN_IDS   {handle: run_id} of every run created so far
    ERROR     the worker's failure, as a message; it ignores later requests
"""

from __future__ import annotations

import enum

#: The environment variable that gives the worker its tracking URI (never its command line).
WORKER_URI_VARIABLE = "CIFARLAB_WORKER_TRACKING_URI"


class Kind(enum.Enum):
    """What a message asks or answers; its value names it in the worker's error messages."""

    OPEN = "open"
    CHILD = "child"
    PARAMS = "params"
    TAGS = "tags"
    METRICS = "metrics"
    POINTS = "points"
    TRIAL = "trial"
    MODEL = "model"
    ARTIFACT = "artifact"
    USE_MODEL = "use_model"
    END = "end"
    AFTER_OPEN = "after_open"
    PREPARE_MODEL = "prepare_model"
    RUN_ID = "run_id"
    CLOSE = "close"

    RUN_IDS = "run_ids"
    ERROR = "error"

"""The linear model as an MLflow pyfunc model, saved and logged by the tracking worker."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

#: The LoggedModel's tag that names the md5 of its ``.npz``: how an evaluation finds it.
MODEL_MD5_TAG = "cifarlab.model_md5"


def log_linear_model(
    client: Any,
    run_id: str,
    model_file: Path,
    example: Any,
    name: str,
    registered_model_name: str | None = None,
) -> str:
    """Log the pyfunc model of :meth:`cifarlab.tracking.Run.log_linear_model` with run ``run_id``
    through MLflow's model API; return the id of its LoggedModel.

    model_file : the ``.npz`` of ``cifarlab.linear.classifier.save_linear_model``.
    example : uint8 array of shape (n, n_features), the input example; it fixes the signature
        (uint8 (-1, n_features) in, int64 (-1,) out).
    name : the LoggedModel's name (``runs:/<run_id>/<name>`` loads it).
    registered_model_name : a registered model that gets the model as its next version.

    A LoggedModel (MLflow 3) is what the UI's Models tab lists, with the run's params and the
    metrics linked to it. The model's ``code/`` folder holds a copy of the cifarlab package
    (loader ``cifarlab.serving``), so that it loads where cifarlab is not installed.
    """
    from importlib.metadata import version

    import mlflow
    import mlflow.pyfunc
    import numpy as np
    from mlflow.models import Model, ModelSignature
    from mlflow.types import Schema, TensorSpec

    import cifarlab

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, example.shape[1]))]),
        outputs=Schema([TensorSpec(np.dtype(np.int64), (-1,))]),
    )
    # Model.log works against the process's tracking URI and experiment (else the default
    # experiment "0", with artifacts in ./mlruns): this client's and the run's.
    mlflow.set_tracking_uri(client.tracking_uri)
    mlflow.set_experiment(experiment_id=client.get_run(run_id).info.experiment_id)
    with tempfile.TemporaryDirectory(prefix="cifarlab-model-") as tmp:
        code = Path(tmp) / "code" / "cifarlab"
        shutil.copytree(
            Path(cifarlab.__file__).parent,
            code,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc"),
        )
        # mlflow.pyfunc.log_model is Model.log for the pyfunc flavour, without its run_id: the
        # worker logs to the stage's run, which is not MLflow's "active run" in this process.
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run_id,
            loader_module="cifarlab.serving",
            data_path=str(model_file),
            code_paths=[str(code)],
            signature=signature,
            input_example=example,
            tags={MODEL_MD5_TAG: _md5(model_file)},
            # Explicit, so that MLflow does not load the model in a subprocess to infer them.
            pip_requirements=[
                f"{p}=={version(p)}" for p in ("mlflow", "numpy", "pandas", "scikit-learn", "scipy")
            ],
        )
    if registered_model_name:
        try:
            _register(client, registered_model_name, run_id, info.model_id)
        except Exception as exc:  # the registry is a convenience: never fail the stage for it
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            print(
                f"warning: the model was logged but not registered as {registered_model_name!r}: "
                f"{type(exc).__name__}: {first}",
                file=sys.stderr,
                flush=True,
            )
    return info.model_id


def find_linear_model(client: Any, experiment_id: str, model_file: str | Path) -> str | None:
    """The id of the newest LoggedModel of ``experiment_id`` logged from a file with the bytes
    of ``model_file``, or None."""
    found = client.search_logged_models(
        [experiment_id],
        filter_string=f"tags.`{MODEL_MD5_TAG}` = '{_md5(model_file)}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        max_results=1,
    )
    return found[0].model_id if found else None


def _md5(path: str | Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _register(client: Any, name: str, run_id: str, model_id: str) -> None:
    """A new version of registered model ``name`` from LoggedModel ``model_id`` (what
    ``registered_model_name=`` of ``log_model`` does, without its lines on stderr)."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
            raise
    client.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id
    )


def prepare_model_logging() -> None:
    """Do now, while the stage computes, the slow one-off part of MLflow's first model save.

    Saving a model makes MLflow check its pip requirements against the installed packages,
    which maps every installed distribution to its modules (~0.8 s, cached for the process).
    The mapping is MLflow's private helper: if a later MLflow lacks it, the save pays the cost.
    """
    import mlflow.pyfunc  # noqa: F401

    with contextlib.suppress(ImportError, AttributeError):
        from mlflow.utils import requirements_utils

        requirements_utils._init_packages_to_modules_map()

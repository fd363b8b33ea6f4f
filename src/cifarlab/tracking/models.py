"""The linear model as an MLflow pyfunc model, saved and logged by the tracking worker."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any


def log_linear_model(
    client: Any, run_id: str, model_file: Path, example: Any, artifact_path: str
) -> None:
    """Log the pyfunc model of :meth:`cifarlab.tracking.Run.log_linear_model` with run ``run_id``.

    model_file : the ``.npz`` of ``cifarlab.linear.classifier.save_linear_model``.
    example : uint8 array of shape (n, n_features), the input example; it fixes the signature
        (uint8 (-1, n_features) in, int64 (-1,) out).

    The model's ``code/`` folder holds a copy of the cifarlab package (loader
    ``cifarlab.serving``), so that it loads where cifarlab is not installed.
    """
    from importlib.metadata import version

    import mlflow.pyfunc
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    import cifarlab

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, example.shape[1]))]),
        outputs=Schema([TensorSpec(np.dtype(np.int64), (-1,))]),
    )
    with tempfile.TemporaryDirectory(prefix="cifarlab-model-") as tmp:
        code = Path(tmp) / "code" / "cifarlab"
        shutil.copytree(
            Path(cifarlab.__file__).parent,
            code,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc"),
        )
        model_dir = Path(tmp) / "model"
        mlflow.pyfunc.save_model(
            str(model_dir),
            loader_module="cifarlab.serving",
            data_path=str(model_file),
            code_paths=[str(code)],
            signature=signature,
            input_example=example,
            # Explicit, so that MLflow does not load the model in a subprocess to infer them.
            pip_requirements=[
                f"{p}=={version(p)}" for p in ("mlflow", "numpy", "pandas", "scikit-learn", "scipy")
            ],
        )
        client.log_artifacts(run_id, str(model_dir), artifact_path)


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

"""What the stage tells its run apart by, worked out on the stage's side (no MLflow, /proc and
two small files at most): the run's name, the pipeline run it belongs to, the dataset it read.

    run_name("svm_train", {"svm.loss": "hinge"}, "brisk-lark")  -> "svm_train · hinge · brisk-lark"
    pipeline_run()  -> "3f9a0c1d2b4e": the same for every stage of one `dvc repro` / `dvc exp run`
    dataset_description("c32a…", "knn_evaluate")  -> name, digest, source, split sizes of CIFAR-10
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cifarlab.process import caller, identity

#: The tag every stage run of one `dvc repro` / `dvc exp run` shares (the UI's "Group by").
PIPELINE_TAG = "cifarlab.pipeline_run"
#: The name of the dataset input of every run (the archive md5 tells its copies apart).
DATASET_NAME = "CIFAR-10"
#: Where the prepare stage writes the split sizes (read when present and of the same archive).
META_FILE = "data/prepared/meta.json"
#: What DVC sets in the environment of every stage command it runs (DVC 3.x, dvc.env).
_DVC_STAGE_VARIABLE = "DVC_STAGE"
_SEPARATOR = " · "


def model_label(stage: str, params: Mapping[str, str]) -> str:
    """The model a run is about, from its flattened params: ``"hinge"`` (a linear loss),
    ``"l1 k=5"`` (a k-NN choice), both for a summary, else ``"k-NN"`` / ``"linear"`` by the
    stage's prefix, else ``""`` (the data stages)."""
    parts = []
    loss = _last_field(params, "loss")
    if loss:
        parts.append(loss)
    distance, k = _last_field(params, "distance"), _last_field(params, "k")
    if distance and k:
        parts.append(f"{distance} k={k}")
    if parts:
        return ", ".join(parts)
    if stage.startswith("knn"):
        return "k-NN"
    if stage.startswith("svm"):
        return "linear"
    return ""


def run_name(stage: str, params: Mapping[str, str], exp_name: str | None, label: str | None = None
             ) -> str:  # fmt: skip
    """``"<stage> · <model> · <DVC experiment or 'workspace'>"``; ``label`` replaces the model
    part derived from ``params`` (an empty label drops it)."""
    model = model_label(stage, params) if label is None else label
    return _SEPARATOR.join(part for part in (stage, model, exp_name or "workspace") if part)


def _last_field(params: Mapping[str, str], field: str) -> str:
    """The value of ``field`` (``svm.loss``, ``chosen.loss``, ``loss``): the last such key wins,
    so a stage's chosen value overrides its section's."""
    found = [v for key, v in params.items() if key == field or key.endswith(f".{field}")]
    return found[-1] if found else ""


def pipeline_run(pid: int | None = None, environ: Mapping[str, str] | None = None) -> str:
    """A short id shared by the stages one ``dvc`` process runs: a hash of this host and the
    identity (pid + start time) of the process that ran the stage ``pid`` (past the ``sh -c``
    shell DVC runs it through). A stage run by hand (no ``DVC_STAGE`` in its environment) is a
    pipeline run of its own."""
    pid = os.getpid() if pid is None else pid
    environ = os.environ if environ is None else environ
    owner = caller(pid) if _DVC_STAGE_VARIABLE in environ else None
    who = identity(owner) if owner is not None else ""
    who = who or identity(pid) or f"{pid}:"
    return hashlib.sha256(f"{socket.gethostname()}/{who}".encode()).hexdigest()[:12]


def dataset_description(
    data_md5: str, stage: str, source: str | None = None, meta_file: str = META_FILE
) -> dict[str, Any]:
    """The dataset input of a run: ``{"name", "digest", "source_type", "source", "profile",
    "context"}``, all strings but the context (``"test"`` for an evaluation stage, else
    ``"train"``).

    source : the archive's URL or path; default ``data.url`` of ``params.yaml`` if it reads.
    The profile holds the split sizes of ``meta_file`` when it describes this archive, else
    only the archive's md5 (before the prepare stage has run).
    """
    if source is None:
        source = _params_data_url()
    profile: dict[str, Any] = {"archive_md5": data_md5}
    try:
        meta = json.loads(Path(meta_file).read_text())
    except (OSError, ValueError):
        meta = None
    if isinstance(meta, dict) and meta.get("archive_md5") == data_md5:
        sizes = meta.get("sizes") or {}
        profile.update({f"{name}_size": int(n) for name, n in sizes.items()})
        profile["num_rows"] = int(sum(sizes.values()))
    remote = "://" in source and not source.startswith("file://")
    return {
        "name": DATASET_NAME,
        "digest": data_md5,
        "source_type": "http" if remote else "local",
        "source": json.dumps({"url": source} if remote else {"uri": source}),
        "profile": json.dumps(profile),
        "context": "test" if stage.endswith("evaluate") else "train",
    }


def _params_data_url() -> str:
    """``data.url`` of ``params.yaml``, or ``"unknown"`` where that does not read."""
    try:
        from cifarlab.params import load_params

        return str(load_params()["data"]["url"])
    except Exception:  # tracking records what it can; the stage checks its params itself
        return "unknown"

"""Traceability between DVC and MLflow: a stage's fingerprint, seen by its run and by dvc.lock.

A stage execution is identified by what DVC records for it in ``dvc.lock``: its command, the md5 of
every dependency and the value of every parameter. The stage computes the same fingerprint from its
workspace when it starts and tags its MLflow run with it (``dvc.stage_hash``); reading any
``dvc.lock`` (the workspace's, a commit's or a DVC experiment's) gives the fingerprints to look the
runs up by, and a run's tag finds the experiments whose ``dvc.lock`` holds it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from cifarlab.errors import ConfigError
from cifarlab.io import file_md5

_yaml = YAML(typ="safe", pure=True)  # YAML 1.2, as DVC reads params.yaml and writes dvc.lock


def fingerprint(cmd: str, deps: Mapping[str, str], params: Mapping[str, Any]) -> str:
    """md5 of a canonical JSON of the command, ``{dep path: md5}`` and ``{param key: value}``."""
    canonical = json.dumps(
        {"cmd": cmd, "deps": dict(sorted(deps.items())), "params": dict(sorted(params.items()))},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.md5(canonical.encode()).hexdigest()


def _lookup(params: Mapping[str, Any], key: str) -> Any:
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"dvc.yaml declares param {key!r}, missing from params.yaml")
        node = node[part]
    return node


def workspace_fingerprint(stage: str, root: str | Path = ".") -> str:
    """The fingerprint of ``stage`` as it is about to run in the workspace at ``root``."""
    root = Path(root)
    spec = _yaml.load((root / "dvc.yaml").read_text())["stages"].get(stage)
    if spec is None:
        raise ConfigError(f"dvc.yaml has no stage {stage!r}")
    params_doc = _yaml.load((root / "params.yaml").read_text()) or {}
    deps = {}
    for dep in spec.get("deps", []):
        path = root / dep
        if path.is_file():  # a missing dependency fails the stage itself, with its own message
            deps[dep] = file_md5(path)
    params = {}
    for entry in spec.get("params", []):
        keys = entry if isinstance(entry, list) else [entry]
        if isinstance(entry, Mapping):  # {file: [keys]}: only params.yaml is used here
            keys = [k for ks in entry.values() for k in ks]
        for key in keys:
            params[key] = _lookup(params_doc, key)
    return fingerprint(spec["cmd"], deps, params)


def lock_fingerprints(lock_text: str) -> dict[str, str]:
    """``{stage: fingerprint}`` from the text of a ``dvc.lock``."""
    lock = _yaml.load(lock_text) or {}
    result = {}
    for stage, entry in (lock.get("stages") or {}).items():
        deps = {d["path"]: d.get("md5", "") for d in entry.get("deps", [])}
        params = {}
        for values in (entry.get("params") or {}).values():
            params.update(values)
        result[stage] = fingerprint(entry["cmd"], deps, params)
    return result


def _git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)


def experiment_locks(root: str | Path = ".") -> dict[str, tuple[str, str]]:
    """``{label: (git rev, dvc.lock text)}`` for the workspace, HEAD and every DVC experiment.

    Labels are what ``dvc exp show`` shows in its Experiment column: ``workspace``, the branch
    name for HEAD, and each experiment's name (its ref is ``refs/exps/…/<name>``).
    """
    root = Path(root)
    found: dict[str, tuple[str, str]] = {}
    if (root / "dvc.lock").is_file():
        found["workspace"] = ("workspace", (root / "dvc.lock").read_text())
    head = _git(root, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip() or "HEAD"
    refs = [(head, "HEAD")]
    listing = _git(root, "for-each-ref", "--format=%(refname) %(objectname)", "refs/exps")
    for line in listing.stdout.splitlines():
        ref, sha = line.split()
        if ref.count("/") >= 4:  # refs/exps/ab/cdef…/<name>; skips stash and celery refs
            refs.append((ref.rsplit("/", 1)[1], sha))
    for label, rev in refs:
        shown = _git(root, "show", f"{rev}:dvc.lock")
        if shown.returncode == 0:
            sha = _git(root, "rev-parse", rev).stdout.strip()
            found[label] = (sha, shown.stdout)
    return found

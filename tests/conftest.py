"""Shared fixtures: a temporary copy of the project that `dvc repro` can run in."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MIRROR = REPO.parent / "shared" / "data" / "cifar-10-mirror"
VENV_BIN = Path(sys.executable).parent
# What a clone of the project holds that the pipeline needs.
PROJECT_FILES = [
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvc/plots",
    ".gitignore",
    "stages",
    "src",
]

# The pipeline's stages, in dvc.yaml's order.
STAGES = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])

# Debian's Chromium, driven by Playwright: no browser is ever downloaded.
CHROMIUM = "/usr/bin/chromium"


def chromium_launch_args(what: str) -> list[str]:
    """Playwright's launch arguments for CHROMIUM. Without it (or Playwright) ``what`` is
    skipped on a workstation and fails in CI (`CI` set: .ci/run installs the package)."""
    import importlib.util

    missing = None
    if not os.path.isfile(CHROMIUM):
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    elif importlib.util.find_spec("playwright") is None:
        missing = "playwright is not installed (pip install -e '.[dev]')"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{what} needs a browser in CI: {missing}")
        pytest.skip(f"no browser for {what}: {missing}")
    # As root Chromium refuses its sandbox; /dev/shm is small in containers.
    return ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])


GIT_ENV = {
    "GIT_AUTHOR_NAME": "cifarlab tests",
    "GIT_AUTHOR_EMAIL": "tests@cifarlab.invalid",
    "GIT_COMMITTER_NAME": "cifarlab tests",
    "GIT_COMMITTER_EMAIL": "tests@cifarlab.invalid",
}


class Project:
    """A throwaway git + DVC clone of this project, with the test venv's tools on PATH."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            **GIT_ENV,
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(root / "src"),
            "DVC_NO_ANALYTICS": "true",
        }
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.env.pop("CIFARLAB_STUDY_STORAGE", None)  # the copy's own optuna.db

    def run(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            args, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
            )
        return proc

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(str(VENV_BIN / "dvc"), *args, check=check)

    def set_params(self, **sections: dict) -> None:
        path = self.root / "params.yaml"
        params = yaml.safe_load(path.read_text())
        for section, values in sections.items():
            params[section].update(values)
        path.write_text(yaml.safe_dump(params, sort_keys=False))

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"


# One bytecode and Numba cache for every project copy of a test session (set by the
# session fixture below): each copy would otherwise compile the k-NN kernels again, about
# 10 s per copy. Sharing is safe: both caches check the source file's mtime and size (copies
# keep them; an edited copy's module is compiled again) and Numba also the function's code.
_SHARED_PYCACHE: Path | None = None


@pytest.fixture(scope="session", autouse=True)
def _shared_pycache(tmp_path_factory):
    global _SHARED_PYCACHE
    _SHARED_PYCACHE = tmp_path_factory.mktemp("pycache")
    yield
    _SHARED_PYCACHE = None


@pytest.fixture(autouse=True)
def _no_process_left_behind(request):
    """After a test that has a tmp_path, SIGKILL what still runs in it (a failed test's stage,
    search workers, a DVC queue worker): left alive, they would slow every later test."""
    if "tmp_path" not in request.fixturenames or not sys.platform.startswith("linux"):
        yield
        return
    root = request.getfixturevalue("tmp_path").resolve()
    yield
    for cwd in Path("/proc").glob("[0-9]*/cwd"):
        try:
            where = Path(os.readlink(cwd))
            if (root in where.parents or where == root) and int(cwd.parent.name) != os.getpid():
                os.kill(int(cwd.parent.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def copy_project(root: Path) -> Project:
    """A fresh git repository at ``root`` holding the pipeline's files, committed."""
    root.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(src, root / name, ignore=ignore)
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    if _SHARED_PYCACHE is not None:
        for init in (root / "src").rglob("__init__.py"):
            package = init.parent
            shared = _SHARED_PYCACHE / package.relative_to(root)
            shared.mkdir(parents=True, exist_ok=True)
            (package / "__pycache__").symlink_to(shared, target_is_directory=True)
    proj = Project(root)
    proj.run("git", "init", "-q", "-b", "main")
    proj.commit("project copy")
    return proj


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return copy_project(tmp_path / "project")


# Small settings so the whole pipeline runs in seconds on a tiny archive.
QUICK_PARAMS = {
    "split": {"val_size": 20, "seed": 0},
    "knn": {
        "k_choices": [1, 3, 5],
        "distances": ["l1", "l2"],
        "folds": 3,
        "train_size": None,
        "seed": 0,
    },
    "svm": {"epochs": 3},
    # A 2 x 2 grid searched by two worker processes.
    "svm_tune": {
        "sampler": "grid",
        "learning_rates": [1.0e-7, 1.0e-6],
        "regs": [1.0e2, 1.0e4],
        "batch_sizes": [16],
    },
    "resources": {"memory_budget_mb": 64, "n_jobs": 2},
}


def learnable_images(seed=0, n=60, d=12, n_classes=3, *, high=100, boost=150):
    """uint8 'images' (n, d) and labels (n,): noise in [0, high) plus ``boost`` on the pixel of
    each image's class, so a linear model learns them after centring (not trivially if the
    boost is small against the noise)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    X = rng.integers(0, high, size=(n, d))
    X[:, :n_classes] += boost * np.eye(n_classes, dtype=np.int64)[y]
    return X.astype(np.uint8), y

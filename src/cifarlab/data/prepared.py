"""The prepared splits on disk: what ``prepare`` writes and every later stage reads."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from cifarlab import io
from cifarlab.errors import DataError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """X : uint8 (n_samples, 3072) raw pixels (R, G, B planes); y : uint8 (n_samples,) labels."""

    X: np.ndarray
    y: np.ndarray


def save_split(path: str | os.PathLike[str], split: Split) -> None:
    """One split as an uncompressed ``.npz`` (arrays X and y), written atomically."""
    io.save_arrays(path, X=split.X, y=split.y)


def load_split(path: str | os.PathLike[str]) -> Split:
    try:
        arrays = io.load_arrays(path)
    except FileNotFoundError:
        raise DataError(f"{path} not found: run the earlier stages first (dvc repro)") from None
    return Split(arrays["X"], arrays["y"])


def concatenate(*splits: Split) -> Split:
    """One split holding the rows of ``splits`` in order (e.g. train + val as k-NN's reference)."""
    return Split(np.concatenate([s.X for s in splits]), np.concatenate([s.y for s in splits]))

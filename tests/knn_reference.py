"""Slow, loop-based int64 references and test data for the cifarlab.knn tests."""

from __future__ import annotations

import numpy as np


def ref_distances(q: np.ndarray, R: np.ndarray, distance: str) -> np.ndarray:
    """q : (n_features,); R : (n_ref, n_features). Returns int64 (n_ref,)."""
    diff = R.astype(np.int64) - q.astype(np.int64)
    return np.abs(diff).sum(axis=1) if distance == "l1" else (diff * diff).sum(axis=1)


def ref_kneighbors(Q: np.ndarray, R: np.ndarray, k: int, distance: str):
    """(indices, distances), int64 (n_query, k): each row sorted by (distance, index)."""
    indices, distances = [], []
    for q in Q:
        dist = ref_distances(q, R, distance)
        order = sorted(range(len(R)), key=lambda j: (int(dist[j]), j))[:k]
        indices.append(order)
        distances.append([int(dist[j]) for j in order])
    shape = (len(Q), k)
    return (
        np.array(indices, dtype=np.int64).reshape(shape),
        np.array(distances, dtype=np.int64).reshape(shape),
    )


def ref_vote(labels: np.ndarray) -> np.ndarray:
    """labels : (n_query, k), nearest first. The majority per row; ties to the tied class met
    first in the row."""
    out = []
    for row in labels:
        counts: dict[int, int] = {}
        for label in row:
            counts[int(label)] = counts.get(int(label), 0) + 1
        top = max(counts.values())
        tied = {c for c, n in counts.items() if n == top}
        out.append(next(int(label) for label in row if int(label) in tied))
    return np.array(out, dtype=np.int64)


def images(rng: np.random.Generator, n: int, d: int, low: int = 0, high: int = 256) -> np.ndarray:
    """Uniform uint8 (n, d) with values in [low, high)."""
    return rng.integers(low, high, size=(n, d), dtype=np.uint8)


def clustered(rng: np.random.Generator, n: int, d: int, n_classes: int, noise: int = 150):
    """(X uint8 (n, d), y int64 (n,)): noisy class centres, noisy enough that accuracy depends
    on k and the distance (about 0.5 to 0.75)."""
    centers = rng.integers(40, 216, size=(n_classes, d))
    y = rng.integers(0, n_classes, size=n)
    X = np.clip(centers[y] + rng.integers(-noise, noise + 1, size=(n, d)), 0, 255)
    return X.astype(np.uint8), y

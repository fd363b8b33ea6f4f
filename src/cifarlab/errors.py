"""The errors cifarlab raises on purpose: each says what is wrong and what to do about it."""

from __future__ import annotations

from typing import Any


def quoted(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: how a message quotes what it was given (a
    member name, a param value, a server's text), so that no error line runs for pages."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


class CifarlabError(Exception):
    """Base class: a problem the user can act on (bad input, bad config, bad data)."""


class ConfigError(CifarlabError, ValueError):
    """A parameter in ``params.yaml`` (or passed to a function) is missing or invalid."""


class DataError(CifarlabError):
    """The data source or its contents cannot be used."""


class DownloadError(DataError):
    """The archive could not be fetched from its URL."""


class ChecksumError(DataError):
    """The fetched archive's md5 differs from the expected one."""


class ArchiveError(DataError):
    """The archive's members or records are not the CIFAR-10 binary layout."""


class TrainingDiverged(CifarlabError, FloatingPointError):
    """The training loss became NaN or infinite."""


class TrackingError(CifarlabError):
    """The MLflow tracking store cannot be reached or refuses this client."""

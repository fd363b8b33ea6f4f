"""The errors cifarlab raises on purpose: each says what is wrong and what to do about it."""


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

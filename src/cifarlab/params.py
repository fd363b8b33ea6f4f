"""Typed, validated access to ``params.yaml``: a bad value is a clear error naming its key."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from cifarlab.errors import ConfigError

PARAMS_FILE = "params.yaml"


def _as_number(value: Any) -> Any:
    # PyYAML follows YAML 1.1, where `1e-7` (no dot) is a string; DVC's YAML 1.2 reads a float.
    # Accept both spellings so params.yaml means the same thing to DVC and to the stages.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


class Section:
    """One section of ``params.yaml`` (``knn``, ``svm`` …) with typed getters."""

    def __init__(self, values: dict[str, Any], name: str) -> None:
        if not isinstance(values, dict):
            raise ConfigError(f"params.yaml: section {name!r} must be a mapping, got {values!r}")
        self._values = values
        self.name = name

    def _raw(self, key: str) -> Any:
        if key not in self._values:
            raise ConfigError(f"params.yaml: missing {self.name}.{key}")
        return self._values[key]

    def _fail(self, key: str, what: str) -> ConfigError:
        return ConfigError(
            f"params.yaml: {self.name}.{key} must be {what}, got {self._values.get(key)!r}"
        )

    def str(self, key: str, choices: Sequence[str] | None = None) -> str:
        value = self._raw(key)
        if not isinstance(value, str) or not value:
            raise self._fail(key, "a non-empty string")
        if choices is not None and value not in choices:
            raise self._fail(key, f"one of {list(choices)}")
        return value

    def int(self, key: str, minimum: int | None = None) -> int:
        value = _as_number(self._raw(key))
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer")
        if minimum is not None and value < minimum:
            raise self._fail(key, f"an integer >= {minimum}")
        return value

    def optional_int(self, key: str, minimum: int | None = None) -> int | None:
        return None if self._raw(key) is None else self.int(key, minimum)

    def float(self, key: str, minimum: float | None = None, maximum: float | None = None) -> float:
        value = _as_number(self._raw(key))
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self._fail(key, "a finite number")
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise self._fail(key, f"a number in [{minimum}, {maximum}]")
        return float(value)

    def number(self, key: str) -> int | float:
        """An int or a float kept as written (e.g. a count or a fraction)."""
        value = _as_number(self._raw(key))
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number")
        return value

    def list(self, key: str, item: str, choices: Sequence[str] | None = None) -> list[Any]:
        """A non-empty list of distinct items, each checked by the getter named ``item``."""
        values = self._raw(key)
        if not isinstance(values, list) or not values:
            raise self._fail(key, "a non-empty list")
        getter = getattr(
            Section({str(i): v for i, v in enumerate(values)}, f"{self.name}.{key}"), item
        )
        kwargs = {"choices": choices} if item == "str" else {}
        items = [getter(str(i), **kwargs) for i in range(len(values))]
        if len(set(items)) != len(items):
            raise self._fail(key, "a list without repeated values")
        return items

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> dict[str, Section]:
    """Read ``params.yaml`` into its sections."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run from the project root") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(document, dict):
        raise ConfigError(f"{path} must be a mapping of sections")
    return {name: Section(values, name) for name, values in document.items()}


def linear_hyperparameters(svm: Section) -> dict[str, Any]:
    """The ``svm`` section as ``LinearClassifier`` keyword arguments, less the searched ones
    (learning rate, reg and batch size come from ``svm_tune``)."""
    nesterov = svm._raw("nesterov")
    if not isinstance(nesterov, bool):
        raise svm._fail("nesterov", "true or false")
    return {
        "loss": svm.str("loss", choices=("hinge", "softmax")),
        "delta": svm.float("delta", minimum=0.0),
        "reg_type": svm.str("reg_type", choices=("l2", "l1", "elasticnet")),
        "l1_ratio": svm.float("l1_ratio", minimum=0.0, maximum=1.0),
        "epochs": svm.int("epochs", minimum=1),
        "momentum": svm.float("momentum", minimum=0.0, maximum=1.0),
        "nesterov": nesterov,
        "lr_decay": svm.float("lr_decay", minimum=0.0, maximum=1.0),
        "patience": svm.optional_int("patience", minimum=1),
        "train_eval_size": svm.optional_int("train_eval_size", minimum=1),
        "random_state": svm.int("seed", minimum=0),
    }


def linear_search_settings(tune: Section) -> tuple[str, dict[str, Any], int]:
    """The ``svm_tune`` section: (method, its settings, n_jobs).

    grid reads learning_rates, regs, batch_sizes; random reads n_trials, learning_rate_range,
    reg_range, batch_sizes, seed. Keys the method does not use are not read.
    """
    method = tune.str("method", choices=("grid", "random"))
    settings: dict[str, Any] = {"batch_sizes": tune.list("batch_sizes", "int")}
    if method == "grid":
        settings["learning_rates"] = tune.list("learning_rates", "float")
        settings["regs"] = tune.list("regs", "float")
    else:
        settings["n_trials"] = tune.int("n_trials", minimum=1)
        settings["seed"] = tune.int("seed", minimum=0)
        for key in ("learning_rate_range", "reg_range"):
            bounds = tune.list(key, "float")
            if len(bounds) != 2 or not 0 < bounds[0] < bounds[1]:
                raise tune._fail(key, "[low, high] with 0 < low < high")
            settings[key] = bounds
    return method, settings, tune.int("n_jobs", minimum=1)

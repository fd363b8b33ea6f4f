"""Every parameter of cifarlab, declared once: its type and bounds, checked at the public edge.

The same declarations check ``params.yaml`` (:func:`load_params`, before a stage computes
anything) and the keyword hyperparameters of the estimators (``LinearClassifier``,
``KNearestNeighbor``, the SGD loop's ``SGDConfig``): a learning rate has one set of bounds,
whoever passes it. Code behind that edge trusts its callers.

``params.yaml`` is read with the YAML 1.2 parser DVC itself uses, so ``1e-7`` is the same
number for DVC and for the stages. A key nothing reads is an error naming it, with the closest
known key, so that a typo cannot silently leave a default in place.
"""

from __future__ import annotations

import difflib
import math
import numbers
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab.errors import ConfigError, quoted

PARAMS_FILE = "params.yaml"


@dataclass(frozen=True)
class Param:
    """The type and bounds of one parameter.

    kind : "int", "float", "number" (an int or a float, kept as given), "str", "bool" or
        "list" (of ``item``; non-empty, distinct values).
    low, high : inclusive bounds of a number, open where ``low_open`` / ``high_open``.
    choices : the allowed strings. pattern : a regular expression a string must match fully.
    nullable : None (YAML ``null``) is allowed. length : the exact length of a list.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    nullable: bool = False
    item: Param | None = None
    length: int | None = None

    def describe(self) -> str:
        """What a valid value is, in words: "an integer >= 1", "one of ['l1', 'l2']" …"""
        if self.kind == "list":
            size = f"a list of {self.length}" if self.length else "a non-empty list of distinct"
            text = f"{size} values, each {self.item.describe()}"
        elif self.choices is not None:
            text = f"one of {list(self.choices)}"
        elif self.kind == "str":
            text = "a non-empty string"
            if self.pattern is not None:
                text = f"a string matching {self.pattern}"
        elif self.kind == "bool":
            text = "true or false"
        else:
            text = {"int": "an integer", "float": "a finite number"}.get(self.kind, "a number")
            if self.low is not None and self.high is not None:
                left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
                text += f" in {left}{self.low:g}, {self.high:g}{right}"
            elif self.low is not None:
                text += f" {'>' if self.low_open else '>='} {self.low:g}"
            elif self.high is not None:
                text += f" {'<' if self.high_open else '<='} {self.high:g}"
        return f"{text} or null" if self.nullable else text

    def check(self, name: str, value: Any) -> Any:
        """``value`` if valid (ints as ``int``, numbers as ``float``, lists as ``list``), else a
        ConfigError naming ``name``: "{name} must be {describe()}, got {value!r}"."""
        if value is None and self.nullable:
            return None
        checked = self._convert(value)
        if checked is _INVALID:
            raise ConfigError(f"{name} must be {self.describe()}, got {quoted(value)}")
        return checked

    def _convert(self, value: Any) -> Any:
        if self.kind == "list":
            if not isinstance(value, list | tuple) or not value:
                return _INVALID
            if self.length is not None and len(value) != self.length:
                return _INVALID
            items = [self.item._convert(v) for v in value]
            if any(v is _INVALID for v in items) or len(set(items)) != len(items):
                return _INVALID
            return items
        if self.kind == "bool":
            return bool(value) if isinstance(value, bool) else _INVALID
        if self.kind == "str":
            if not isinstance(value, str) or not value:
                return _INVALID
            if self.choices is not None and value not in self.choices:
                return _INVALID
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                return _INVALID
            return value
        # bool is an int subclass, but `epochs: true` is a mistake, not the number 1.
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return _INVALID
        if self.kind == "int":
            if isinstance(value, numbers.Integral):
                value = int(value)
            elif isinstance(value, float) and value.is_integer():
                value = int(value)  # 1.0e+3 written for a count
            else:
                return _INVALID
        else:
            keep_int = self.kind == "number" and isinstance(value, numbers.Integral)
            value = int(value) if keep_int else float(value)
            if not math.isfinite(value):
                return _INVALID
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return _INVALID
        if self.high is not None and (value >= self.high if self.high_open else value > self.high):
            return _INVALID
        return value


_INVALID = object()




# --------------------------------------------------------------------------- the declarations

DISTANCES = ("l1", "l2")
LOSSES = ("hinge", "softmax")
REGULARIZERS = ("l2", "l1", "elasticnet")

#: ``LinearClassifier`` keyword hyperparameters (and so ``SGDConfig``'s fields).
LINEAR = {
    "loss": Param("str", choices=LOSSES),
    "reg": Param("float", low=0),
    "reg_type": Param("str", choices=REGULARIZERS),
    "l1_ratio": Param("float", low=0, high=1),
    "delta": Param("float", low=0, low_open=True),
    "learning_rate": Param("float", low=0, low_open=True),
    "batch_size": Param("int", low=1),
    "epochs": Param("int", low=1),
    "momentum": Param("float", low=0, high=1, high_open=True),
    "nesterov": Param("bool"),
    "lr_decay": Param("float", low=0, high=1, low_open=True),
    "patience": Param("int", low=1, nullable=True),
    "train_eval_size": Param("int", low=1, nullable=True),
    "random_state": Param("int", low=0),
}

#: ``KNearestNeighbor`` keyword hyperparameters.
KNN = {
    "k": Param("int", low=1),
    "distance": Param("str", choices=DISTANCES),
    "memory_budget_bytes": Param("int", low=1),
    "progress": Param("bool"),
}

_SEED = Param("int", low=0)

#: ``params.yaml``: section -> key -> declaration.
SECTIONS: dict[str, dict[str, Param]] = {
    "data": {
        "url": Param("str"),
        "md5": Param("str", pattern="[0-9a-fA-F]{32}"),
    },
    "split": {
        # A count (int >= 1) or a fraction in (0, 1); which one is checked against the data.
        "val_size": Param("number", low=0, low_open=True),
        "seed": _SEED,
    },
    "knn": {
        "k_choices": Param("list", item=KNN["k"]),
        "distances": Param("list", item=KNN["distance"]),
        "folds": Param("int", low=2),
        "train_size": Param("int", low=2, nullable=True),
        "seed": _SEED,
    },
    "svm": {
        **{
            key: LINEAR[key]
            for key in (
                "loss", "delta", "reg_type", "l1_ratio", "epochs", "lr_decay", "momentum",
                "nesterov", "patience", "train_eval_size",
            )
        },  # fmt: skip
        "seed": LINEAR["random_state"],
    },
    "svm_tune": {
        "sampler": Param("str", choices=("random", "grid", "tpe")),
        "pruner": Param("str", choices=("none", "median", "percentile", "hyperband")),
        "min_epochs": Param("int", low=1),
        "n_startup_trials": Param("int", low=0),
        "percentile": Param("number", low=0, high=100, low_open=True),
        "n_trials": Param("int", low=1),
        "learning_rate_range": Param("list", item=LINEAR["learning_rate"], length=2),
        "reg_range": Param("list", item=Param("float", low=0, low_open=True), length=2),
        "seed": _SEED,
        "learning_rates": Param("list", item=LINEAR["learning_rate"]),
        "regs": Param("list", item=LINEAR["reg"]),
        "batch_sizes": Param("list", item=LINEAR["batch_size"]),
    },
    # Settings that cannot change a result: read by the stages and recorded on their MLflow
    # runs, but not DVC params, so changing them reruns nothing.
    "resources": {
        "memory_budget_mb": Param("int", low=16),
        "n_jobs": Param("int", low=1),
    },
    "tracking": {
        "experiment": Param("str"),
    },
}

#: The sections no stage declares in ``dvc.yaml`` (see ``SECTIONS``).
RUNTIME_SECTIONS = ("resources", "tracking")


def _rules_linear(values: Mapping[str, Any]) -> str | None:
    if values.get("nesterov") and not values.get("momentum"):
        return "nesterov needs momentum > 0"
    return None


def _rules_tune(values: Mapping[str, Any]) -> str | None:
    for key in ("learning_rate_range", "reg_range"):
        low, high = values[key]
        if not low < high:
            return f"{key} must be [low, high] with low < high, got {values[key]!r}"
    return None


# Constraints between values of one section, checked once every value is valid on its own.
_RULES: dict[str, Callable[[Mapping[str, Any]], str | None]] = {
    "svm": _rules_linear,
    "svm_tune": _rules_tune,
}


# --------------------------------------------------------------------------- checking


def check_values(
    declaration: Mapping[str, Param], values: Mapping[str, Any], where: str = ""
) -> dict[str, Any]:
    """Check keyword ``values`` against ``declaration`` (unknown names are errors).

    where : prefix of the names in messages (``"params.yaml: svm."``; empty for keyword
        arguments). Returns the converted values; a missing name is not an error here.
    """
    _reject_unknown(declaration, values, where)
    return {key: declaration[key].check(f"{where}{key}", value) for key, value in values.items()}


class DeclaredParameters:
    """``get_params`` / ``set_params`` of an estimator from its declaration, ``_declaration``.

    A mixin for the scikit-learn estimators (before ``BaseEstimator``): their parameters are
    those of the declaration, in its order. ``set_params`` stores values unchecked (``fit``
    checks them), but an unknown name is a ConfigError at once.
    """

    _declaration: Mapping[str, Param]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The parameters by name (``deep`` is scikit-learn's: there is nothing nested)."""
        return {name: getattr(self, name) for name in self._declaration}

    def set_params(self, **params: Any) -> Any:
        for name in params:
            if name not in self._declaration:
                raise ConfigError(
                    f"unknown parameter {quoted(name)} for {type(self).__name__}; "
                    f"valid ones are {tuple(self._declaration)}"
                )
        return super().set_params(**params)  # type: ignore[misc]


def check_linear(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``LinearClassifier`` keyword hyperparameters, the cross-checks included."""
    checked = check_values(LINEAR, values)
    problem = _rules_linear(checked)
    if problem:
        raise ConfigError(f"{problem}, got momentum={checked.get('momentum')!r}")
    return checked


def _reject_unknown(declaration: Mapping[str, Any], values: Mapping[str, Any], where: str) -> None:
    for key in values:
        if key not in declaration:
            name = key if isinstance(key, str) and len(key) <= 80 else quoted(key)
            raise ConfigError(f"{where}{name}: unknown {_closest(key, declaration, where)}")


def _closest(key: Any, known: Mapping[str, Any], where: str) -> str:
    """"name; did you mean X?" with the closest known name, in this section or else in any."""
    kind = "section" if where == "params.yaml: " else "key" if where else "parameter"
    text = f"{kind} (known: {', '.join(known)})"
    if not isinstance(key, str):
        return text
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    if not match and kind == "key":
        elsewhere = [f"{s}.{k}" for s, keys in SECTIONS.items() for k in keys]
        match = difflib.get_close_matches(key, elsewhere, n=1, cutoff=0.6) or [
            name for name in elsewhere if name.split(".")[1] == key
        ][:1]
    return f"{kind}; did you mean {match[0]}?" if match else text


def check_params(document: Any, source: str = PARAMS_FILE) -> dict[str, dict[str, Any]]:
    """Check a whole ``params.yaml`` document: every section and key known, present and valid.

    Returns section -> key -> converted value.
    """
    if not isinstance(document, Mapping):
        raise ConfigError(f"{source} must be a mapping of sections, got {quoted(document)}")
    _reject_unknown(SECTIONS, document, f"{source}: ")
    params: dict[str, dict[str, Any]] = {}
    for section, declaration in SECTIONS.items():
        values = document.get(section)
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{source}: section {section!r} must be a mapping, got {quoted(values)}"
            )
        missing = [key for key in declaration if key not in values]
        if missing:
            raise ConfigError(f"{source}: missing {section}.{missing[0]}")
        params[section] = check_values(declaration, values, f"{source}: {section}.")
        rule = _RULES.get(section)
        problem = rule(params[section]) if rule else None
        if problem:
            raise ConfigError(f"{source}: {section}: {problem}")
    return params


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> dict[str, dict[str, Any]]:
    """Read and check ``params.yaml``: section -> key -> value (see :func:`check_params`)."""
    from ruamel.yaml import YAML, YAMLError

    path = Path(path)
    try:
        document = YAML(typ="safe", pure=True).load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: run from the project root") from None
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path} is not valid YAML: {first}") from None
    return check_params(document, str(path.name if path.name == PARAMS_FILE else path))


def linear_hyperparameters(svm: Mapping[str, Any]) -> dict[str, Any]:
    """The checked ``svm`` section as ``LinearClassifier`` keyword arguments (its ``seed`` is
    the estimator's ``random_state``), less the searched ones: learning rate, reg and batch
    size come from ``svm_tune``."""
    return {("random_state" if key == "seed" else key): value for key, value in svm.items()}

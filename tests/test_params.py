"""params.yaml access: typed getters with clear errors."""

from __future__ import annotations

import pytest
from conftest import REPO

from cifarlab.errors import ConfigError
from cifarlab.params import Section, linear_hyperparameters, linear_search_settings, load_params


def test_repository_params_are_valid():
    params = load_params(REPO / "params.yaml")
    hyper = linear_hyperparameters(params["svm"])
    assert hyper["loss"] == "hinge" and hyper["epochs"] >= 1
    method, settings, n_jobs = linear_search_settings(params["svm_tune"])
    assert method in ("grid", "random") and settings["batch_sizes"] and n_jobs >= 1
    assert set(params["knn"].list("distances", "str", choices=("l1", "l2"))) == {"l1", "l2"}


def test_yaml_1_1_exponents_read_as_numbers():
    section = Section({"lr": "1e-7", "n": 3.0}, "svm")
    assert section.float("lr") == 1e-7
    assert section.int("n") == 3


@pytest.mark.parametrize(
    ("values", "call", "message"),
    [
        ({}, lambda s: s.int("folds"), "missing knn.folds"),
        ({"folds": "five"}, lambda s: s.int("folds"), "knn.folds must be an integer"),
        ({"folds": True}, lambda s: s.int("folds"), "knn.folds must be an integer"),
        ({"folds": 1}, lambda s: s.int("folds", minimum=2), ">= 2"),
        ({"lr": float("nan")}, lambda s: s.float("lr"), "finite"),
        ({"d": "l3"}, lambda s: s.str("d", choices=("l1", "l2")), "one of"),
        ({"k": []}, lambda s: s.list("k", "int"), "non-empty list"),
        ({"k": [1, 1]}, lambda s: s.list("k", "int"), "without repeated"),
        ({"k": [1, "x"]}, lambda s: s.list("k", "int"), "knn.k.1 must be an integer"),
    ],
)
def test_bad_values_name_their_key(values, call, message):
    with pytest.raises(ConfigError, match=message):
        call(Section(values, "knn"))


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("a: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")

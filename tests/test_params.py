"""params.yaml and keyword hyperparameters: one declaration, one clear error naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO

from cifarlab.errors import ConfigError
from cifarlab.params import (
    KNN,
    LINEAR,
    SECTIONS,
    Param,
    check_linear,
    check_params,
    linear_hyperparameters,
    load_params,
)

DOCUMENT = yaml.safe_load((REPO / "params.yaml").read_text())


def with_value(section, key, value):
    document = copy.deepcopy(DOCUMENT)
    document[section][key] = value
    return document


def test_repository_params_are_valid_and_typed():
    params = load_params(REPO / "params.yaml")
    assert set(params) == set(SECTIONS)
    assert isinstance(params["split"]["val_size"], int)  # a count stays a count
    assert isinstance(params["svm"]["lr_decay"], float)
    hyper = linear_hyperparameters(params["svm"])
    assert hyper["random_state"] == params["svm"]["seed"] and "seed" not in hyper
    assert set(hyper) < set(LINEAR)


def test_yaml_1_2_exponents_read_as_numbers_as_dvc_reads_them(tmp_path):
    text = (REPO / "params.yaml").read_text().replace("2.0e-6", "2e-6")
    assert "[2e-6, 6.4e-5]" in text  # PyYAML (YAML 1.1) would read 2e-6 as a string
    (tmp_path / "params.yaml").write_text(text)
    assert load_params(tmp_path / "params.yaml")["svm_tune"]["learning_rate_range"][0] == 2e-6


def test_the_estimators_and_params_yaml_share_one_declaration():
    # Same objects, so the bounds cannot disagree.
    for key in ("loss", "delta", "momentum", "lr_decay", "nesterov", "patience", "epochs"):
        assert SECTIONS["svm"][key] is LINEAR[key]
    assert SECTIONS["svm"]["seed"] is LINEAR["random_state"]
    assert SECTIONS["svm_tune"]["learning_rates"].item is LINEAR["learning_rate"]
    assert SECTIONS["svm_tune"]["batch_sizes"].item is LINEAR["batch_size"]
    assert SECTIONS["knn"]["k_choices"].item is KNN["k"]
    assert SECTIONS["knn"]["distances"].item is KNN["distance"]


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("knn", "folds", "five", r"knn\.folds must be an integer >= 2, got 'five'"),
        ("knn", "folds", True, r"knn\.folds must be an integer"),
        ("knn", "folds", 1, r"knn\.folds must be an integer >= 2, got 1"),
        ("knn", "k_choices", [], r"knn\.k_choices must be a non-empty list"),
        ("knn", "k_choices", [1, 1], r"knn\.k_choices must be a non-empty list of distinct"),
        ("knn", "k_choices", [1, "x"], r"knn\.k_choices .*each an integer >= 1"),
        ("knn", "distances", ["l3"], r"knn\.distances .*one of \['l1', 'l2'\]"),
        ("knn", "train_size", 1, r"knn\.train_size must be an integer >= 2 or null"),
        ("svm", "momentum", 1.0, r"svm\.momentum must be a finite number in \[0, 1\), got 1\.0"),
        ("svm", "lr_decay", 0, r"svm\.lr_decay must be a finite number in \(0, 1\]"),
        ("svm", "delta", float("nan"), r"svm\.delta must be a finite number > 0"),
        ("svm", "loss", "hinge2", r"svm\.loss must be one of \['hinge', 'softmax'\]"),
        ("svm", "nesterov", "yes", r"svm\.nesterov must be true or false"),
        ("svm", "epochs", 2.5, r"svm\.epochs must be an integer >= 1"),
        ("svm_tune", "batch_sizes", [0], r"svm_tune\.batch_sizes .*an integer >= 1"),
        ("svm_tune", "reg_range", [1.0], r"svm_tune\.reg_range must be a list of 2 values"),
        ("svm_tune", "learning_rates", [-1e-6], r"svm_tune\.learning_rates .*> 0"),
        ("resources", "memory_budget_mb", 8, r"resources\.memory_budget_mb must be .* >= 16"),
        ("resources", "n_jobs", 0, r"resources\.n_jobs must be an integer >= 1"),
        ("split", "val_size", "10", r"split\.val_size must be a number > 0"),
        ("data", "md5", "abc", r"data\.md5 must be a string matching"),
        ("tracking", "experiment", "", r"tracking\.experiment must be a non-empty string"),
    ],
)
def test_bad_values_name_their_key(section, key, value, message):
    with pytest.raises(ConfigError, match=f"^params.yaml: {message}"):
        check_params(with_value(section, key, value))


@pytest.mark.parametrize(
    ("section", "key", "hint"),
    [
        ("svm", "lerning_rate", "did you mean svm_tune.learning_rates?"),
        ("svm", "epoch", "did you mean epochs?"),
        ("knn", "memory_budget_mb", "did you mean resources.memory_budget_mb?"),
        ("svm_tune", "n_jobs", "did you mean resources.n_jobs?"),
        ("knn", "zzzz", "known: k_choices, distances, folds, train_size, seed"),
    ],
)
def test_a_key_nothing_reads_is_an_error_with_the_closest_known_key(section, key, hint):
    with pytest.raises(ConfigError) as error:
        check_params(with_value(section, key, 1))
    assert str(error.value) == f"params.yaml: {section}.{key}: unknown key; {hint}" or (
        str(error.value) == f"params.yaml: {section}.{key}: unknown key ({hint})"
    )


def test_unknown_or_missing_sections_and_keys():
    document = copy.deepcopy(DOCUMENT)
    document["knnn"] = {}
    with pytest.raises(ConfigError, match=r"^params.yaml: knnn: unknown section; did you mean knn"):
        check_params(document)
    document = copy.deepcopy(DOCUMENT)
    del document["svm"]["loss"]
    with pytest.raises(ConfigError, match=r"^params.yaml: missing svm\.loss$"):
        check_params(document)
    document["svm"] = [1]
    with pytest.raises(ConfigError, match="section 'svm' must be a mapping"):
        check_params(document)
    with pytest.raises(ConfigError, match="must be a mapping of sections"):
        check_params([1, 2])


def test_rules_between_values():
    document = with_value("svm", "nesterov", True)
    document["svm"]["momentum"] = 0.0
    with pytest.raises(ConfigError, match=r"^params.yaml: svm: nesterov needs momentum > 0"):
        check_params(document)
    with pytest.raises(ConfigError, match="learning_rate_range must be \\[low, high\\]"):
        check_params(with_value("svm_tune", "learning_rate_range", [1e-5, 1e-6]))
    with pytest.raises(ConfigError, match="nesterov needs momentum > 0"):
        check_linear({"nesterov": True, "momentum": 0.0})


def test_keyword_hyperparameters_are_checked_by_name():
    assert check_linear({"learning_rate": 1, "epochs": 3.0}) == {"learning_rate": 1.0, "epochs": 3}
    with pytest.raises(ConfigError, match=r"^learning_rate must be a finite number > 0, got 0"):
        check_linear({"learning_rate": 0})
    with pytest.raises(ConfigError, match=r"^lerning_rate: unknown parameter; did you mean "):
        check_linear({"lerning_rate": 1e-6})


def test_long_values_are_quoted_short():
    with pytest.raises(ConfigError) as error:
        check_params(with_value("svm", "loss", "x" * 100_000))
    assert len(str(error.value)) < 300


def test_param_describes_itself():
    assert Param("float", low=0, high=1, high_open=True).describe() == "a finite number in [0, 1)"
    assert Param("int", low=1, nullable=True).describe() == "an integer >= 1 or null"
    assert Param("number", low=0, low_open=True).check("x", 3) == 3
    assert Param("number", low=0, low_open=True).check("x", 0.5) == 0.5


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "params.yaml")
    (tmp_path / "params.yaml").write_text("a: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(tmp_path / "params.yaml")

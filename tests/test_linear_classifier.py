"""Tests of cifarlab.linear.classifier: the estimator contract, training on raw images, any
class labels, the model file, and the one clear error of each bad hyperparameter or array
(scikit-learn's own checks and tools: tests/test_sklearn_compat.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import learnable_images
from linear_reference import assert_config_error, blobs
from sklearn.exceptions import NotFittedError

from cifarlab.data.prepared import Split
from cifarlab.errors import ConfigError, DataError, TrainingDiverged
from cifarlab.linear.classifier import (
    LinearClassifier,
    load_linear_model,
    save_linear_model,
    sgd_config,
    train_linear,
)
from cifarlab.linear.sgd import SGDConfig
from cifarlab.params import LINEAR, LOSSES, REGULARIZERS


def small_images(seed=0, n=60, d=12, n_classes=3):
    """uint8 'images' whose class shows in the pixel values (learnable after centring)."""
    return learnable_images(seed, n, d, n_classes)


FAST = dict(learning_rate=1e-4, reg=1e-2, batch_size=10, epochs=5)


def test_fit_returns_self_and_sets_learned_state():
    X, y = small_images()
    clf = LinearClassifier(**FAST)
    assert clf.fit(X, y) is clf
    assert clf.W_.shape == (12, 3) and clf.W_.dtype == np.float32
    assert clf.b_.shape == (3,) and clf.b_.dtype == np.float32
    assert clf.mean_.shape == (12,) and clf.mean_.dtype == np.float32
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.n_steps_ == 5 * 6 and clf.loss_history_.shape == (30,)
    assert clf.n_epochs_ == 5 and clf.best_epoch_ == 4
    assert clf.train_accuracy_history_.shape == (5,)
    assert clf.val_accuracy_history_.shape == (0,)
    assert clf.n_features_in_ == 12
    assert clf.score(X, y) == 1.0


def test_init_stores_hyperparameters_unmodified_and_get_params_round_trips():
    params = dict(
        loss="softmax", reg=3, reg_type="elasticnet", l1_ratio=0.2, delta=2.0,
        learning_rate=1e-3, batch_size=7, epochs=2, momentum=0.5, nesterov=True,
        lr_decay=0.9, patience=3, train_eval_size=100, random_state=42,
    )  # fmt: skip
    clf = LinearClassifier(**params)
    assert clf.get_params() == params
    assert list(clf.get_params()) == list(LINEAR)  # the declared hyperparameters, in order
    assert clf.get_params(deep=False) == params  # nothing nested
    assert type(clf.get_params()["reg"]) is int  # stored as given, not coerced
    assert LinearClassifier(**clf.get_params()).get_params() == params
    assert LinearClassifier().set_params(**params).get_params() == params
    with pytest.raises(ConfigError, match="unknown parameter 'bogus' for LinearClassifier"):
        LinearClassifier().set_params(bogus=1)
    with pytest.raises(TypeError):
        LinearClassifier("hinge")  # keyword-only, as scikit-learn requires


def test_sgd_config_fills_defaults_and_splits_off_the_seed():
    config, random_state = sgd_config({"loss": "softmax", "epochs": 3.0, "random_state": 7})
    defaults = LinearClassifier().get_params()
    assert random_state == 7 and config.loss == "softmax" and config.epochs == 3
    assert config.learning_rate == defaults["learning_rate"] and config.reg == defaults["reg"]
    assert isinstance(config, SGDConfig)
    with pytest.raises(ConfigError, match="unknown parameter 'lr'"):
        sgd_config({"lr": 1e-3})


def test_any_labels_train_exactly_as_their_positions_in_classes():
    X, y = small_images()
    plain = LinearClassifier(**FAST).fit(X, y)
    for labels in (np.array(["cat", "dog", "ship"]), np.array([-3, 10, 42]), np.array([0.0, 1, 2])):
        clf = LinearClassifier(**FAST).fit(X, labels[y])
        np.testing.assert_array_equal(clf.classes_, labels)
        np.testing.assert_array_equal(clf.W_, plain.W_)  # the same training, bit for bit
        np.testing.assert_array_equal(clf.predict(X), labels[plain.predict(X)])
        assert clf.score(X, labels[y]) == plain.score(X, y)
    # Validation labels are mapped with the training classes.
    X_val, y_val = small_images(seed=1, n=30)
    names = np.array(["cat", "dog", "ship"])
    a = LinearClassifier(**FAST).fit(X, y, X_val, y_val)
    b = LinearClassifier(**FAST).fit(X, names[y], X_val, names[y_val])
    np.testing.assert_array_equal(a.val_accuracy_history_, b.val_accuracy_history_)


def test_binary_decision_function_is_the_score_difference():
    X, y = small_images(n_classes=2)
    clf = LinearClassifier(**FAST).fit(X, y)
    scores = (X - clf.mean_) @ clf.W_ + clf.b_
    decision = clf.decision_function(X)
    assert decision.shape == (60,)
    np.testing.assert_allclose(decision, scores[:, 1] - scores[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(clf.predict(X), (decision > 0).astype(int))


def test_predict_proba_is_the_softmax_of_the_scores_and_only_for_softmax():
    X, y = small_images()
    clf = LinearClassifier(**dict(FAST, loss="softmax")).fit(X, y)
    proba = clf.predict_proba(X)
    scores = clf.decision_function(X).astype(np.float64)
    expected = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    assert proba.shape == (60, 3) and proba.dtype == np.float64
    np.testing.assert_allclose(proba, expected, rtol=1e-12)
    np.testing.assert_array_equal(proba.argmax(axis=1), clf.predict(X))
    assert not hasattr(LinearClassifier(loss="hinge"), "predict_proba")  # scores, not probabilities
    assert hasattr(LinearClassifier(loss="softmax"), "predict_proba")
    assert not hasattr(clf.set_params(loss="hinge"), "predict_proba")


def test_same_random_state_is_reproducible_and_different_seeds_differ():
    X, y = small_images()
    a = LinearClassifier(**FAST, random_state=3).fit(X, y)
    b = LinearClassifier(**FAST, random_state=3).fit(X, y)
    c = LinearClassifier(**FAST, random_state=4).fit(X, y)
    np.testing.assert_array_equal(a.W_, b.W_)
    np.testing.assert_array_equal(a.loss_history_, b.loss_history_)
    assert not np.array_equal(a.W_, c.W_)


def test_mean_is_computed_on_training_data_only():
    X, y = small_images()
    X_val, y_val = small_images(seed=1, n=30)
    X_val = X_val // 4 + 150  # a very different mean: must not leak into mean_
    clf = LinearClassifier(**FAST).fit(X, y, X_val=X_val, y_val=y_val)
    np.testing.assert_allclose(clf.mean_, X.mean(axis=0, dtype=np.float64), rtol=1e-6)
    # The validation accuracy logged during training used the training mean too.
    assert clf.val_accuracy_history_[-1] == clf.score(X_val, y_val)


def test_decision_function_centres_raw_input_and_leaves_it_untouched():
    X, y = small_images()
    X_float = X.astype(np.float64)
    clf = LinearClassifier(**FAST).fit(X_float, y)
    scores = clf.decision_function(X_float)
    np.testing.assert_array_equal(X_float, X)  # not centred in place
    assert scores.shape == (60, 3)
    np.testing.assert_allclose(scores, (X - clf.mean_) @ clf.W_ + clf.b_, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(clf.predict(X), scores.argmax(axis=1))
    assert clf.score(X, y) == np.mean(clf.predict(X) == y)


def test_chunked_scoring_matches_unchunked(monkeypatch):
    import cifarlab.linear.sgd as sgd_module

    X, y = small_images(n=50)
    clf = LinearClassifier(**FAST).fit(X, y)
    whole = clf.decision_function(X)
    monkeypatch.setattr(sgd_module, "_CHUNK_ROWS", 7)
    np.testing.assert_allclose(clf.decision_function(X), whole, rtol=1e-6)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("reg_type", REGULARIZERS)
def test_model_learns_every_objective(loss, reg_type):
    X, y = small_images()
    clf = LinearClassifier(**dict(FAST, loss=loss, reg_type=reg_type, epochs=10)).fit(X, y)
    assert clf.score(X, y) >= 0.9


def test_model_fit_diverging_names_hyperparameters():
    X, y = blobs()
    clf = LinearClassifier(learning_rate=1e30, reg=1.0, batch_size=20, epochs=2)
    with pytest.raises(TrainingDiverged, match=r"step \d+.*reg=1\.0.*learning_rate=1e\+30"):
        clf.fit(X * 100, y)


# --------------------------------------------------------------------------- svm_train


def test_train_linear_summarises_the_kept_weights():
    train, val = Split(*small_images()), Split(*small_images(seed=1, n=30))
    epochs = []
    model, summary = train_linear(
        train, val, dict(FAST, patience=2), on_epoch_end=lambda *a: epochs.append(a[0])
    )
    assert epochs == list(range(model.n_epochs_))
    assert summary == {
        "loss": "hinge", "learning_rate": 1e-4, "reg": 1e-2, "batch_size": 10,
        "best_epoch": model.best_epoch_, "epochs_run": model.n_epochs_,
        "train_accuracy": model.score(train.X, train.y),
        "val_accuracy": model.val_accuracy_history_[model.best_epoch_],
    }  # fmt: skip
    json.dumps(summary)  # plain Python numbers, for reports/svm_train.json


def test_saved_model_loads_and_predicts_the_same(tmp_path):
    X, y = small_images()
    model = LinearClassifier(**dict(FAST, loss="softmax", reg=3)).fit(X, y)
    save_linear_model(tmp_path / "svm.npz", model)
    loaded = load_linear_model(tmp_path / "svm.npz")
    assert loaded.get_params() == model.get_params()
    for name in ("W_", "b_", "mean_", "classes_", "n_features_in_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name))
    assert not hasattr(loaded, "feature_names_in_")
    np.testing.assert_array_equal(loaded.decision_function(X), model.decision_function(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    with pytest.raises(DataError, match="run svm_train first"):
        load_linear_model(tmp_path / "missing.npz")


def test_saved_model_keeps_labels_and_column_names_from_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    X, y = small_images()
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(12)])
    labels = pd.Series(np.array(["cat", "dog", "ship"], dtype=object)[y])
    model = LinearClassifier(**FAST).fit(frame, labels)
    assert model.classes_.dtype == object  # what pandas gives; stored without pickle
    save_linear_model(tmp_path / "svm.npz", model)
    loaded = load_linear_model(tmp_path / "svm.npz")
    assert loaded.classes_.tolist() == ["cat", "dog", "ship"]
    assert loaded.feature_names_in_.tolist() == frame.columns.tolist()
    np.testing.assert_array_equal(loaded.predict(frame), model.predict(frame))
    with pytest.warns(UserWarning, match="feature names"):
        loaded.predict(X)  # scikit-learn's check of the columns holds for the loaded model


# --------------------------------------------------------------------------- bad input


def _fit(X=None, y=None, **kwargs):
    X0, y0 = small_images(n=12)
    params = {k: kwargs.pop(k) for k in list(kwargs) if k in LINEAR}
    LinearClassifier(**dict(FAST, **params)).fit(
        X0 if X is None else X, y0 if y is None else y, **kwargs
    )


def _fitted():
    return LinearClassifier(**FAST).fit(*small_images(n=12))


_X, _Y = small_images(n=12)

# Each bad hyperparameter is a ConfigError, from its declaration in cifarlab.params (checked
# once, by the SGDConfig fit makes; random_state by fit).
BAD_HYPERPARAMETERS = {
    "loss": (lambda: _fit(loss="svm"), r"^loss must be one of \['hinge', 'softmax'\], got 'svm'$"),
    "reg_type": (lambda: _fit(reg_type="l3"), r"^reg_type must be one of .*, got 'l3'$"),
    "reg<0": (lambda: _fit(reg=-1.0), r"^reg must be a finite number >= 0, got -1\.0$"),
    "reg nan": (lambda: _fit(reg=float("nan")), r"^reg must .*, got nan$"),
    "reg str": (lambda: _fit(reg="1e3"), r"^reg must .*, got '1e3'$"),
    "l1_ratio>1": (lambda: _fit(l1_ratio=1.5), r"^l1_ratio must be .* in \[0, 1\], got 1\.5$"),
    "l1_ratio<0": (lambda: _fit(l1_ratio=-0.1), r"^l1_ratio .*-0\.1$"),
    "delta=0": (lambda: _fit(delta=0.0), r"^delta must be a finite number > 0, got 0\.0$"),
    "learning_rate=0": (lambda: _fit(learning_rate=0.0), r"^learning_rate must .*> 0, got 0\.0$"),
    "learning_rate<0": (lambda: _fit(learning_rate=-1e-7), r"^learning_rate .*-1e-07$"),
    "learning_rate inf": (lambda: _fit(learning_rate=float("inf")), r"^learning_rate .*inf$"),
    "batch_size=0": (lambda: _fit(batch_size=0), r"^batch_size must be an integer >= 1, got 0$"),
    "batch_size float": (lambda: _fit(batch_size=2.5), r"^batch_size .*2\.5$"),
    "batch_size bool": (lambda: _fit(batch_size=True), r"^batch_size .*True$"),
    "epochs=0": (lambda: _fit(epochs=0), r"^epochs must be an integer >= 1, got 0$"),
    "momentum=1": (lambda: _fit(momentum=1.0), r"^momentum must .* in \[0, 1\), got 1\.0$"),
    "momentum<0": (lambda: _fit(momentum=-0.5), r"^momentum .*-0\.5$"),
    "nesterov str": (lambda: _fit(nesterov="yes"), r"^nesterov must be true or false, got 'yes'$"),
    "nesterov no momentum": (lambda: _fit(nesterov=True), r"^nesterov needs momentum > 0"),
    "lr_decay=0": (lambda: _fit(lr_decay=0.0), r"^lr_decay must .* in \(0, 1\], got 0\.0$"),
    "lr_decay>1": (lambda: _fit(lr_decay=1.5), r"^lr_decay .*1\.5$"),
    "patience=0": (lambda: _fit(patience=0, X_val=_X, y_val=_Y), r"^patience .* >= 1 .*got 0$"),
    "patience float": (lambda: _fit(patience=2.5, X_val=_X, y_val=_Y), r"^patience .*2\.5$"),
    "patience no val": (lambda: _fit(patience=2), r"patience=2 \(early stopping\) needs X_val"),
    "train_eval_size=0": (lambda: _fit(train_eval_size=0), r"^train_eval_size .*got 0$"),
    "random_state<0": (lambda: _fit(random_state=-1), r"^random_state must .* >= 0, got -1$"),
    "random_state str": (lambda: _fit(random_state="0"), r"^random_state .*'0'$"),
    "unknown name": (lambda: LinearClassifier().set_params(bogus=1),
                     r"^unknown parameter 'bogus' for LinearClassifier; valid ones are \('loss'"),
    # what fit checks beyond scikit-learn's validation of the arrays
    "one class": (
        lambda: _fit(y=np.zeros(12, dtype=int)), r"^y must hold at least 2 classes.*1 class: \[0\]$"
    ),
    "X_val alone": (lambda: _fit(X_val=_X), r"X_val and y_val must be given together"),
    "X_val features": (lambda: _fit(X_val=_X[:, :5], y_val=_Y), r"X_val has 5 features"),
    "y_val length": (lambda: _fit(X_val=_X, y_val=_Y[:3]), r"y_val has 3 labels"),
    "y_val label": (
        lambda: _fit(X_val=_X, y_val=_Y + 2), r"^y_val holds labels that y does not: \[3, 4\]$"
    ),
    "y_val 2-D": (lambda: _fit(X_val=_X, y_val=_Y[:, None]), r"y_val must be 1-D"),
    "on_epoch_end": (lambda: _fit(on_epoch_end=3), r"on_epoch_end must be callable .*3"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_HYPERPARAMETERS), ids=list(BAD_HYPERPARAMETERS))
def test_bad_hyperparameter_raises_config_error(case):
    assert_config_error(*BAD_HYPERPARAMETERS[case])


# Bad arrays get scikit-learn's own ValueError (validate_data, check_classification_targets),
# the one every scikit-learn estimator raises; NotFittedError is a ValueError too.
BAD_ARRAYS = {
    "X 1-D": (lambda: _fit(X=_X[0]), r"^Expected 2D array, got 1D array instead"),
    "X 3-D": (lambda: _fit(X=_X.reshape(12, 3, 4)), r"^Found array with dim 3"),
    "X strings": (lambda: _fit(X=np.full((12, 12), "a")), r"^dtype='numeric' is not compatible"),
    "X complex": (lambda: _fit(X=_X + 1j), r"^Complex data not supported"),
    "X empty": (lambda: _fit(X=_X[:0], y=_Y[:0]), r"^Found array with 0 sample\(s\)"),
    "X no features": (lambda: _fit(X=_X[:, :0]), r"^Found array with 0 feature\(s\)"),
    "X nan": (lambda: _fit(X=np.where(_X == _X[0, 0], np.nan, _X)), r"^Input X contains NaN"),
    "y 2-D": (lambda: _fit(y=np.stack([_Y, _Y], axis=1)), r"^y should be a 1d array"),
    "y continuous": (lambda: _fit(y=_Y + 0.5), r"^Unknown label type: continuous"),
    "y nan": (lambda: _fit(y=np.where(_Y == 0, np.nan, _Y)), r"^Input y contains NaN"),
    "y None": (
        lambda: LinearClassifier().fit(_X, None),
        r"requires y to be passed, but the target",
    ),
    "len mismatch": (lambda: _fit(y=_Y[:-1]), r"inconsistent numbers of samples: \[12, 11\]"),
    "predict unfitted": (lambda: LinearClassifier().predict(_X), r"is not fitted yet"),
    "decision unfitted": (lambda: LinearClassifier().decision_function(_X), r"is not fitted yet"),
    "score unfitted": (lambda: LinearClassifier().score(_X, _Y), r"is not fitted yet"),
    "proba unfitted": (lambda: LinearClassifier(loss="softmax").predict_proba(_X), r"not fitted"),
    "predict features": (
        lambda: _fitted().predict(_X[:, :5]),
        r"^X has 5 features, but LinearClassifier is expecting 12 features as input",
    ),
    "predict 1-D": (lambda: _fitted().predict(_X[0]), r"^Expected 2D array, got 1D array instead"),
    "score len": (lambda: _fitted().score(_X, _Y[:4]), r"inconsistent numbers of samples"),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS), ids=list(BAD_ARRAYS))
def test_bad_array_raises_scikit_learns_value_error(case):
    call, pattern = BAD_ARRAYS[case]
    with pytest.raises(ValueError, match=pattern) as info:
        call()
    if "unfitted" in case:
        assert isinstance(info.value, NotFittedError)


def test_a_training_that_fails_leaves_the_model_unfitted():
    X, y = blobs()
    clf = LinearClassifier(learning_rate=1e30, reg=1.0, batch_size=20, epochs=2)
    with pytest.raises(TrainingDiverged):
        clf.fit(X * 100, y)
    with pytest.raises(NotFittedError):
        clf.predict(X)  # though fit had checked X and set n_features_in_

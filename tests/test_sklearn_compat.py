"""LinearClassifier and KNearestNeighbor as scikit-learn estimators: scikit-learn's own
estimator checks, and its tools (clone, cross_val_score, GridSearchCV, Pipeline) on uint8
images, against the same computation done by hand."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from conftest import learnable_images
from sklearn.base import clone
from sklearn.model_selection import (
    GridSearchCV,
    StratifiedKFold,
    cross_val_predict,
    cross_val_score,
)
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from cifarlab.knn.estimator import KNearestNeighbor
from cifarlab.linear.classifier import LinearClassifier
from cifarlab.params import KNN, LINEAR, check_linear, check_values

# The checks train on standardised features (blobs of 2 to 10 features, a few hundred rows):
# this learning rate and reg suit them, as the defaults suit raw 0-255 pixels of 3,072.
CHECKED_LINEAR = dict(learning_rate=0.05, reg=1e-3, batch_size=20, epochs=20)
DEFAULT_LINEAR = LinearClassifier()

# The whole list of checks declared not applicable (the rest must pass).
EXPECTED_FAILURES = {
    id(DEFAULT_LINEAR): {
        "check_classifiers_train": "defaults tuned for raw 0-255 pixels (learning_rate=1e-7, "
        "reg=2.5e4) leave the weights near 0 on standardised blobs: accuracy 0.26 < 0.83",
    },
}

ESTIMATORS = [
    LinearClassifier(**CHECKED_LINEAR),
    LinearClassifier(loss="softmax", **CHECKED_LINEAR),  # with predict_proba
    DEFAULT_LINEAR,
    KNearestNeighbor(),
    KNearestNeighbor(k=3, distance="l1"),
]


@parametrize_with_checks(
    ESTIMATORS,
    expected_failed_checks=lambda estimator: EXPECTED_FAILURES.get(id(estimator), {}),
    xfail_strict=True,  # an expected failure that passes fails: the list cannot grow stale
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    ("cls", "declaration"), [(LinearClassifier, LINEAR), (KNearestNeighbor, KNN)]
)
def test_parameters_are_the_declared_ones_and_the_defaults_pass_their_declaration(cls, declaration):
    assert list(inspect.signature(cls).parameters) == list(declaration)
    assert list(cls().get_params()) == list(declaration)
    check_values(declaration, cls().get_params())
    if cls is LinearClassifier:
        check_linear(cls().get_params())


# --------------------------------------------------------------------------- tools on images


def images(n=90, n_classes=3):
    return learnable_images(0, n=n, d=12, n_classes=n_classes)


def by_hand(estimator, X, y, folds):
    """Accuracy of a fresh copy of ``estimator`` on each fold, fit on the others."""
    scores = []
    for train, test in folds.split(X, y):
        model = type(estimator)(**estimator.get_params()).fit(X[train], y[train])
        scores.append(np.mean(model.predict(X[test]) == y[test]))
    return np.array(scores)


@pytest.mark.parametrize(
    "estimator",
    [LinearClassifier(epochs=2), LinearClassifier(loss="softmax", **CHECKED_LINEAR),
     KNearestNeighbor(k=3, distance="l1"), KNearestNeighbor(k=5)],
    ids=["linear-defaults", "softmax", "knn-l1", "knn-l2"],
)  # fmt: skip
def test_cross_val_score_on_uint8_images_is_the_folds_by_hand(estimator):
    X, y = images()
    assert X.dtype == np.uint8
    scores = cross_val_score(estimator, X, y, cv=3)
    np.testing.assert_array_equal(scores, by_hand(estimator, X, y, StratifiedKFold(3)))


def test_clone_copies_the_parameters_not_the_fit():
    X, y = images()
    for estimator in (LinearClassifier(loss="softmax", reg=1.0, epochs=3), KNearestNeighbor(k=4)):
        fitted = estimator.fit(X, y)
        copy = clone(fitted)
        assert copy is not fitted and copy.get_params() == fitted.get_params()
        assert not [name for name in vars(copy) if name.endswith("_")]
        np.testing.assert_array_equal(copy.fit(X, y).predict(X), fitted.predict(X))


def test_grid_search_over_a_pipeline_picks_what_the_folds_by_hand_pick():
    X, y = images(n=120)
    # FunctionTransformer() passes the uint8 images through: the exact integer kernels run.
    pipe = make_pipeline(FunctionTransformer(), KNearestNeighbor())
    grid = {"knearestneighbor__k": [1, 3, 7], "knearestneighbor__distance": ["l1", "l2"]}
    search = GridSearchCV(pipe, grid, cv=StratifiedKFold(3)).fit(X, y)
    for params, mean in zip(
        search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True
    ):
        model = KNearestNeighbor(
            k=params["knearestneighbor__k"], distance=params["knearestneighbor__distance"]
        )
        assert mean == pytest.approx(by_hand(model, X, y, StratifiedKFold(3)).mean(), abs=1e-15)
    best = search.best_estimator_[-1]
    assert isinstance(best, KNearestNeighbor) and best.X_.dtype == np.uint8
    assert best.get_params()["k"] == search.best_params_["knearestneighbor__k"]


def test_grid_search_and_pipeline_with_the_linear_model():
    X, y = images(n=120)
    labels = np.array(["plane", "car", "bird"])[y]
    search = GridSearchCV(
        LinearClassifier(**CHECKED_LINEAR), {"loss": ["hinge", "softmax"], "reg": [1e-3, 1.0]}, cv=3
    ).fit(X, labels)
    assert set(search.best_estimator_.classes_) == {"plane", "car", "bird"}
    assert search.best_score_ == search.cv_results_["mean_test_score"].max()
    # StandardScaler then the classifier: the same as doing the two by hand.
    pipe = make_pipeline(StandardScaler(), LinearClassifier(**CHECKED_LINEAR)).fit(X, labels)
    scaled = StandardScaler().fit(X).transform(X)
    alone = LinearClassifier(**CHECKED_LINEAR).fit(scaled, labels)
    np.testing.assert_array_equal(pipe[-1].W_, alone.W_)
    np.testing.assert_array_equal(pipe.predict(X), alone.predict(scaled))


def test_cross_val_predict_gets_softmax_probabilities():
    X, y = images()
    proba = cross_val_predict(
        LinearClassifier(loss="softmax", **CHECKED_LINEAR), X, y, cv=3, method="predict_proba"
    )
    assert proba.shape == (90, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    with pytest.raises(AttributeError, match="predict_proba"):
        cross_val_predict(LinearClassifier(**CHECKED_LINEAR), X, y, cv=3, method="predict_proba")

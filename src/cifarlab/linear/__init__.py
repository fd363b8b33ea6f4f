"""Linear classifiers on raw CIFAR-10 pixels: multiclass SVM (hinge) and softmax, trained by SGD.

Modules, in the order the pipeline uses them:

- :mod:`cifarlab.linear.losses`: the losses and their gradients, the weight penalty.
- :mod:`cifarlab.linear.sgd`: ``SGDConfig`` (the checked hyperparameters), the minibatch SGD
  loop ``sgd`` and its ``SGDResult``.
- :mod:`cifarlab.linear.classifier`: the ``LinearClassifier`` estimator; ``train_linear``, the
  final model of stage ``svm_train``; ``save_linear_model`` / ``load_linear_model``.
- :mod:`cifarlab.linear.trials`: the candidates of stage ``svm_tune`` (grid, random, TPE).
- :mod:`cifarlab.linear.search`: the search of ``svm_tune`` on Optuna: the objective, the
  trial records and table, ``linear_search`` and ``join_search``.
- :mod:`cifarlab.linear.plots`: the figures of both stages.

This package imports nothing: import the modules themselves (``from cifarlab.linear.classifier
import LinearClassifier``), so that a DVC stage depends only on the modules it uses.
"""

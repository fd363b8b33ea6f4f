"""The one look at the test split, made visible: confusion matrix, per-class accuracy, images.

Model-agnostic (labels and raw images in): ``knn_evaluate`` and ``svm_evaluate`` share it, and
only ``cifarlab.evaluation.neighbors`` (k-NN's figure of nearest training images) imports a
model's code, ``cifarlab.knn``: each evaluation still depends on its own model's code alone.
"""

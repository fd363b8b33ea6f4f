"""k-nearest-neighbour classification of raw uint8 CIFAR-10 images, exact and fast.

``neighbors``
    ``kneighbors``: the exact k nearest references of every query (L1 or squared L2), in
    bounded memory; ``vote``: the majority label of each row of neighbours. The design of
    the fast exact paths is in its docstring.
``_kernels``
    The numba kernels behind ``neighbors`` (psadbw / VNNI tiles, GEMM filter, heaps).
``estimator``
    ``KNearestNeighbor``: fit / predict / score with the scikit-learn contract (``knn_evaluate``).
``cv``
    ``cross_validate``, ``select_best`` and ``cross_validation``, the ``knn_cv`` stage's
    choice of k and distance.
``plots``
    The cross-validation figure of ``knn_cv``.

Import the modules themselves: this file imports nothing, so that a stage depends only on the
modules it uses (``dvc.yaml`` lists them).
"""

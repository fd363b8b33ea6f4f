"""cifarlab: the classic data-driven image classifiers, from raw CIFAR-10 to one test number."""

__version__ = "0.1.0"

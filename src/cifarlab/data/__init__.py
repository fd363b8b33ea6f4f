"""The data layer: fetch the CIFAR-10 archive, parse it in memory, split it stratified."""

from cifarlab.data.archive import Cifar10Archive, read_cifar10_archive
from cifarlab.data.download import download, md5_of_file
from cifarlab.data.split import class_counts, stratified_folds, stratified_split

__all__ = [
    "Cifar10Archive",
    "class_counts",
    "download",
    "md5_of_file",
    "read_cifar10_archive",
    "stratified_folds",
    "stratified_split",
]

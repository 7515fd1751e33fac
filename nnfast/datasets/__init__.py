"""Loaders for standard data sets, returning NumPy arrays as Keras does."""

from nnfast.datasets import fashion_mnist
from nnfast.utils.data_utils import DatasetError, DownloadError

__all__ = ["DatasetError", "DownloadError", "fashion_mnist"]

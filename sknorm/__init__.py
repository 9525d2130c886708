"""sknorm: normalization transformers for scikit-learn that learn from streams."""

from ._batch import BatchNormalizer

__version__ = "0.1.0"

__all__ = ["BatchNormalizer", "__version__"]

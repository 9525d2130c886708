"""sknorm: normalization transformers for scikit-learn that learn from streams."""

from ._batch import BatchNormalizer
from ._layer import GroupNormalizer, LayerNormalizer, invert_group_normalization
from ._pipeline import StreamingPipeline, make_streaming_pipeline
from ._robust import RobustNormalizer

__version__ = "0.1.0"

__all__ = [
    "BatchNormalizer",
    "GroupNormalizer",
    "LayerNormalizer",
    "invert_group_normalization",
    "StreamingPipeline",
    "make_streaming_pipeline",
    "RobustNormalizer",
    "__version__",
]

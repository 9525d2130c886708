"""sknorm: normalization transformers for scikit-learn that learn from streams."""

from ._base import SparseCenteringError
from ._batch import BatchNormalizer
from ._compose import (
    StreamingColumnTransformer,
    StreamingFeatureUnion,
    make_streaming_column_transformer,
    make_streaming_union,
)
from ._config import config_context, get_config, set_config
from ._impute import StreamingImputer
from ._layer import GroupNormalizer, LayerNormalizer, invert_group_normalization
from ._pipeline import StreamingPipeline, make_streaming_pipeline
from ._quantile import QuantileNormalizer
from ._robust import RobustNormalizer
from ._rowstats import GroupStats

__version__ = "0.2.0.dev0"

__all__ = [
    "BatchNormalizer",
    "GroupNormalizer",
    "GroupStats",
    "LayerNormalizer",
    "QuantileNormalizer",
    "RobustNormalizer",
    "SparseCenteringError",
    "StreamingColumnTransformer",
    "StreamingFeatureUnion",
    "StreamingImputer",
    "StreamingPipeline",
    "config_context",
    "get_config",
    "invert_group_normalization",
    "make_streaming_column_transformer",
    "make_streaming_pipeline",
    "make_streaming_union",
    "set_config",
    "__version__",
]

# Public objects report the public module, as NumPy's do: pickles, skops files
# and reprs then name ``sknorm.BatchNormalizer``, which private modules can
# move under without breaking a saved model.
for _name in __all__[:-1]:
    globals()[_name].__module__ = __name__
del _name

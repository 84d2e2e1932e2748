"""mlcore: batch machine learning on Spark and Delta tables."""

from mlcore._version import __version__

__all__ = ["__version__"]

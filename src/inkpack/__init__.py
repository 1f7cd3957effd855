"""inkpack: fast, compact LSTM-based handwriting recognizers."""

__version__ = "0.1.0"

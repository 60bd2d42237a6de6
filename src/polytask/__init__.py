"""polytask: one shared Transformer encoder, many NLP tasks."""

__version__ = "0.1.0"

"""The LRA model: embedding, pre-norm encoder with any attention backend, pooling, classifier head."""

from lra.model.classifier import LRAClassifier
from lra.model.config import ModelConfig

__all__ = ["LRAClassifier", "ModelConfig"]

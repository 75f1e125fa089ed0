"""DLRM building blocks: pure Keras layers, no device or distribution code."""

from models.layers.dot_interaction import DotInteraction
from models.layers.embedding import EmbeddingTable
from models.layers.mlp import MLP

__all__ = ["MLP", "DotInteraction", "EmbeddingTable"]

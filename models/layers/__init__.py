"""Building blocks of the ranking models: pure Keras layers, no device or distribution code."""

from models.layers.cross_interaction import CrossInteraction
from models.layers.cross_network import CrossNetwork
from models.layers.dot_interaction import DotInteraction
from models.layers.embedding import EmbeddingTable
from models.layers.mlp import MLP

__all__ = ["MLP", "CrossInteraction", "CrossNetwork", "DotInteraction", "EmbeddingTable"]

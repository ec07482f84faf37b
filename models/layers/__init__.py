"""Shared Keras 3 layers for the text-classification models."""

from models.layers.additive_attention import AdditiveAttentionPooling
from models.layers.bidirectional_lstm import FusedBidirectionalLSTM
from models.layers.chunk_pooling import ChunkPooling
from models.layers.chunk_windows import ChunkWindows
from models.layers.hashed_ngram_embedding import HashedNgramEmbedding
from models.layers.label_attention import LabelAttentionPooling
from models.layers.masked_pooling import MaskedGlobalAveragePooling1D
from models.layers.masked_pooling import MaskedGlobalMaxPooling1D
from models.layers.positional_encoding import SinusoidalPositionEncoding
from models.layers.transformer_encoder import TransformerEncoderBlock

__all__ = [
    "AdditiveAttentionPooling",
    "ChunkPooling",
    "ChunkWindows",
    "FusedBidirectionalLSTM",
    "HashedNgramEmbedding",
    "LabelAttentionPooling",
    "MaskedGlobalAveragePooling1D",
    "MaskedGlobalMaxPooling1D",
    "SinusoidalPositionEncoding",
    "TransformerEncoderBlock",
]

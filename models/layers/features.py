"""The feature vectors an interaction layer receives: bottom-MLP output and embeddings.

Both interactions (dot products of DLRM, cross network of DCNv2) take
``bottom [b, D]`` and the F embeddings, either one ``[b, F, D]`` tensor or a
sequence of pieces in feature order, each ``[b, D]`` (one feature) or
``[b, k, D]`` (k features). ``bottom`` is None for a model without numerical
features (no bottom MLP): the embeddings are then the only feature vectors.
Pieces let the layer assemble its operand with one copy instead of a stack of
the lookups and a concatenation with ``bottom``.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf


def is_pieces_shape(shape) -> bool:
    """True when ``shape`` is the shape of a sequence of pieces, not of one tensor."""
    return isinstance(shape, list | tuple) and bool(shape) and isinstance(shape[0], list | tuple)


def num_features_of_shape(embeddings_shape) -> int:
    """F from the shape of ``embeddings`` (one ``[b, F, D]`` shape or piece shapes)."""
    if is_pieces_shape(embeddings_shape):
        return sum(1 if len(s) == 2 else s[1] for s in embeddings_shape)
    return embeddings_shape[1]


def feature_pieces(layer: str, bottom: tf.Tensor | None, embeddings) -> list[tf.Tensor]:
    """``embeddings`` as a list of ``[b, k, D]`` tensors, shapes checked.

    Args:
        layer: name of the calling layer, for the error messages.
        bottom: ``[b, D]``, or None (no bottom MLP).
        embeddings: ``[b, F, D]`` or pieces ``[b, D]`` / ``[b, k, D]``.
    """
    given = list(embeddings) if isinstance(embeddings, Sequence) else [embeddings]
    expected = "bottom [b, D] and embeddings [b, F, D] (or pieces [b, D] / [b, k, D])"
    bottom_shape = None if bottom is None else bottom.shape
    if (bottom is not None and len(bottom.shape) != 2) or not given:
        raise ValueError(
            f"{layer} expects {expected}, got bottom shape {bottom_shape} and "
            f"{len(given)} embedding tensors"
        )
    single = not isinstance(embeddings, Sequence)
    pieces = []
    for index, piece in enumerate(given):
        rank = len(piece.shape)
        if (single and rank != 3) or rank not in (2, 3):
            where = "" if single else f" piece {index}"
            raise ValueError(
                f"{layer} expects {expected}, got bottom shape {bottom_shape} and "
                f"embeddings{where} shape {piece.shape}"
            )
        dims = (piece.shape[-1] if bottom is None else bottom.shape[-1], piece.shape[-1])
        if None not in dims and dims[0] != dims[1]:
            raise ValueError(
                f"{layer}: bottom dim {dims[0]} differs from embedding dim {dims[1]} "
                "(the bottom MLP must end with the embedding dim)"
            )
        if rank == 2:
            piece = tf.expand_dims(piece, 1)
        if piece.shape[1] is None:
            raise ValueError(f"{layer} needs a static number of embeddings F")
        pieces.append(piece)
    return pieces


def stack_features(
    layer: str, bottom: tf.Tensor | None, embeddings, dtype: tf.DType | str | None = None
) -> tf.Tensor:
    """``[b, F + 1, D]`` in ``bottom``'s dtype: bottom first, then the F embeddings.

    Without ``bottom`` (None): ``[b, F, D]`` in ``dtype``, the embeddings alone.
    Float32 embeddings (tables are float32 under any policy) are cast to the
    compute dtype piece by piece, before the one concatenation.
    """
    dtype = bottom.dtype if bottom is not None else dtype
    pieces = [tf.cast(p, dtype) for p in feature_pieces(layer, bottom, embeddings)]
    if bottom is None:
        return pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis=1)
    return tf.concat([tf.expand_dims(bottom, 1), *pieces], axis=1)


def embedding_dim_of_shape(embeddings_shape) -> int:
    """D from the shape of ``embeddings`` (one ``[b, F, D]`` shape or piece shapes)."""
    if is_pieces_shape(embeddings_shape):
        return embeddings_shape[0][-1]
    return embeddings_shape[-1]

"""Data-parallel slicing of a global batch.

Every rank of a hybrid-parallel job reads the categorical ids of the whole
global batch (for the tables it owns) but only its own slice of the labels
and numerical features. The slice rule must be identical in the input
pipeline and in the all-to-all that scatters embedding vectors, so it lives
here as one pure function that both import.
"""

from __future__ import annotations


def batch_slice(rows: int, rank: int, world: int) -> tuple[int, int]:
    """Returns the contiguous slice of a batch that belongs to one rank.

    Heuristic: the first ``rows % world`` ranks get one row more than the
    others, so slice sizes differ by at most one and the slices of ranks
    0..world-1 tile ``[0, rows)`` in order, exactly once. The same rule holds
    for a short last batch (a rank may then get zero rows).

    Args:
        rows: Number of rows in the (global) batch, >= 0.
        rank: Rank asking for its slice, 0 <= rank < world.
        world: Number of data-parallel ranks, >= 1.

    Returns:
        ``(start, size)``: this rank's rows are ``[start, start + size)``.

    Raises:
        ValueError: If an argument is out of range.
    """
    if world < 1:
        raise ValueError(f"world size must be >= 1, got {world}")
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, {world}), got {rank}")
    if rows < 0:
        raise ValueError(f"rows must be >= 0, got {rows}")
    base, extra = divmod(rows, world)
    start = rank * base + min(rank, extra)
    size = base + (1 if rank < extra else 0)
    return start, size

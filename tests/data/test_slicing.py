import pytest

from models.data.slicing import batch_slice


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
@pytest.mark.parametrize("rows", [0, 1, 2, 5, 6, 7, 64, 65535])
def test_slices_tile_the_batch_once_with_sizes_within_one(rows, world):
    slices = [batch_slice(rows, rank, world) for rank in range(world)]
    position = 0
    for start, size in slices:
        assert start == position  # contiguous, in rank order
        assert size >= 0
        position += size
    assert position == rows
    sizes = [size for _, size in slices]
    assert max(sizes) - min(sizes) <= 1


def test_larger_slices_come_first():
    assert [batch_slice(7, r, 3) for r in range(3)] == [(0, 3), (3, 2), (5, 2)]
    assert [batch_slice(2, r, 3) for r in range(3)] == [(0, 1), (1, 1), (2, 0)]


@pytest.mark.parametrize(
    ("rows", "rank", "world", "message"),
    [
        (4, 0, 0, "world size must be >= 1, got 0"),
        (4, 2, 2, r"rank must be in \[0, 2\), got 2"),
        (4, -1, 2, r"rank must be in \[0, 2\), got -1"),
        (-1, 0, 1, "rows must be >= 0, got -1"),
    ],
)
def test_invalid_arguments_are_named(rows, rank, world, message):
    with pytest.raises(ValueError, match=message):
        batch_slice(rows, rank, world)

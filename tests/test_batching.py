import torch

from inkpack.batching import bucket_batches, pad_collate, random_batches


def test_pad_collate_carries_true_sizes_and_zero_pads():
    a, b = torch.ones(1, 4, 5), torch.ones(1, 3, 9)
    batch = pad_collate([a, b], [[1, 2], [3]], ["ab", "c"], ["x", "y"])
    assert batch.images.shape == (2, 1, 4, 9)
    assert batch.heights.tolist() == [4, 3] and batch.widths.tolist() == [5, 9]
    assert batch.images[0, :, :, 5:].abs().sum() == 0 and batch.images[1, :, 3:].abs().sum() == 0
    assert batch.targets.tolist() == [1, 2, 3] and batch.target_lengths.tolist() == [2, 1]
    assert batch.real_pixels == 4 * 5 + 3 * 9 and batch.canvas_pixels == 2 * 4 * 9


def test_bucket_batches_cover_every_index_once_and_group_widths():
    widths = [(i * 37) % 101 + 1 for i in range(500)]
    batches = bucket_batches(widths, 16, seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(500))
    # padding waste is far below random batching
    def waste(bs):
        return sum(len(b) * max(widths[i] for i in b) - sum(widths[i] for i in b) for b in bs)
    assert waste(batches) < 0.2 * waste(random_batches(500, 16, seed=3))
    assert bucket_batches(widths, 16, seed=3) == batches  # deterministic
    assert bucket_batches(widths, 16, seed=4) != batches


def _padded_area(bs, heights, widths):
    return sum(len(b) * max(heights[i] for i in b) * max(widths[i] for i in b) for b in bs)


def test_bucket_batches_with_equal_heights_are_the_width_only_batches():
    widths = [(i * 37) % 101 + 1 for i in range(500)]
    assert bucket_batches(widths, 16, seed=5, heights=[48] * 500) == bucket_batches(widths, 16, seed=5)


def test_bucket_batches_with_heights_pad_less_when_heights_vary():
    # two populations of unrelated height: width-only buckets mix tall and short examples
    rng = torch.Generator().manual_seed(0)
    widths = torch.randint(50, 400, (800,), generator=rng).tolist()
    heights = [20 if i % 2 else 120 for i in range(800)]
    banded = bucket_batches(widths, 16, seed=1, heights=heights)
    assert sorted(i for b in banded for i in b) == list(range(800))
    assert all(len(b) == 16 for b in banded)
    width_only = bucket_batches(widths, 16, seed=1)
    # a batch within one band pads to its own height: about half of the tall-padded area
    assert _padded_area(banded, heights, widths) < 0.7 * _padded_area(width_only, heights, widths)
    assert sum(len({heights[i] for i in b}) == 1 for b in banded) >= 0.9 * len(banded)

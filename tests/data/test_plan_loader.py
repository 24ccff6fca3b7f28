"""Batch plans: a pure function of (seed, epoch, rank), the four-pass epoch, sharding."""

from __future__ import annotations

import numpy as np

from maxvit.data.plan_loader import epoch_plan


def test_plan_is_a_pure_function_and_covers_each_pass():
    kw = dict(batch_size=8, seed=3, epoch=2, kinds=(0, 1, 2, 3))
    a = epoch_plan(100, **kw)
    b = epoch_plan(100, **kw)
    assert len(a) == 4 * (100 // 8)
    assert all(np.array_equal(i, j) and k == m for (i, k), (j, m) in zip(a, b, strict=True))
    for kind in range(4):
        idx = np.concatenate([i for i, k in a if k == kind])
        assert len(idx) == 96 and len(set(idx.tolist())) == 96  # a permutation, last part dropped
    kinds = [k for _, k in a]
    assert kinds != sorted(kinds)  # batches of the four passes are shuffled together
    other = epoch_plan(100, **{**kw, "epoch": 3})
    assert not np.array_equal(a[0][0], other[0][0])


def test_plan_shards_ranks_without_overlap():
    plans = [
        epoch_plan(103, batch_size=4, seed=0, epoch=0, rank=r, world_size=3, drop_last=False)
        for r in range(3)
    ]
    assert len({len(p) for p in plans}) == 1  # same number of batches on every rank
    seen = np.concatenate([i for p in plans for i, _ in p])
    assert set(seen.tolist()) == set(range(103))  # padded by wrapping: all seen
    assert len(seen) == 105
    dropped = [
        np.concatenate(
            [i for i, _ in epoch_plan(103, batch_size=4, seed=0, epoch=0, rank=r, world_size=3)]
        )
        for r in range(3)
    ]
    assert sum(len(d) for d in dropped) == 96
    assert len(set(np.concatenate(dropped).tolist())) == 96


def test_random_kind_per_batch_without_passes():
    plan = epoch_plan(800, batch_size=8, seed=0, epoch=0, random_kind=True)
    assert len(plan) == 100
    assert set(k for _, k in plan) == {0, 1, 2, 3}

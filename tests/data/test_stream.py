"""Shard streaming: exact resume, every sample once per epoch across ranks, bad samples."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

from maxvit.data import AugmentConfig, build_eval_loader, build_train_loader
from maxvit.data.synthetic import make_synthetic_tree
from maxvit.data.write_shards import write_shards
from maxvit.errors import UserError

AUG = AugmentConfig(pipeline="timm")


def unique_label_shards(tmp: Path, samples: int, shard_size: int) -> Path:
    """Shards whose train samples each have their own class (label = identity)."""
    tree = make_synthetic_tree(
        tmp / "tree", num_classes=samples, train_per_class=1, val_per_class=1
    )
    return write_shards(tree, tmp / "shards", shard_size=shard_size, quiet=True)


@pytest.fixture(scope="module")
def even(tmp_path_factory) -> Path:
    """48 samples in 8 shards of 6."""
    return unique_label_shards(tmp_path_factory.mktemp("even"), 48, 6)


def loader(shards, rank=0, world=1, workers=0, batch=4, seed=0, aug=AUG, bad_samples="1%"):
    return build_train_loader(
        shards, aug, batch_size=batch, img_size=32, seed=seed, num_workers=workers,
        rank=rank, world_size=world, bad_samples=bad_samples,
    )  # fmt: skip


def collect(batches) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone(), k.clone()) for x, y, k in batches]


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        all(torch.equal(u, v) for u, v in zip(p, q, strict=True)) for p, q in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_at_any_batch_equals_the_tail_of_the_epoch(even, workers):
    # batch 5 does not divide the chunks (one batch per worker chunk): resume cuts mid-chunk
    ld = loader(even, workers=workers, batch=5)
    ld.set_epoch(1)
    full = collect(ld)
    assert len(full) == len(ld) == 48 // 5
    assert [x.shape for x, _, _ in full] == [(5, 3, 32, 32)] * 9
    for start in (1, 4, 7):
        fresh = loader(even, workers=workers, batch=5)  # as after a restart
        fresh.set_epoch(1)
        assert same(collect(fresh.iter_from(start)), full[start:]), start
    ld.set_epoch(2)
    assert not same(collect(ld), full)


@pytest.mark.slow
def test_resume_mid_chunk_after_a_worker_ran_dry(tmp_path):
    """Shards of 20, 20, 20 and 8 over 2 workers: one worker's stream ends early with a partial
    chunk, so later batch starts fall inside a chunk; every start still resumes exactly."""
    shards = unique_label_shards(tmp_path, 68, 20)
    for epoch in range(2):
        ld = loader(shards, workers=2, batch=6)
        ld.set_epoch(epoch)
        full = collect(ld)
        assert len(full) == 11
        for start in (3, 9, 10):
            fresh = loader(shards, workers=2, batch=6)
            fresh.set_epoch(epoch)
            assert same(collect(fresh.iter_from(start)), full[start:]), (epoch, start)


def test_every_sample_once_per_epoch_across_ranks(even):
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            ld = loader(even, rank=rank, world=2, workers=2, batch=4)
            ld.set_epoch(epoch)
            assert len(ld) == 6
            seen += [y for _, labels, _ in ld for y in labels.tolist()]
        assert sorted(seen) == list(range(48))


@pytest.mark.slow
def test_uneven_shards_keep_ranks_in_step_and_never_repeat(tmp_path):
    shards = unique_label_shards(tmp_path, 47, 5)  # 10 shards: 9 x 5 + 2
    for epoch in range(3):
        per_rank = []
        for rank in (0, 1):
            ld = loader(shards, rank=rank, world=2, workers=2, batch=4)
            ld.set_epoch(epoch)
            per_rank.append([y for _, labels, _ in ld for y in labels.tolist()])
        assert len(per_rank[0]) == len(per_rank[1])  # the same number of steps
        both = per_rank[0] + per_rank[1]
        assert len(set(both)) == len(both)  # no sample twice in an epoch
        assert len(both) >= 47 - 5 - 2 * 3  # at most a shard's imbalance and a batch per rank left


def test_eval_reads_every_sample_once_across_ranks_and_workers(even):
    labels = []
    for rank in (0, 1):
        val = build_eval_loader(
            even, "val", batch_size=5, num_workers=2, rank=rank, world_size=2, img_size=32
        )
        assert val.device_crop is None  # full-size images get their geometry in the loader
        for images, y in val:
            assert images.shape[1:] == (3, 32, 32) and images.dtype == torch.uint8
            labels += y.tolist()
    assert sorted(labels) == list(range(48))


def test_shards_without_counts_are_counted_once_and_train(even, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in even.iterdir():
        if path.name != "manifest.json":
            (bare / path.name).write_bytes(path.read_bytes())
    ld = loader(bare)
    assert "counting the samples of 16 shard(s) in one pass" in capsys.readouterr().err
    assert len(ld) == 48 // 4 and sorted(y for _, b, _ in ld for y in b.tolist()) == list(range(48))
    val = build_eval_loader(bare, "val", batch_size=16, num_workers=0, img_size=32)
    assert sum(len(y) for _, y in val) == 48
    assert "counting" not in capsys.readouterr().err  # cached
    with pytest.raises(UserError, match="8 train shards cannot feed 9 ranks"):
        loader(even, world=9)


def corrupt_one_sample(shards: Path) -> str:
    """Truncate the image of the second sample of train-000000.tar; returns its name."""
    path = shards / "train-000000.tar"
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    key = sorted({m.name.split(".")[0] for m, _ in members})[1]
    with tarfile.open(path, "w") as tar:
        for member, data in members:
            if member.name.startswith(key) and not member.name.endswith(".cls"):
                data = data[:40]
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return f"train-000000.tar:{key}"


def test_a_bad_sample_is_skipped_named_and_batches_stay_full(tmp_path, capsys):
    shards = unique_label_shards(tmp_path, 48, 6)
    name = corrupt_one_sample(shards)
    ld = loader(shards, batch=4)  # 1% of 48 accepts one file
    batches = collect(ld)
    assert [len(y) for _, y, _ in batches] == [4] * 12  # the gap filled from the stream
    seen = [y for _, labels, _ in batches for y in labels.tolist()]
    assert len(set(seen)) == 47
    err = capsys.readouterr().err
    assert f"skipped {name}: cannot decode" in err
    assert ld.bad_report() == "skipped 1 undecodable train sample(s) this epoch (1 in all)"
    with pytest.raises(
        UserError, match=r"^1 of 48 train samples could not be decoded, more than bad_samples=0"
    ):
        collect(loader(shards, batch=4, bad_samples=0))


def test_folder_loader_skips_undecodable_files(tmp_path, capsys):
    tree = make_synthetic_tree(tmp_path / "tree", corrupt=True)
    ld = loader(tree, batch=6, aug=AugmentConfig(pipeline="none", four_pass=False))
    sizes = [len(y) for _, y, _ in ld]
    assert sorted(sizes) == [5, 6, 6, 6]  # one batch short by the bad file
    assert "skipped " + str(tree / "train" / "class_01" / "img_000.jpg") in capsys.readouterr().err


def test_the_shuffle_buffer_holds_about_256_mib_of_samples():
    from maxvit.data.shards import ShardSplit
    from maxvit.data.stream import shuffle_size

    def size(sample_bytes):
        return shuffle_size(ShardSplit(("a.tar",), (1,), sample_bytes=sample_bytes))

    assert size(None) == 2000  # unknown (URL shards): 2,000 samples
    assert size(110_000) == 2440  # ImageNet JPEGs
    assert size(2_600) == 103_244  # Tiny ImageNet JPEGs: all 100,000 of its train samples
    assert size(10**9) == 2000

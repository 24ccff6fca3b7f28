"""Loaders of map-style sources: determinism, exact mid-epoch resume, sharding, folder data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from maxvit.data import (
    AugmentConfig,
    BatchAugment,
    ImageFolderDataset,
    TinyImageNet,
    build_eval_loader,
    build_train_loader,
    class_names,
)
from maxvit.data.prepare import prepare
from maxvit.data.synthetic import make_synthetic_archive, make_synthetic_tree
from maxvit.errors import UserError


@pytest.fixture(scope="module")
def prepared(synthetic_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(synthetic_archive, tmp_path_factory.mktemp("l") / "prepared", quiet=True)


def collect(batches) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone(), k.clone()) for x, y, k in batches]


def same(a, b) -> bool:
    return len(a) == len(b) and all(
        all(torch.equal(u, v) for u, v in zip(p, q, strict=True)) for p, q in zip(a, b, strict=True)
    )


@pytest.mark.parametrize("workers", [0, 2])
def test_start_at_batch_k_equals_the_tail_of_a_full_epoch(prepared, workers):
    aug = AugmentConfig()
    loader = build_train_loader(
        prepared, aug, batch_size=20, img_size=64, seed=7, num_workers=workers
    )
    assert len(loader) == 4 * (400 // 20)
    loader.set_epoch(1)
    full = collect(loader)
    assert len(full) == len(loader)
    tail = collect(loader.iter_from(57))
    assert same(tail, full[57:])
    # a fresh loader (as after SIGKILL and restart) gives the same batches
    again = build_train_loader(prepared, aug, batch_size=20, img_size=64, seed=7, num_workers=0)
    again.set_epoch(1)
    assert same(collect(again.iter_from(75)), full[75:])
    # batches are homogeneous in kind, the four kinds equally often
    assert [k.unique().numel() for _, _, k in full] == [1] * len(full)
    assert torch.stack([k[0] for _, _, k in full]).bincount().tolist() == [20] * 4
    x, y, k = full[0]
    assert x.shape == (20, 3, 56, 56) and x.dtype == torch.uint8 and y.dtype == torch.int64
    loader.set_epoch(2)
    assert not torch.equal(collect(loader.iter_from(0))[0][1], full[0][1])


def test_worker_count_does_not_change_batches(prepared):
    aug = AugmentConfig(pipeline="timm")
    loaders = [
        build_train_loader(prepared, aug, batch_size=32, img_size=64, seed=1, num_workers=w)
        for w in (0, 2)
    ]
    a, b = (collect(ld.iter_from(3)) for ld in loaders)
    assert same(a, b)


def test_loader_does_not_touch_global_rng(prepared):
    loader = build_train_loader(
        prepared, AugmentConfig(pipeline="timm"), batch_size=16, img_size=64, seed=0, num_workers=0
    )
    torch.manual_seed(123)
    state = torch.get_rng_state()
    next(iter(loader))
    assert torch.equal(torch.get_rng_state(), state)


def test_labels_follow_images(prepared):
    dataset = TinyImageNet(prepared, "train")
    loader = build_train_loader(
        prepared, AugmentConfig(pipeline="none"), batch_size=20, img_size=64, seed=0, num_workers=0
    )
    images, labels, _ = next(iter(loader))
    rows = {bytes(dataset[i][0].numpy()): i for i in range(len(dataset))}
    for img, label in zip(images, labels, strict=True):
        assert int(dataset.labels[rows[bytes(img.numpy())]]) == int(label)


def test_resize_first_keeps_the_recorded_order(prepared):
    loader = build_train_loader(
        prepared, AugmentConfig(resize_first=True), batch_size=8, img_size=96, seed=0, num_workers=0
    )
    x, y, kind = next(iter(loader))
    assert x.shape == (8, 3, 96, 96)
    out, targets = BatchAugment(AugmentConfig(), 200, 96)(
        x, y, kind, torch.Generator().manual_seed(0)
    )
    assert out.shape == (8, 3, 96, 96) and targets.shape == (8, 200)


def test_eval_loader_shards_each_sample_once(prepared):
    total = []
    for rank in range(3):
        loader = build_eval_loader(
            prepared, "val", batch_size=32, num_workers=0, rank=rank, world_size=3
        )
        for images, labels in loader:
            assert images.dtype == torch.uint8 and images.shape[1:] == (3, 64, 64)
            total += labels.tolist()
    assert sorted(total) == sorted(TinyImageNet(prepared, "val").labels.tolist())
    assert len(total) == 200
    test = build_eval_loader(prepared, "test", batch_size=3, num_workers=0)
    labels = torch.cat([y for _, y in test])
    assert labels.tolist() == [-1] * 4


def mirror(image: torch.Tensor) -> torch.Tensor:
    return image.flip(-1)


def test_tiny_imagenet_dataset(prepared):
    ds = TinyImageNet(prepared, "val", transform=mirror)
    image, label = ds[5]
    assert torch.equal(image.flip(-1), TinyImageNet(prepared, "val")[5][0])
    assert image.shape == (3, 64, 64) and image.dtype == torch.uint8 and 0 <= label < 200
    assert len(ds.classes) == 200 and ds.class_names == class_names(prepared)
    import pickle

    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[5][0], image)
    assert len(pickle.dumps(ds)) < 100_000  # the memory map is not pickled
    with pytest.raises(UserError, match="unknown split"):
        TinyImageNet(prepared, "holdout")


def test_errors_point_at_the_commands(tmp_path):
    with pytest.raises(UserError, match="maxvit data download"):
        build_train_loader(
            tmp_path / "nope", AugmentConfig(), batch_size=4, img_size=64, seed=0, num_workers=0
        )


def _folder_tree(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for c, name in enumerate(["cat", "dog", "eel"]):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                size = (40 + 10 * i, 30 + 7 * c)
                array = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
                img = Image.fromarray(array)
                if i == 1:
                    img = img.convert("L")
                img.save(folder / f"{i}.{'png' if i == 2 else 'jpg'}")
    return root


def test_generic_folder_dataset_shares_the_transforms(tmp_path):
    root = _folder_tree(tmp_path / "imagenet")
    ds = ImageFolderDataset(root / "train")
    assert ds.classes == ["cat", "dog", "eel"] and len(ds) == 18
    image, label = ds[1]
    assert image.shape == (3, 30, 50) and image.dtype == torch.uint8 and label == 0
    aug = AugmentConfig()
    loader = build_train_loader(root, aug, batch_size=6, img_size=48, seed=0, num_workers=0)
    batches = collect(loader)
    assert len(batches) == 4 * 3
    x, y, kind = batches[0]
    assert x.shape == (6, 3, 48, 48)
    out, targets = BatchAugment(aug, loader.num_classes, 48)(x, y, kind, torch.Generator())
    assert out.shape == (6, 3, 48, 48) and targets.shape == (6, 3)
    assert same(collect(loader.iter_from(5)), batches[5:])
    val = build_eval_loader(root, "val", batch_size=4, num_workers=0, img_size=48)
    images, labels = zip(*val, strict=True)
    assert torch.cat(labels).tolist() == [0, 0, 1, 1, 2, 2]
    assert images[0].shape == (4, 3, 48, 48)


def test_bad_samples_are_counted_against_the_split_and_the_policy(tmp_path, capsys):
    tree = make_synthetic_tree(tmp_path / "tree", num_classes=3, train_per_class=7, corrupt=True)
    bad_file = tree / "train" / "class_01" / "img_000.jpg"
    aug = AugmentConfig()  # four passes: 64 samples read from 21 files
    loader = build_train_loader(tree, aug, batch_size=16, img_size=32, seed=0, num_workers=0)
    assert sum(len(y) for _, y, _ in loader) < 64  # one bad file of 21: accepted by default
    assert capsys.readouterr().err.count(f"skipped {bad_file}: cannot decode") == 1
    strict = build_train_loader(
        tree, aug, batch_size=16, img_size=32, seed=0, num_workers=0, bad_samples=0
    )
    with pytest.raises(UserError, match=r"^1 of 21 train samples could not be decoded, more "):
        list(strict)  # before: "1 of 64 train samples", and stopped by default
    val = build_eval_loader(tree, "train", batch_size=8, num_workers=0, img_size=32, bad_samples=0)
    with pytest.raises(UserError, match=r"^1 of 21 train samples .* bad_samples=0 allows \(0\)"):
        list(val)
    with pytest.raises(UserError, match="^bad_samples must be a count of files"):
        build_eval_loader(tree, "val", batch_size=8, num_workers=0, bad_samples="1.5")


def test_a_corrupt_jpeg_in_an_archive_is_named_and_held_to_the_policy(tmp_path, capsys):
    archive = make_synthetic_archive(tmp_path / "tiny-imagenet-200.zip", corrupt=True)
    aug = AugmentConfig(pipeline="none", four_pass=False)
    loader = build_train_loader(archive, aug, batch_size=50, img_size=64, seed=0, num_workers=0)
    assert sum(len(y) for _, y, _ in loader) == 350  # 399 decodable: 7 full batches
    err = capsys.readouterr().err  # first use: prepared, the bad file left out and named
    assert "skipped train/n10000001/images/n10000001_0.JPEG: cannot decode" in err
    assert "--skip-bad" not in err
    strict = build_train_loader(
        archive, aug, batch_size=50, img_size=64, seed=0, num_workers=0, bad_samples=0
    )
    with pytest.raises(UserError) as info:
        list(strict)
    assert str(info.value).startswith(
        "1 of 400 train samples could not be decoded, more than bad_samples=0 allows (0); "
    )
    assert "--set bad_samples=N" in str(info.value)


@pytest.mark.slow
def test_mini_archive_with_two_workers(prepared_mini):
    aug = AugmentConfig()
    loader = build_train_loader(
        prepared_mini, aug, batch_size=64, img_size=64, seed=0, num_workers=2
    )
    assert len(loader) == 4 * (20000 // 64)
    batch_aug = BatchAugment(aug, loader.num_classes, 64)
    g = torch.Generator().manual_seed(0)
    seen = 0
    for x, y, kind in loader.iter_from(len(loader) - 6):
        out, targets = batch_aug(x, y, kind, g)
        assert out.shape == (64, 3, 64, 64) and torch.isfinite(out).all()
        assert y.min() >= 0 and y.max() < 200
        seen += 1
    assert seen == 6
    val = build_eval_loader(prepared_mini, "val", batch_size=250, num_workers=2)
    labels = torch.cat([y for _, y in val])
    assert np.bincount(labels.numpy()).tolist() == [5] * 200

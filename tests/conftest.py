"""Shared fixtures. Paths and markers live in tests/helpers.py."""

import os
from pathlib import Path

import pytest

from tests.helpers import IMAGENET_SAMPLE, MINI_ARCHIVE


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`make test` runs TEST_JOBS processes), each process gets its share
    of the cores as torch threads: two processes of two threads each on two cores would make
    every op wait for a core."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // workers))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked slow (tens of seconds each) run first: pytest-xdist hands tests out in
    this order, so the short ones fill the gaps at the end instead of one worker finishing a
    long test alone while the other waits."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def synthetic_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid synthetic `tiny-imagenet-200.zip`: 200 classes x 2 train, 1 val each, 4 test
    (grayscale, CMYK and one 72x56 image among them). See maxvit.data.synthetic."""
    from maxvit.data.synthetic import make_synthetic_archive

    folder = tmp_path_factory.mktemp("synthetic")
    return make_synthetic_archive(folder / "tiny-imagenet-200.zip")


@pytest.fixture(scope="session")
def mini_archive() -> Path:
    """The real mini archive (../shared/data); the test is skipped where it is absent."""
    if not MINI_ARCHIVE.exists():
        pytest.skip("mini archive not present")
    return MINI_ARCHIVE


@pytest.fixture(scope="session")
def prepared_mini(mini_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mini archive prepared once per session (20,000 train, 1,000 val, 100 test)."""
    from maxvit.data.prepare import prepare

    return prepare(mini_archive, tmp_path_factory.mktemp("mini") / "prepared", quiet=True)


@pytest.fixture(scope="session")
def synthetic_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A class-folder tree: 4 classes x 6 train and 2 val images of odd sizes in every format
    and mode the loaders handle (JPEG RGB/L/CMYK, PNG RGBA/P/16-bit/LA, WebP)."""
    from maxvit.data.synthetic import make_synthetic_tree

    return make_synthetic_tree(tmp_path_factory.mktemp("tree") / "root")


@pytest.fixture(scope="session")
def sample_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 200 real full-size ImageNet JPEGs (../shared/data) as a class-folder tree of 10
    classes x 16 train and 4 val images; skipped where the sample is absent."""
    if not IMAGENET_SAMPLE.exists():
        pytest.skip("ImageNet sample not present")
    import zipfile

    root = tmp_path_factory.mktemp("sample") / "root"
    with zipfile.ZipFile(IMAGENET_SAMPLE) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith(".jpeg"))
        for i, name in enumerate(names):
            split = "val" if i % 20 >= 16 else "train"
            folder = root / split / f"c{i // 20:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / name.rsplit("/", 1)[-1]).write_bytes(zf.read(name))
    return root

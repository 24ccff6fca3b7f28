"""Shared fixtures. Paths and markers live in tests/helpers.py."""

from pathlib import Path

import pytest

from tests.helpers import MINI_ARCHIVE


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

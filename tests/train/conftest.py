"""Fixtures of the training tests (helpers live in tests/train/utils.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Train with one thread: these tiny models gain nothing from two, and a second thread
    slows every small op badly when other processes share the cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared synthetic Tiny ImageNet (200 classes, 2 train and 1 val image per class)."""
    from maxvit.data.prepare import prepare
    from maxvit.data.synthetic import make_synthetic_archive

    folder = tmp_path_factory.mktemp("synth")
    archive = make_synthetic_archive(folder / "tiny-imagenet-200.zip", train_per_class=2)
    return prepare(archive, folder / "prepared", workers=1, quiet=True)

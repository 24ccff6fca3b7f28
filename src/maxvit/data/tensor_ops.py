"""Small torch helpers shared by the worker-side crops and the device-side batch augmentation:
one thread for per-sample work, torchvision's global-generator draws made reproducible, and
fast row gathers and scatters."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside (loader workers already do; this covers num_workers=0).

    The per-sample ops work on many small images: splitting each across threads costs more
    than it gains (measured 20x slower for a batch of 16 at 64x64 on a busy 2-vCPU machine).
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@contextlib.contextmanager
def seeded_torch(seed: int) -> Iterator[None]:
    """Run torchvision code that draws from torch's global CPU generator deterministically,
    leaving the caller's random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def take_rows(images: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """images[rows] (index_select is much faster than advanced indexing on large images)."""
    return images.index_select(0, torch.from_numpy(rows).to(images.device))


def put_rows(images: torch.Tensor, rows: np.ndarray, values: torch.Tensor) -> None:
    """images[rows] = values, in place (row copies on the CPU: far faster than index_put)."""
    if images.device.type == "cpu":
        for j, i in enumerate(rows.tolist()):
            images[i].copy_(values[j])
    else:
        images.index_copy_(0, torch.from_numpy(rows).to(images.device), values)

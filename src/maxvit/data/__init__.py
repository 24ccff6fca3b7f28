"""Data sets to augmented batches: Tiny ImageNet, class folders, WebDataset shards (docs/data.md).

Public API (imported lazily, so `maxvit --help` and the decode workers stay light)::

    from maxvit.data import (open_data, DataSource, AugmentConfig, build_train_loader,
                             build_eval_loader, BatchAugment, EvalTransform, TinyImageNet,
                             ImageFolderDataset, ensure_prepared, class_names)

``open_data(path_or_pattern)`` detects the layout (:mod:`maxvit.data.sources`) and returns
its `DataSource` (one class per layout, :mod:`maxvit.data.source`). The steps behind
`maxvit data ...` live in their modules: ``download``, ``prepare`` (Tiny ImageNet),
``subset`` (a smaller Tiny ImageNet archive), ``write_shards``, ``info``; ``verify`` is a
method of each source.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DataSource": "maxvit.data.source",
    "open_data": "maxvit.data.sources",
    "AugmentConfig": "maxvit.data.augment_config",
    "BatchAugment": "maxvit.data.batch_augment",
    "EvalTransform": "maxvit.data.batch_augment",
    "TrainTransform": "maxvit.data.crop",
    "TinyImageNet": "maxvit.data.datasets",
    "ImageFolderDataset": "maxvit.data.datasets",
    "class_names": "maxvit.data.datasets",
    "build_train_loader": "maxvit.data.loader",
    "build_eval_loader": "maxvit.data.loader",
    "TrainLoader": "maxvit.data.plan_loader",
    "ensure_prepared": "maxvit.data.prepare",
    "make_synthetic_archive": "maxvit.data.synthetic",
}

__all__ = [
    "AugmentConfig",
    "BatchAugment",
    "DataSource",
    "EvalTransform",
    "ImageFolderDataset",
    "TinyImageNet",
    "TrainLoader",
    "TrainTransform",
    "build_eval_loader",
    "build_train_loader",
    "class_names",
    "ensure_prepared",
    "make_synthetic_archive",
    "open_data",
]

if TYPE_CHECKING:
    from maxvit.data.augment_config import AugmentConfig
    from maxvit.data.batch_augment import BatchAugment, EvalTransform
    from maxvit.data.crop import TrainTransform
    from maxvit.data.datasets import ImageFolderDataset, TinyImageNet, class_names
    from maxvit.data.loader import build_eval_loader, build_train_loader
    from maxvit.data.plan_loader import TrainLoader
    from maxvit.data.prepare import ensure_prepared
    from maxvit.data.source import DataSource
    from maxvit.data.sources import open_data
    from maxvit.data.synthetic import make_synthetic_archive


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'maxvit.data' has no attribute {name!r}")

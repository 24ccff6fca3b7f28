"""Tiny ImageNet from the official archive to augmented batches (see docs/data.md).

Public API (imported lazily, so `maxvit --help` and the decode workers stay light)::

    from maxvit.data import (AugmentConfig, ensure_prepared, TinyImageNet, ImageFolderDataset,
                             class_names, build_train_loader, build_eval_loader, BatchAugment,
                             EvalTransform)

The steps behind `maxvit data ...` live in their modules: ``maxvit.data.download.download``,
``maxvit.data.prepare.prepare`` / ``verify``, ``maxvit.data.info``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "AugmentConfig": "maxvit.data.transforms",
    "BatchAugment": "maxvit.data.transforms",
    "EvalTransform": "maxvit.data.transforms",
    "TrainTransform": "maxvit.data.transforms",
    "TinyImageNet": "maxvit.data.datasets",
    "ImageFolderDataset": "maxvit.data.datasets",
    "class_names": "maxvit.data.datasets",
    "build_train_loader": "maxvit.data.loader",
    "build_eval_loader": "maxvit.data.loader",
    "TrainLoader": "maxvit.data.loader",
    "ensure_prepared": "maxvit.data.prepare",
    "make_synthetic_archive": "maxvit.data.synthetic",
}

__all__ = [
    "AugmentConfig",
    "BatchAugment",
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
]

if TYPE_CHECKING:
    from maxvit.data.datasets import ImageFolderDataset, TinyImageNet, class_names
    from maxvit.data.loader import TrainLoader, build_eval_loader, build_train_loader
    from maxvit.data.prepare import ensure_prepared
    from maxvit.data.synthetic import make_synthetic_archive
    from maxvit.data.transforms import AugmentConfig, BatchAugment, EvalTransform, TrainTransform


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'maxvit.data' has no attribute {name!r}")

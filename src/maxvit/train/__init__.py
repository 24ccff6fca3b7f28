"""Training and evaluation (see docs/training.md).

Public API (imported lazily, so that `maxvit --help` stays fast)::

    from maxvit.train import (TrainConfig, load_preset, apply_overrides, list_presets,
                              train, evaluate, evaluate_checkpoint)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "TrainConfig": "maxvit.train.config",
    "load_preset": "maxvit.train.config",
    "apply_overrides": "maxvit.train.config",
    "list_presets": "maxvit.train.presets",
    "load_config": "maxvit.train.config",
    "train": "maxvit.train.trainer",
    "evaluate": "maxvit.train.evaluate",
    "evaluate_checkpoint": "maxvit.train.evaluate",
}

__all__ = [
    "TrainConfig",
    "apply_overrides",
    "evaluate",
    "evaluate_checkpoint",
    "list_presets",
    "load_config",
    "load_preset",
    "train",
]

if TYPE_CHECKING:
    from maxvit.train.config import TrainConfig, apply_overrides, load_config, load_preset
    from maxvit.train.evaluate import evaluate, evaluate_checkpoint
    from maxvit.train.presets import list_presets
    from maxvit.train.trainer import train


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'maxvit.train' has no attribute {name!r}")

"""Models: MaxViT (seed and paper variants) and timm-built baselines, behind one registry.

Names are imported lazily so that `maxvit --help` does not pay for importing torch and timm.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MaxVit": "maxvit.models.model",
    "MaxVitConfig": "maxvit.models.config",
    "VARIANTS": "maxvit.models.variants",
    "create_model": "maxvit.models.factory",
    "default_img_size": "maxvit.models.variants",
    "fuse_for_inference": "maxvit.models.fuse",
    "list_models": "maxvit.models.variants",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'maxvit.models' has no attribute {name!r}")

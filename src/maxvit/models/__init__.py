"""Models: MaxViT (seed and paper variants) and timm-built baselines, behind one registry."""

from maxvit.models.model import MaxVit, MaxVitConfig
from maxvit.models.variants import VARIANTS, create_model, default_img_size, list_models

__all__ = ["VARIANTS", "MaxVit", "MaxVitConfig", "create_model", "default_img_size", "list_models"]

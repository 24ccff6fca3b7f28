"""Baseline models (ViT, CoAtNet) built from timm; filled in by the baselines work."""

from __future__ import annotations

BASELINES: dict = {}

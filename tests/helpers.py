"""Paths and markers shared by the tests (import as `from tests.helpers import ...`)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"
MINI_ARCHIVE = SHARED / "data" / "tiny-imagenet-200-mini.zip"
IMAGENET_SAMPLE = SHARED / "data" / "imagenet-sample-200.zip"
SEED_CSV = SHARED / "reference" / "seed_architecture.csv"

requires_mini = pytest.mark.skipif(not MINI_ARCHIVE.exists(), reason="mini archive not present")

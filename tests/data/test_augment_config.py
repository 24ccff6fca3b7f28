"""The augmentation config: validation, the passes of an epoch, the size checks."""

from __future__ import annotations

import pytest

from maxvit.data.augment_config import (
    CUTMIX,
    ERASE,
    MIXUP,
    PLAIN,
    AugmentConfig,
    check_eval_crop,
    check_img_size,
    scaled_crop,
)
from maxvit.errors import UserError


def test_config_validation():
    with pytest.raises(UserError, match="unknown augmentation pipeline"):
        AugmentConfig(pipeline="fancy")
    with pytest.raises(UserError, match="erase_area"):
        AugmentConfig(erase_area=(0.5, 0.2))
    assert AugmentConfig().pass_kinds() == (PLAIN, MIXUP, CUTMIX, ERASE)
    assert AugmentConfig(four_pass=False).pass_kinds() == (PLAIN,)
    assert AugmentConfig(pipeline="timm").pass_kinds() == (PLAIN,)
    assert AugmentConfig(four_pass=False).random_kind_per_batch()
    assert not AugmentConfig(pipeline="timm", four_pass=False).random_kind_per_batch()


def test_sizes():
    assert scaled_crop(64) == 56
    check_img_size(8)
    check_eval_crop(1.0)
    with pytest.raises(UserError, match="image size must be an integer >= 8, got 7"):
        check_img_size(7)
    with pytest.raises(UserError, match=r"evaluation crop must be in \(0, 1\], got 1.5"):
        check_eval_crop(1.5)

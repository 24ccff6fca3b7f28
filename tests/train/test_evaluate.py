"""Evaluation: flip TTA scores the mean of the softmax of an image and its mirror, so on images
that are their own mirror it equals plain evaluation, and elsewhere it does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maxvit.data import open_data
from maxvit.errors import UserError
from maxvit.models import create_model
from maxvit.train.evaluate import evaluate


def _tree(root: Path, *, mirrored: bool) -> Path:
    """3 classes x 2 images of 32x32 in train/ and val/; `mirrored`: each row reads the same
    from both ends."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in range(3):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(2):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                if mirrored:
                    pixels[:, 16:] = pixels[:, :16][:, ::-1]
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.parametrize("mirrored", [True, False])
def test_flip_tta_equals_plain_evaluation_exactly_when_images_are_their_own_mirror(
    tmp_path, mirrored
):
    source = open_data(_tree(tmp_path / "tree", mirrored=mirrored))
    torch.manual_seed(0)
    model = create_model("maxvit_nano", num_classes=3, img_size=32).eval()
    plain = evaluate(model, source, "val", img_size=32)
    tta = evaluate(model, source, "val", img_size=32, tta="flip")
    assert tta["n"] == plain["n"] == 6
    if mirrored:
        assert (tta["top1"], tta["top5"]) == (plain["top1"], plain["top5"])
        assert tta["loss"] == pytest.approx(plain["loss"], rel=1e-6)
    else:
        assert tta["loss"] != pytest.approx(plain["loss"], rel=1e-4)


def test_an_unknown_tta_is_one_line(tmp_path):
    source = open_data(_tree(tmp_path / "tree", mirrored=True))
    model = create_model("maxvit_nano", num_classes=3, img_size=32)
    with pytest.raises(UserError, match="unknown test-time augmentation 'rotate'"):
        evaluate(model, source, "val", img_size=32, tta="rotate")


def test_every_kth_image_is_a_fixed_subset_over_all_classes(tmp_path):
    from maxvit.data import build_eval_loader

    source = open_data(_tree(tmp_path / "tree", mirrored=False))  # 6 images, class-sorted
    labels = [
        y for _, batch in build_eval_loader(source, "train", batch_size=4, num_workers=0,
                                            img_size=32, every=2)
        for y in batch.tolist()
    ]  # fmt: skip
    assert labels == [0, 1, 2]  # images 0, 2 and 4: one of each class
    model = create_model("maxvit_nano", num_classes=3, img_size=32).eval()
    assert evaluate(model, source, "train", img_size=32, every=2)["n"] == 3
    with pytest.raises(UserError, match="every must be >= 1"):
        evaluate(model, source, "train", img_size=32, every=0)

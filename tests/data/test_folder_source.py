"""Class folders: names that cannot be class ids, empty and single classes, other image types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maxvit.data import AugmentConfig, build_train_loader, open_data
from maxvit.errors import UserError


def _tree(root: Path, classes: dict[str, int], suffix: str = ".png") -> Path:
    """ROOT/{train,val}/<class>/ with `classes[name]` train images (one val image each)."""
    for split in ("train", "val"):
        for name, count in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count if split == "train" else min(count, 1)):
                pixels = np.full((8, 8, 3), 40 * i, dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}{suffix}")
    return root


@pytest.mark.parametrize("name", ["two\nlines", "tab\there", "bell\x07"])
def test_a_class_folder_name_with_a_control_character_is_refused(tmp_path, name):
    root = _tree(tmp_path / "root", {"cat": 2, name: 2})
    with pytest.raises(UserError) as info:
        open_data(root)
    assert str(info.value) == (
        f"class folder {name!r} in {root / 'train'} has a newline or other control character "
        "in its name; rename it"
    )
    assert "\n" not in str(info.value)


def test_empty_class_folders_and_a_single_class_each_warn_in_one_line(tmp_path, capsys):
    root = _tree(tmp_path / "root", {"cat": 2, "dog": 2, "eel": 0, "fox": 0})
    assert open_data(root).num_classes == 4
    assert capsys.readouterr().err == (
        f"warning: {root / 'train' / 'eel'} holds no images: the model gets a class it never "
        "sees (2 empty class folder(s))\n"
    )
    one = _tree(tmp_path / "one", {"cat": 2})
    assert open_data(one).num_classes == 1
    assert capsys.readouterr().err == (
        f"warning: {one / 'train'} holds one class (cat): a one-class model is right whatever "
        "it predicts\n"
    )
    open_data(_tree(tmp_path / "fine", {"cat": 1, "dog": 1}))
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("suffix", [".bmp", ".tif"])
def test_images_of_other_types_are_refused_as_predict_refuses_them(tmp_path, suffix):
    root = _tree(tmp_path / "root", {"cat": 2, "dog": 2})
    odd = root / "train" / "dog" / f"scan{suffix}"
    Image.new("RGB", (8, 8)).save(odd)  # PIL reads it; before: silently left out
    with pytest.raises(UserError) as info:
        build_train_loader(root, AugmentConfig(), batch_size=2, img_size=8, seed=0, num_workers=0)
    assert str(info.value) == (
        f"{odd}: unsupported image type {suffix} (use JPEG, PNG or WebP); convert it or move it out"
    )

"""The official archive's layout, read from the zip or an unpacked copy (the refusals of bad
archives are tested through `prepare`, in test_prepare.py)."""

from __future__ import annotations

import zipfile

from maxvit.data.archive import DirArchive, ZipArchive, natural_key, open_archive, read_layout
from maxvit.data.synthetic import make_synthetic_archive


def test_layout_lists_each_split_in_natural_order_from_zip_or_folder(tmp_path):
    archive = make_synthetic_archive(
        tmp_path / "a.zip", num_classes=2, train_per_class=11, val_per_class=6, test_images=3
    )
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unpacked")
    layouts = []
    for path, kind in ((archive, ZipArchive), (tmp_path / "unpacked", DirArchive)):
        source = open_archive(path)
        assert isinstance(source, kind)
        layouts.append(read_layout(source, expected_classes=2))
    layout = layouts[0]
    assert layouts[1] == layout
    assert layout.wnids == ["n10000000", "n10000001"]
    assert layout.class_names == ["thing 0, synthetic class 0", "thing 1, synthetic class 1"]
    train = layout.files["train"]
    assert train[:3] == [f"train/n10000000/images/n10000000_{k}.JPEG" for k in (0, 1, 2)]
    assert train[10] == "train/n10000000/images/n10000000_10.JPEG"  # after _9, not after _1
    assert layout.labels["train"] == [0] * 11 + [1] * 11
    assert layout.files["val"][9:11] == ["val/images/val_9.JPEG", "val/images/val_10.JPEG"]
    assert layout.labels["val"] == [0] * 6 + [1] * 6
    assert layout.val_lines["val/images/val_7.JPEG"] == "val_7.JPEG\tn10000001\t0\t0\t63\t63"
    assert layout.files["test"] == [f"test/images/test_{k}.JPEG" for k in range(3)]
    assert layout.labels["test"] == [-1, -1, -1]
    assert sorted(["a10", "a9", "a1"], key=natural_key) == ["a1", "a9", "a10"]

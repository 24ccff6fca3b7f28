"""`maxvit data subset`: a deterministic mini archive in the official layout, from the official one."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from maxvit.data import open_data
from maxvit.data.subset import make_subset
from maxvit.data.synthetic import make_synthetic_archive
from maxvit.errors import UserError
from tests.data.util import run_cli

ROOT = "tiny-imagenet-200/"


def names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


def read(path: Path, name: str) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read(ROOT + name)


def test_first_images_in_natural_order_in_the_official_layout(tmp_path):
    source = make_synthetic_archive(
        tmp_path / "src.zip", num_classes=3, train_per_class=12, val_per_class=3, test_images=4
    )
    out = make_subset(
        source, tmp_path / "mini.zip", per_class=10, val_per_class=2, test=2, quiet=True
    )
    wnids = ["n10000000", "n10000001", "n10000002"]
    train = [f"train/{w}/images/{w}_{k}.JPEG" for w in wnids for k in range(10)]  # not _10, _11
    boxes = [f"train/{w}/{w}_boxes.txt" for w in wnids]
    val = [f"val/images/val_{n}.JPEG" for n in (0, 1, 3, 4, 6, 7)]  # val_3n+2 left out
    test = ["test/images/test_0.JPEG", "test/images/test_1.JPEG"]
    expected = ["wnids.txt", "words.txt", *boxes, *train, "val/val_annotations.txt", *val, *test]
    assert names(out) == [ROOT + n for n in sorted(expected)]
    assert read(out, "val/val_annotations.txt").decode().splitlines() == [
        f"val_{n}.JPEG\t{wnids[n // 3]}\t0\t0\t63\t63" for n in (0, 1, 3, 4, 6, 7)
    ]
    assert read(out, "wnids.txt") == read(source, "wnids.txt")
    assert read(out, train[11]) == read(source, train[11])
    again = make_subset(
        source, tmp_path / "again.zip", per_class=10, val_per_class=2, test=2, quiet=True
    )
    assert again.read_bytes() == out.read_bytes()  # deterministic to the byte


def test_open_data_reads_a_subset_of_the_full_class_list(synthetic_archive, tmp_path):
    out = make_subset(
        synthetic_archive, tmp_path / "mini.zip", per_class=1, val_per_class=1, test=3, quiet=True
    )
    source = open_data(out)
    assert source.num_classes == 200 and source.class_names[0] == "thing 0, synthetic class 0"
    assert [source.count(s) for s in ("train", "val", "test")] == [200, 200, 3]


def test_bad_requests_are_one_line_errors(synthetic_archive, tmp_path):
    out = tmp_path / "mini.zip"
    cases = [
        (
            {"per_class": 3},
            r"class n10000000 has 2 train images, fewer than --per-class 3 "
            r"\(199 more class\(es\) too\)",
        ),
        ({"val_per_class": 2}, "class n10000000 has 1 val images, fewer than --val-per-class 2"),
        ({"test": 5}, "the archive has 4 test images, fewer than --test 5"),
        ({"per_class": 0}, "--per-class and --val-per-class must be >= 1"),
    ]
    for options, message in cases:
        kwargs = {"per_class": 1, "val_per_class": 1, "test": 0, **options}
        with pytest.raises(UserError, match=message) as info:
            make_subset(synthetic_archive, out, quiet=True, **kwargs)
        assert "\n" not in str(info.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="must name a .zip file"):
        make_subset(synthetic_archive, tmp_path / "mini", quiet=True)
    out.write_text("keep")
    with pytest.raises(UserError, match="exists; pass --force to replace it"):
        make_subset(synthetic_archive, out, per_class=1, val_per_class=1, quiet=True)
    assert out.read_text() == "keep"
    with pytest.raises(UserError, match="does not exist"):
        make_subset(tmp_path / "missing.zip", tmp_path / "x.zip", quiet=True)


def test_cli(synthetic_archive, tmp_path, capsys):
    out = tmp_path / "mini.zip"
    argv = ["subset", str(synthetic_archive), "--out", str(out), "--per-class", "2"]
    assert run_cli(*argv, "--val-per-class", "1", "--test", "0") == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert len([n for n in names(out) if "/train/" in n and n.endswith(".JPEG")]) == 400
    assert run_cli(*argv, "--val-per-class", "1", "--test", "0") == 2  # exists
    assert "pass --force" in capsys.readouterr().err
    assert run_cli(*argv, "--val-per-class", "1", "--test", "0", "--force") == 0


def test_the_real_mini_archive(mini_archive, tmp_path):
    out = make_subset(
        mini_archive, tmp_path / "mini10.zip", per_class=10, val_per_class=2, test=5, quiet=True
    )
    listed = names(out)
    images = [n for n in listed if n.endswith(".JPEG")]
    assert len(images) == 200 * 10 + 200 * 2 + 5
    wnids = read(out, "wnids.txt").decode().split()
    first = wnids[0]
    assert [n for n in images if f"/train/{first}/" in n] == sorted(
        f"{ROOT}train/{first}/images/{first}_{k}.JPEG" for k in range(10)
    )
    box_lines = read(out, f"train/{first}/{first}_boxes.txt").decode().splitlines()
    assert sorted(line.split("\t")[0] for line in box_lines) == sorted(
        f"{first}_{k}.JPEG" for k in range(10)
    )
    annotations = read(out, "val/val_annotations.txt").decode().splitlines()
    assert len(annotations) == 400
    assert {line.split("\t")[1] for line in annotations} == set(wnids)
    assert read(out, "words.txt") == zipfile.ZipFile(mini_archive).read(ROOT + "words.txt")
    source = open_data(out)
    assert source.num_classes == 200
    assert [source.count(s) for s in ("train", "val", "test")] == [2000, 400, 5]
    again = make_subset(
        mini_archive, tmp_path / "again.zip", per_class=10, val_per_class=2, test=5, quiet=True
    )
    assert again.read_bytes() == out.read_bytes()

"""Preparing the official archive: validation, conversion, atomic output, verify, CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from maxvit.data import prepare as prep
from maxvit.data.prepare import ensure_prepared, prepare, verify
from maxvit.data.synthetic import make_synthetic_archive
from maxvit.errors import UserError
from tests.data.util import run_cli
from tests.faults import holding, tmpfs
from tests.train.utils import subprocess_env


@pytest.fixture(scope="module")
def prepared_synthetic(synthetic_archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(synthetic_archive, tmp_path_factory.mktemp("p") / "prepared", quiet=True)


def small(tmp_path: Path, **defects) -> Path:
    """A 4-class archive (with the given defects) for the validation cases."""
    return make_synthetic_archive(tmp_path / "small.zip", num_classes=4, **defects)


def test_prepared_arrays_match_the_archive(synthetic_archive, prepared_synthetic):
    manifest = verify(prepared_synthetic)
    assert manifest["classes"] == 200
    assert {s: manifest["splits"][s]["count"] for s in ("train", "val", "test")} == {
        "train": 400,
        "val": 200,
        "test": 4,
    }
    images = np.load(prepared_synthetic / "train_images.npy")
    labels = np.load(prepared_synthetic / "train_labels.npy")
    assert images.shape == (400, 64, 64, 3) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and list(labels[:4]) == [0, 0, 1, 1]
    names = (prepared_synthetic / "train_files.txt").read_text().splitlines()
    wnids = (prepared_synthetic / "wnids.txt").read_text().split()
    assert names[2] == f"train/{wnids[1]}/images/{wnids[1]}_0.JPEG"
    # row 2 is the decoded image of that file (a JPEG decodes the same way every time)
    from PIL import Image

    with zipfile.ZipFile(synthetic_archive) as zf, zf.open("tiny-imagenet-200/" + names[2]) as f:
        expected = np.asarray(Image.open(f).convert("RGB"))
    np.testing.assert_array_equal(images[2], expected)
    assert (prepared_synthetic / "class_names.txt").read_text().splitlines()[1] == (
        "thing 1, synthetic class 1"
    )
    assert list(np.load(prepared_synthetic / "test_labels.npy")) == [-1] * 4
    val_labels = np.load(prepared_synthetic / "val_labels.npy")
    assert sorted(val_labels) == list(range(200))


@pytest.mark.slow
def test_grayscale_cmyk_and_odd_sizes_become_64x64_rgb(synthetic_archive, prepared_synthetic):
    with zipfile.ZipFile(synthetic_archive) as zf:
        from PIL import Image

        modes = {Image.open(zf.open(n)).mode for n in zf.namelist() if n.endswith(".JPEG")}
    assert {"L", "CMYK", "RGB"} <= modes
    manifest = json.loads((prepared_synthetic / "manifest.json").read_text())
    assert manifest["splits"]["test"]["resized"] == ["test/images/test_0.JPEG"]
    images = np.load(prepared_synthetic / "train_images.npy")
    files = (prepared_synthetic / "train_files.txt").read_text().splitlines()
    gray_rows = [i for i, n in enumerate(files) if _mode(synthetic_archive, n) == "L"]
    assert gray_rows, "the synthetic archive has grayscale train images"
    gray = images[gray_rows[0]]
    assert gray.shape == (64, 64, 3)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])  # replicated channels


def _mode(archive: Path, name: str) -> str:
    from PIL import Image

    with zipfile.ZipFile(archive) as zf:
        return Image.open(zf.open("tiny-imagenet-200/" + name)).mode


def test_unpacked_folder_gives_the_same_arrays(synthetic_archive, prepared_synthetic, tmp_path):
    with zipfile.ZipFile(synthetic_archive) as zf:
        zf.extractall(tmp_path / "unpacked")
    out = prepare(tmp_path / "unpacked", tmp_path / "from-dir", quiet=True)
    for name in ("train_images.npy", "val_labels.npy", "test_images.npy", "wnids.txt"):
        assert (out / name).read_bytes() == (prepared_synthetic / name).read_bytes()


def test_threads_give_the_same_result(tmp_path, monkeypatch):
    archive = small(tmp_path, train_per_class=20)
    one = prepare(archive, tmp_path / "one", expected_classes=4, workers=1, quiet=True)
    monkeypatch.setattr(prep, "_CHUNK", 7)
    many = prepare(archive, tmp_path / "many", expected_classes=4, workers=3, quiet=True)
    for name in ("train_images.npy", "train_labels.npy", "train_files.txt"):
        assert (one / name).read_bytes() == (many / name).read_bytes()


@pytest.mark.parametrize("entry", ["tiny-imagenet-200/../evil.txt", "/etc/evil.txt", "a/../../x"])
def test_unsafe_archive_paths_are_refused(tmp_path, entry):
    archive = small(tmp_path, unsafe_entry=entry)
    assert any(
        n.endswith("evil.txt") or n.endswith("x") for n in zipfile.ZipFile(archive).namelist()
    )
    with pytest.raises(UserError, match="unsafe path in archive"):
        prepare(archive, tmp_path / "out", expected_classes=4, quiet=True)
    assert not (tmp_path / "out").exists()


def test_corrupt_jpeg_fails_with_its_name(tmp_path):
    archive = small(tmp_path, corrupt=True)
    with pytest.raises(UserError, match=r"corrupt image train/n10000001/images/n10000001_0\.JPEG"):
        prepare(archive, tmp_path / "out", expected_classes=4, quiet=True)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_corrupt_jpeg_is_skipped_and_counted_with_skip_bad(tmp_path):
    archive = small(tmp_path, corrupt=True)
    out = prepare(archive, tmp_path / "out", expected_classes=4, skip_bad=True, quiet=True)
    manifest = verify(out)
    assert manifest["splits"]["train"]["count"] == 7
    assert [s["name"] for s in manifest["splits"]["train"]["skipped"]] == [
        "train/n10000001/images/n10000001_0.JPEG"
    ]
    files = (out / "train_files.txt").read_text().splitlines()
    assert "train/n10000001/images/n10000001_0.JPEG" not in files
    assert list(np.load(out / "train_labels.npy")) == [0, 0, 1, 2, 2, 3, 3]


def test_missing_val_image_is_reported(tmp_path):
    archive = small(tmp_path, missing_val=True)
    with pytest.raises(UserError, match=r"lists val_4\.JPEG but val/images/val_4\.JPEG is missing"):
        prepare(archive, tmp_path / "out", expected_classes=4, quiet=True)


def test_wrong_class_count_and_missing_class_folder(tmp_path):
    with pytest.raises(UserError, match="lists 4 classes, expected 200"):
        prepare(small(tmp_path), tmp_path / "out", quiet=True)
    archive = make_synthetic_archive(tmp_path / "m.zip", num_classes=4, missing_train_class=True)
    with pytest.raises(UserError, match=r"no images in train/n10000003/images"):
        prepare(archive, tmp_path / "out", expected_classes=4, quiet=True)


def test_not_an_archive(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="cannot read .* as a zip archive"):
        prepare(tmp_path / "x.zip", tmp_path / "out", quiet=True)
    with pytest.raises(UserError, match="does not exist"):
        prepare(tmp_path / "missing.zip", tmp_path / "out", quiet=True)


def test_interrupted_prepare_leaves_nothing_finished(tmp_path, monkeypatch):
    archive = small(tmp_path)
    calls = 0

    def interrupt(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 2:  # the val split, after train was written
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = prep.decode_into
    monkeypatch.setattr(prep, "decode_into", interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare(archive, tmp_path / "out", expected_classes=4, quiet=True)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.tmp-*"))


@pytest.mark.slow
def test_killed_prepare_leaves_no_finished_dir_and_is_cleaned_up(tmp_path):
    archive = small(tmp_path, train_per_class=400)
    code = (
        "import os, signal\n"
        "from maxvit.data import prepare as p\n"
        "real = p.decode_into\n"
        "def die(*a):\n"
        "    real(*a)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "p.decode_into = die\n"
        f"p.prepare({str(archive)!r}, {str(tmp_path / 'out')!r}, expected_classes=4, quiet=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    leftovers = list(tmp_path.glob(".out.tmp-*"))
    assert len(leftovers) == 1 and not (leftovers[0] / "manifest.json").exists()
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="not a prepared data set"):
        verify(leftovers[0])
    prepare(archive, tmp_path / "out", expected_classes=4, quiet=True)  # cleans the stale one
    assert not list(tmp_path.glob(".out.tmp-*"))


def test_existing_output_needs_force(tmp_path):
    archive = small(tmp_path)
    out = prepare(archive, tmp_path / "out", expected_classes=4, quiet=True)
    with pytest.raises(UserError, match="pass --force"):
        prepare(archive, out, expected_classes=4, quiet=True)
    (out / "marker").write_text("old")
    prepare(archive, out, expected_classes=4, force=True, quiet=True)
    assert not (out / "marker").exists()
    verify(out)
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious.txt").write_text("x")
    with pytest.raises(UserError, match="not a prepared data set"):
        prepare(archive, other, expected_classes=4, force=True, quiet=True)
    assert (other / "precious.txt").exists()


def test_verify_catches_a_corrupted_array(prepared_synthetic, tmp_path):
    import shutil

    copy = Path(shutil.copytree(prepared_synthetic, tmp_path / "copy"))
    with open(copy / "val_images.npy", "r+b") as f:
        f.seek(-100, os.SEEK_END)
        f.write(b"\xff" * 10)
    with pytest.raises(UserError, match="checksum mismatch for val_images.npy"):
        verify(copy)
    assert run_cli("verify", str(copy)) == 2
    assert run_cli("verify", str(prepared_synthetic)) == 0


def test_verify_catches_bad_labels_with_a_matching_checksum(prepared_synthetic, tmp_path):
    import shutil

    copy = Path(shutil.copytree(prepared_synthetic, tmp_path / "copy"))
    labels = np.load(copy / "train_labels.npy")
    labels[0] = 200
    np.save(copy / "train_labels.npy", labels)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["train_labels.npy"]["sha256"] = prep.sha256_file(copy / "train_labels.npy")
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="train labels outside 0..199"):
        verify(copy)


def test_ensure_prepared(synthetic_archive, tmp_path, monkeypatch, capsys):
    import shutil

    archive = Path(shutil.copy(synthetic_archive, tmp_path / "tiny-imagenet-200.zip"))
    out = ensure_prepared(archive)
    assert out == tmp_path / "tiny-imagenet-200-prepared"
    mtime = (out / "manifest.json").stat().st_mtime_ns
    assert ensure_prepared(archive) == out  # reused
    assert ensure_prepared(out) == out
    assert (out / "manifest.json").stat().st_mtime_ns == mtime
    # a read-only folder: prepared in the cache instead
    monkeypatch.setattr(prep, "writable", lambda folder: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cached = ensure_prepared(archive)
    assert cached.parent == tmp_path / "cache" / "maxvit" and cached.name.endswith("-prepared")
    with pytest.raises(UserError, match="maxvit data download.*maxvit data prepare"):
        ensure_prepared(tmp_path / "nowhere.zip")


def test_cli_prepare_verify_info(synthetic_archive, prepared_synthetic, tmp_path, capsys):
    assert run_cli("prepare", "--source", str(synthetic_archive), "--out", str(tmp_path / "p")) == 0
    assert run_cli("verify", str(tmp_path / "p")) == 0
    assert "OK (200 classes" in capsys.readouterr().out
    assert run_cli("prepare", "--source", str(synthetic_archive), "--out", str(tmp_path / "p")) == 2
    assert "--force" in capsys.readouterr().err
    assert run_cli("info", str(prepared_synthetic), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["train"], info["val"], info["test"], info["classes"]) == (400, 200, 4, 200)
    assert info["class_names"][3] == "thing 3, synthetic class 3"
    assert run_cli("info", str(prepared_synthetic)) == 0
    assert "200 classes" in capsys.readouterr().out
    for flag in ([], ["--augmented"]):
        png = tmp_path / f"grid{len(flag)}.png"
        assert run_cli("info", str(prepared_synthetic), "--grid", str(png), *flag) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        from PIL import Image

        assert min(Image.open(png).size) > 300
    assert run_cli("info", str(tmp_path / "nothing")) == 2
    assert "not a prepared data set" in capsys.readouterr().err


def test_cli_rejects_a_small_archive(tmp_path, capsys):
    archive = small(tmp_path)
    assert run_cli("prepare", "--source", str(archive), "--out", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "expected 200" in err and err.count("\n") == 1


@pytest.mark.slow
def test_mini_archive_prepares(prepared_mini):
    manifest = verify(prepared_mini)
    assert manifest["classes"] == 200
    counts = {s: manifest["splits"][s]["count"] for s in ("train", "val", "test")}
    assert counts == {"train": 20000, "val": 1000, "test": 100}
    labels = np.load(prepared_mini / "train_labels.npy")
    assert np.bincount(labels).tolist() == [100] * 200


def test_an_entry_far_larger_than_any_image_is_refused_without_reading_it(
    synthetic_archive, tmp_path, monkeypatch
):
    import shutil
    import zipfile

    archive = tmp_path / "tiny-imagenet-200.zip"
    shutil.copy(synthetic_archive, archive)
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("tiny-imagenet-200/test/images/test_huge.JPEG")
        zf.writestr(info, b"\0" * 5_000_000, compress_type=zipfile.ZIP_DEFLATED)  # 5 KB on disk
    monkeypatch.setattr("maxvit.data.archive.MAX_ENTRY_BYTES", 1_000_000)
    with pytest.raises(UserError, match=r"test_huge.JPEG declares 5,000,000 bytes"):
        prep.prepare(archive, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------------------
# Full disks, signals, two processes


def test_a_full_disk_is_one_line_before_decoding_and_leaves_nothing(
    synthetic_archive, tmp_path, capsys
):
    with tmpfs(tmp_path / "disk", "2m") as disk:  # 604 images: 7.1 MiB of arrays
        out = disk / "out"
        assert run_cli("prepare", "--source", str(synthetic_archive), "--out", str(out)) == 2
        assert capsys.readouterr().err == (
            f"error: cannot write {out}: No space left on device (7.1 MiB needed, 2.0 MiB free)\n"
        )
        assert list(disk.iterdir()) == []


def _maxvit_with(patch: str, *args: str, **popen) -> subprocess.Popen:
    """`maxvit ARGS` in a child process after the Python lines `patch` (prep: the prepare module)."""
    code = f"import sys, time\nfrom maxvit.data import prepare as prep\n{patch}\n"
    code += "from maxvit.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], env=subprocess_env(), text=True, **popen
    )


@pytest.mark.slow
def test_a_disk_that_fills_while_decoding_is_one_line_not_sigbus(synthetic_archive, tmp_path):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        out = disk / "out"
        proc = _maxvit_with(
            "prep.check_space = lambda path, need: None  # the check passed; then the disk filled",
            *("data", "prepare", "--source", str(synthetic_archive), "--out", str(out)),
            stderr=subprocess.PIPE,
        )
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, err  # before: -7, SIGBUS in a memory-mapped write
        prefix = f"error: cannot write {out / 'train_images.npy'}: No space left on device (4.7"
        assert err.startswith(prefix) and err.count("\n") == 1, err
        assert list(disk.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig, code, name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT (Ctrl-C)")]
)
def test_a_signal_while_preparing_removes_the_unfinished_folder_in_one_line(
    synthetic_archive, tmp_path, sig, code, name
):
    out = tmp_path / "out"
    slow = "def slow(*args):\n    print('decoding', flush=True)\n    time.sleep(60)\n"
    proc = _maxvit_with(
        slow + "prep.decode_into = slow",
        *("data", "prepare", "--source", str(synthetic_archive), "--out", str(out)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == "decoding\n"
        assert list(tmp_path.glob(".out.tmp-*"))  # the unfinished folder
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert err == f"interrupted: {name} while preparing {out}; the unfinished copy was removed\n"
    assert list(tmp_path.iterdir()) == []


def test_a_folder_another_process_prepares_is_refused_or_awaited(
    synthetic_archive, tmp_path, capsys
):
    import shutil

    out = tmp_path / "out"
    with holding(out, 60) as pid:
        with pytest.raises(UserError) as info:
            prepare(synthetic_archive, out, quiet=True)
    assert str(info.value) == (
        f"{out} is in use by PID {pid}; wait for it to finish or choose another folder"
    )
    archive = Path(shutil.copy(synthetic_archive, tmp_path / "tiny-imagenet-200.zip"))
    target = tmp_path / "tiny-imagenet-200-prepared"
    with holding(target, 0.5) as pid:  # train's first-use prepare waits for it, then prepares
        assert ensure_prepared(archive) == target
    assert f"waiting for PID {pid}, which is using {target}\n" in capsys.readouterr().err
    verify(target)


@pytest.mark.slow
@pytest.mark.parametrize(
    "step, sig, name",
    [("read_layout", signal.SIGTERM, "SIGTERM"), ("decode_into", signal.SIGINT, "SIGINT (Ctrl-C)")],
)
def test_a_signal_while_train_prepares_on_first_use_leaves_nothing_in_one_line(
    synthetic_archive, tmp_path, step, sig, name
):
    """Before: a signal while train read a large archive's layout (before the copy was begun)
    killed it without a word, leaving its lock file."""
    import shutil

    archive = Path(shutil.copy(synthetic_archive, tmp_path / "tiny-imagenet-200.zip"))
    target = tmp_path / "tiny-imagenet-200-prepared"
    slow = f"def slow(*args):\n    print('{step}', flush=True)\n    time.sleep(60)\n"
    proc = _maxvit_with(
        f"{slow}prep.{step} = slow",
        *("train", "--preset", "smoke", "--data", str(archive), "--out", str(tmp_path / "run")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    try:
        assert proc.stdout.readline() == f"{step}\n"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, err
    assert err == (
        f"preparing {archive} into {target} (first use)\n"
        f"interrupted: {name} while preparing {target}; the unfinished copy was removed\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == [archive.name]  # no copy, lock or run


def test_a_damaged_manifest_or_a_prepared_source_is_one_line(prepared_synthetic, tmp_path):
    import shutil

    folder = Path(shutil.copytree(prepared_synthetic, tmp_path / "p"))
    manifest = json.loads((folder / "manifest.json").read_text())
    damaged = [
        {k: v for k, v in manifest.items() if k != "files"},
        {**manifest, "files": [1, 2]},
        {**manifest, "splits": {"train": {"count": "many"}}},
    ]
    for crafted in damaged:  # before: KeyError, AttributeError
        (folder / "manifest.json").write_text(json.dumps(crafted))
        with pytest.raises(UserError, match="manifest.json is damaged .*prepare it again"):
            ensure_prepared(folder)
    with pytest.raises(UserError, match=r"is prepared already: pass it as it is \(--data"):
        prepare(prepared_synthetic, tmp_path / "out", quiet=True)  # before: two lines
    assert not (tmp_path / "out").exists()

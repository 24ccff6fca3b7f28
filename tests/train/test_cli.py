"""End to end through the `maxvit` command line: prepare, train, eval, predict, report, export."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from maxvit.cli import main
from maxvit.errors import UserError
from maxvit.train.checkpoint import load_model
from tests.helpers import MINI_ARCHIVE
from tests.train.utils import REPO


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """The mini archive (linked, so that it is prepared in a temporary folder), or a synthetic
    archive in the same layout when the mini one is absent."""
    folder = tmp_path_factory.mktemp("archive")
    path = folder / "tiny-imagenet-200-mini.zip"
    if MINI_ARCHIVE.exists():
        path.symlink_to(MINI_ARCHIVE)
    else:
        from maxvit.data.synthetic import make_synthetic_archive

        make_synthetic_archive(path, train_per_class=2)
    return path


@pytest.fixture(scope="module")
def run(archive) -> Path:
    """`maxvit train --preset smoke --data ARCHIVE` (the archive is prepared on first use)."""
    out = archive.parent / "run"
    assert main(["train", "--preset", "smoke", "--data", str(archive), "--out", str(out)]) == 0
    assert (archive.parent / f"{archive.stem}-prepared" / "manifest.json").exists()
    return out


@pytest.mark.slow
def test_eval_prints_json_metrics(run, archive, capsys):
    assert (
        main(["eval", "--checkpoint", str(run), "--data", str(archive), "--num-workers", "0"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["split"] == "val" and result["n"] == (1000 if MINI_ARCHIVE.exists() else 200)
    assert 0 <= result["top1"] <= result["top5"] <= 100 and result["loss"] > 0
    best = max(
        json.loads(line)["val_top1"] for line in (run / "metrics.jsonl").read_text().splitlines()
    )
    assert result["top1"] == pytest.approx(best)  # the run folder means its best checkpoint
    args = ["eval", "--checkpoint", str(run), "--data", str(archive), "--tta", "flip"]
    assert main(args) == 0
    flipped = json.loads(capsys.readouterr().out)
    assert flipped["tta"] == "flip" and flipped["n"] == result["n"]
    assert flipped["loss"] != pytest.approx(result["loss"], rel=1e-6)  # the mirrors were scored


@pytest.mark.slow
def test_predict_prints_top5_class_names(run, archive, tmp_path, capsys):
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if "/val/images/" in n and n.endswith(".JPEG")][:2]
        images = []
        for name in names:
            images.append(tmp_path / Path(name).name)
            images[-1].write_bytes(zf.read(name))
        words = zf.read("tiny-imagenet-200/words.txt").decode()
    assert main(["predict", "--checkpoint", str(run), *map(str, images)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 * 6 and lines[0] == str(images[0])
    probs = [float(line.split()[0]) for line in lines[1:6]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001
    # names from words.txt, each with its wnid
    assert all(line.split(None, 1)[1].rsplit(" (", 1)[0] in words for line in lines[1:6])
    assert all(line.endswith(")") and " (n" in line for line in lines[1:6])


@pytest.mark.slow
def test_predict_rejects_a_non_image(run, tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    assert main(["predict", "--checkpoint", str(run), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot decode {bad} (not an image") and err.count("\n") == 1


def test_paths_and_names_on_the_command_line_are_taken_as_given(
    synth_data, tmp_path, monkeypatch, capsys
):
    """Before: --data and --model were read as YAML (a folder named 123 was `expected str, got
    123`); a non-UTF-8 --out was a traceback from the TensorBoard writer after the run folder
    was made, a non-UTF-8 --data PyYAML's error on three lines; an --out that is a file was
    `Not a directory` after the model was built."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("keep")
    smoke = ["train", "--preset", "smoke"]
    cases = {
        ("--data", "123", "--out", "r"): f"error: {tmp_path / '123'} does not exist; accepted",
        ("--data", "a: b", "--out", "r"): f"error: {tmp_path / 'a: b'} does not exist; accepted",
        ("--model", "7", "--data", str(synth_data), "--out", "r"): "error: unknown model '7'",
        ("--out", "r/\udcff"): "error: --out r/\\xff is not UTF-8; rename it or choose another",
        ("--data", "\udcff", "--out", "r"): "error: --data \\xff is not UTF-8; rename it or",
        ("--out", "afile"): "error: afile exists and is not a folder; choose another --out",
    }
    for args, start in cases.items():
        assert main([*smoke, *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith(start) and err.count("\n") == 1, err
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]
    assert (tmp_path / "afile").read_text() == "keep"


@pytest.mark.slow
def test_report_rewrites_curves_and_summary(run, capsys):
    (run / "curves.png").unlink()
    (run / "summary.md").unlink()
    assert main(["report", str(run)]) == 0
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"
    summary = (run / "summary.md").read_text()
    assert "| 2 |" in summary and "69.13" in summary  # per-epoch table and the recorded result


@pytest.mark.slow  # the dynamo exporter: about 40 s
def test_export_onnx_matches_pytorch(run, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(run), "--format", "onnx", "--out", str(out)]) == 0
    model, info = load_model(run)
    x = torch.randn(3, 3, info.img_size, info.img_size)  # another batch size than exported with
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_unknown_preset_and_key_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--preset", "nope", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "valid presets" in err
    assert (
        main(["train", "--preset", "smoke", "--set", "lr_max=1", "--out", str(tmp_path / "r")]) == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "valid keys" in err


def test_train_without_data_downloads_and_says_so_in_one_line_when_offline(
    tmp_path, monkeypatch, capsys
):
    """`make train` (no DATA) passes --download: the archive is fetched into ./data; offline,
    one line names --data. Without --download nothing is fetched."""
    calls = []

    def offline(url=None, root="data", **kwargs):
        calls.append(Path(root))
        raise UserError("cannot reach http://cs231n.stanford.edu/tiny-imagenet-200.zip: offline")

    monkeypatch.setattr("maxvit.data.download.download", offline)
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "smoke"]) == 2
    err = capsys.readouterr().err
    assert calls == [] and err.count("\n") == 1 and "maxvit train --download" in err
    assert main(["train", "--preset", "smoke", "--download"]) == 2
    err = capsys.readouterr().err
    assert calls == [tmp_path / "data"]  # saved absolute, so a run resumes from anywhere
    assert err.count("\n") == 1 and "cannot download Tiny ImageNet" in err and "DATA=PATH" in err
    assert not (tmp_path / "runs").exists()


def test_make_train_downloads_only_without_data():
    def command(*args: str) -> str:
        out = subprocess.run(
            ["make", "-n", "train", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return next(line.strip() for line in out.splitlines() if "maxvit train" in line)

    assert command("PRESET=smoke").endswith("maxvit train --preset smoke --download")
    assert "--download" not in command("PRESET=smoke", "DATA=some.zip")
    assert "--data some.zip" in command("PRESET=smoke", "DATA=some.zip")
    assert command().endswith("maxvit train --preset auto --download")  # the default path


def test_preset_auto_on_a_cpu_makes_the_mini_subset_once_and_trains_the_budget_recipe(
    synthetic_archive, tmp_path, monkeypatch, capsys
):
    """`make train DATA=archive` without a GPU: one line says so, the subset of the archive is
    written to data/ (reused next time), and the cpu-budget recipe trains on it."""
    import torch

    from maxvit.train import cli as train_cli

    trained = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(
        "maxvit.train.trainer.train", lambda config, out, **kw: trained.append((config, out))
    )
    monkeypatch.setattr("maxvit.data.subset.make_subset", _fake_subset(calls := []))
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", "auto", "--data", str(synthetic_archive)]) == 0
    assert "no GPU: the CPU path" in capsys.readouterr().err
    assert calls == [(str(synthetic_archive), train_cli.MINI)]
    ((config, out),) = trained
    assert config.preset == "cpu-budget" and config.budget_minutes == 10
    assert config.data == str(tmp_path / train_cli.MINI) and out == Path("runs/cpu-budget")
    assert main(["train", "--preset", "auto", "--out", "runs/again"]) == 0
    assert len(calls) == 1  # made once


def _fake_subset(calls: list):
    def make_subset(source, out):
        calls.append((source, out))
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(b"zip")

    return make_subset

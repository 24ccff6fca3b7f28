"""Checkpoints run at a runtime and precision: one-line refusals, the int8 cache's need for
calibration data, and the AOTInductor package running where this project cannot be imported."""

from __future__ import annotations

import functools
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from maxvit.cli import main
from maxvit.errors import UserError
from maxvit.models import create_model
from maxvit.models.baselines import BASELINES
from maxvit.train.checkpoint import read_weights, save_weights
from maxvit.train.inference import int8_model


def _checkpoint(folder: Path, name: str = "maxvit_nano") -> Path:
    """A checkpoint of model `name` at 32 px for 3 classes (random weights)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, img_size=32)
    path = folder / "best.safetensors"
    names = ["a", "b", "c"]
    meta = dict(model=name, img_size=32, class_names=names, classes=names,
                eval_crop=1.0, step=1, epoch=1)  # fmt: skip
    save_weights(path, model.state_dict(), meta)
    return path


def test_int8_eager_is_refused_in_one_line(capsys):
    argv = ["eval", "--checkpoint", "x", "--data", "y", "--runtime", "eager", "--precision", "int8"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --precision int8 runs compiled only") and err.count("\n") == 1


def test_int8_without_a_cache_needs_data_to_calibrate_on(tmp_path):
    path = _checkpoint(tmp_path)
    _, info = read_weights(path)
    with pytest.raises(UserError, match="give --data"):
        int8_model(create_model("maxvit_nano", num_classes=3, img_size=32), info, None)


BLOCKED = """
import sys
sys.modules["maxvit"] = None  # this project's model code cannot be imported
import torch
model = torch._inductor.aoti_load_package(sys.argv[1])
logits = model(torch.load(sys.argv[2]))
print(tuple(logits.shape), float((logits - torch.load(sys.argv[3])).abs().max()))
"""


@pytest.mark.slow
def test_the_pt2_package_runs_in_a_process_that_cannot_import_maxvit(tmp_path, monkeypatch):
    from maxvit.train.checkpoint import load_model
    from maxvit.train.export import export_pt2

    # vit_nano cut to one block: AOTInductor compiles it in a sixth of maxvit_nano's time; the
    # package, not the model, is under test (MaxViT's compiled graph: tests/bench/test_bench_model.py)
    one_block = functools.partial(BASELINES["vit_nano"].build, depth=1)
    monkeypatch.setitem(BASELINES, "vit_nano", replace(BASELINES["vit_nano"], build=one_block))
    path = _checkpoint(tmp_path, "vit_nano")
    out = export_pt2(path, precision="fp32")
    assert out == tmp_path / "best.pt2"
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = load_model(path)[0](x)
    torch.save(x, tmp_path / "x.pt")
    torch.save(expected, tmp_path / "y.pt")
    proc = subprocess.run(
        [sys.executable, "-I", "-c", BLOCKED, str(out), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shape, diff = proc.stdout.split(")")
    assert shape == "(3, 3" and float(diff) < 1e-3

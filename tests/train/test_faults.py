"""Full disks, bad files among good ones, missing checkpoints, an unreachable Hub: one line each
(docs/robustness.md)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from maxvit.cli import main
from maxvit.errors import UserError
from maxvit.models import create_model
from maxvit.train import checkpoint as ckpt
from maxvit.train.predict import predict
from tests.faults import holding, tmpfs

CLASSES = [f"n{i:08d}" for i in range(3)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """An untrained maxvit_nano checkpoint at 32 px (10 MiB of weights), made without training."""
    torch.manual_seed(0)
    model = create_model("maxvit_nano", num_classes=len(CLASSES), img_size=32)
    meta = {"model": "maxvit_nano", "img_size": 32, "class_names": CLASSES, "classes": CLASSES}
    path = tmp_path_factory.mktemp("ck") / "best.safetensors"
    ckpt.save_weights(path, model.state_dict(), meta | {"step": 0, "epoch": 0})
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_predict_answers_for_the_good_images_and_names_each_bad_one(weights, tmp_path):
    good = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(good)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    scan = tmp_path / "scan.bmp"
    Image.new("RGB", (8, 8)).save(scan)  # PIL reads it; class folders refuse it: so does predict
    results = predict(weights, [good, broken, scan, good], top_k=2)  # before: UserError, nothing
    assert [r["image"] for r in results] == [str(p) for p in (good, broken, scan, good)]
    assert [len(r["top"]) for r in (results[0], results[3])] == [2, 2]
    assert results[1] == {
        "image": str(broken),
        "error": f"cannot decode {broken} (not an image in a format PIL knows)",
    }
    assert results[2] == {
        "image": str(scan),
        "error": f"{scan}: unsupported image type .bmp (use JPEG, PNG or WebP)",
    }


def test_a_missing_checkpoint_is_called_missing(tmp_path, capsys):
    missing = tmp_path / "runs" / "nosuch"
    assert main(["export", "--checkpoint", str(missing), "--format", "timm"]) == 2
    assert (
        one_line_error(capsys)
        == f"error: checkpoint {missing} is missing (no such file or folder)\n"
    )


def test_export_timm_onto_a_full_disk_is_one_line_naming_the_folder(weights, tmp_path, capsys):
    with tmpfs(tmp_path / "disk", "2m") as disk:
        out = disk / "nano-timm"
        args = ["export", "--checkpoint", str(weights), "--format", "timm", "--out", str(out)]
        assert main(args) == 2  # before: safetensors' own error, a traceback
        err = one_line_error(capsys)
        pattern = rf"error: cannot write {re.escape(str(out))}: No space left on device \([\d.]+ MiB needed, [\d.]+ [KM]iB free\)\n"
        assert re.fullmatch(pattern, err), err
        assert list(disk.iterdir()) == []  # no temporary folder left


class _Program:
    """What torch.onnx.export returns, holding a small real ONNX model (0.2 MiB of weights):
    the exporter's half minute is not what these tests are about."""

    def __init__(self) -> None:
        import numpy as np
        import onnx
        from onnx import helper, numpy_helper

        weight = numpy_helper.from_array(np.zeros((256, 200), np.float32), "w")
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["images", "w"], ["logits"])],
            "g",
            [helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, [1, 256])],
            [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [1, 200])],
            [weight],
        )
        self.model_proto = helper.make_model(graph)


def test_export_onnx_onto_a_full_disk_or_a_folder_is_one_line_naming_the_output(
    weights, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: _Program())
    with tmpfs(tmp_path / "disk", "64k") as disk:
        out = disk / "model.onnx"
        assert main(["export", "--checkpoint", str(weights), "--out", str(out)]) == 2
        assert re.fullmatch(
            rf"error: cannot write {re.escape(str(out))}: No space left on device \(200\.\d KiB "
            r"needed, 64\.0 KiB free\)\n",
            one_line_error(capsys),
        )
        assert list(disk.iterdir()) == []
    folder = tmp_path / "empty"
    folder.mkdir()
    assert main(["export", "--checkpoint", str(weights), "--out", str(folder)]) == 2
    assert one_line_error(capsys) == f"error: cannot write {folder}: Is a directory\n"  # before:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "empty"]  # .empty.PID.tmp


def test_pretrained_weights_from_an_unreachable_hub_fail_at_once_naming_the_setting(monkeypatch):
    import huggingface_hub.constants as hub

    from maxvit.models.convert import load_pretrained

    nowhere = "http://127.0.0.1:9"  # the discard port: connection refused at once
    monkeypatch.setattr(hub, "ENDPOINT", nowhere)
    monkeypatch.setattr(
        hub, "HUGGINGFACE_CO_URL_TEMPLATE", nowhere + "/{repo_id}/resolve/{revision}/{filename}"
    )
    model = create_model("maxvit_nano", num_classes=3)
    start = time.monotonic()
    with pytest.raises(UserError) as info:
        load_pretrained(model, "maxvit_nano", "hf-hub:timm/maxvit_nano_unreachable")
    assert time.monotonic() - start < 5  # before: 23 s of retries
    message = str(info.value)
    assert message.startswith("cannot download hf-hub:timm/maxvit_nano_unreachable (")
    assert message.endswith(
        "download model.safetensors of timm/maxvit_nano_unreachable where there is a network and "
        "pass its path (--set pretrained=PATH)"
    )
    assert "\n" not in message


@pytest.mark.slow  # a training run
def test_train_onto_a_full_disk_is_one_line(synth_data, tmp_path, capsys):
    with tmpfs(tmp_path / "disk", "5m") as disk:  # config.yaml fits; 10 MiB of weights do not
        run = disk / "run"
        args = ["train", "--preset", "smoke", "--data", str(synth_data), "--out", str(run)]
        assert main([*args, "--set", "epochs=1", "--set", "steps_per_epoch=2"]) == 2
        err = capsys.readouterr().err.splitlines()
        assert re.fullmatch(
            rf"error: cannot write checkpoint {re.escape(str(run))}/checkpoints/\w+\.safetensors at "
            r"step 2: No space left on device \([\d.]+ MiB needed, [\d.]+ MiB free\); the "
            "previous checkpoint files are intact",
            err[-1],
        ), err[-1]
        assert not any("Traceback" in line for line in err)


def test_a_run_folder_in_use_is_refused_and_left_untouched(synth_data, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "--preset", "smoke", "--data", str(synth_data), "--out", str(run)]
    with holding(run, 60) as pid:
        assert main([*args, "--set", "epochs=1", "--set", "steps_per_epoch=1"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"error: {run} is in use by PID {pid}; wait for it to finish or choose another folder"
    )
    assert not run.exists()  # nothing written into the folder another process holds

"""Checkpoint files: atomic writes, safe loads, what --checkpoint accepts."""

from __future__ import annotations

import errno
import pickle
import re

import pytest
import torch
from torch import nn

from maxvit.errors import UserError
from maxvit.train import checkpoint as ckpt
from tests.faults import tmpfs

META = {"model": "maxvit_nano", "img_size": 32, "class_names": ["a", "b"], "step": 1, "epoch": 0}


def _full_disk_after(nbytes: int):
    """A stand-in for torch.save that writes `nbytes` of the file, then fails with ENOSPC."""

    def save(obj, f, *args, **kwargs):
        f.write(b"\0" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


def test_full_disk_mid_save_keeps_the_previous_state(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    ckpt.save_state(path, {"progress": {"step": 1}, "w": torch.ones(3)})
    monkeypatch.setattr(torch, "save", _full_disk_after(10))
    with pytest.raises(OSError) as info:
        ckpt.save_state(path, {"progress": {"step": 2}, "w": torch.zeros(3)})
    assert info.value.errno == errno.ENOSPC
    assert str(info.value).startswith(f"cannot write {path}: No space left on device (")
    monkeypatch.undo()
    state = ckpt.load_state(path)
    assert state["progress"]["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary left


def test_weights_round_trip_with_metadata(tmp_path):
    weights = {"w": torch.arange(6.0).view(2, 3).t(), "b": torch.ones(2)}  # non-contiguous ok
    ckpt.save_weights(tmp_path / "x.safetensors", weights, META)
    tensors, info = ckpt.read_weights(tmp_path / "x.safetensors")
    assert torch.equal(tensors["w"], weights["w"]) and torch.equal(tensors["b"], weights["b"])
    assert (info.model, info.img_size, info.class_names, info.step) == (
        "maxvit_nano",
        32,
        ["a", "b"],
        1,
    )


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_loading_never_unpickles_arbitrary_objects(tmp_path):
    path = tmp_path / "last.pt"
    with open(path, "wb") as f:
        pickle.dump({"x": _Evil()}, f, protocol=2)
    with pytest.raises(UserError, match="refused to load training state") as info:
        ckpt.load_state(path)
    assert "weights_only=False" not in str(info.value)


def test_checkpoint_argument_forms(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match="no checkpoints"):
        ckpt.resolve_checkpoint(run)
    for name in ("last", "best"):
        ckpt.save_weights(run / "checkpoints" / f"{name}.safetensors", {"w": torch.ones(1)}, META)
    assert ckpt.resolve_checkpoint(run).name == "best.safetensors"
    assert ckpt.resolve_checkpoint(run / "checkpoints" / "last.pt").name == "last.safetensors"
    assert (
        ckpt.resolve_checkpoint(run / "checkpoints" / "last.safetensors").name == "last.safetensors"
    )
    (run / "checkpoints" / "best.safetensors").unlink()
    assert ckpt.resolve_checkpoint(run).name == "last.safetensors"  # before the first epoch ends
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(UserError, match="expected a run folder"):
        ckpt.resolve_checkpoint(tmp_path / "model.bin")
    for missing in ("missing.safetensors", "missing.pt", "runs/nosuch"):
        with pytest.raises(UserError) as info:
            ckpt.resolve_checkpoint(tmp_path / missing)
        assert (
            str(info.value)
            == f"checkpoint {tmp_path / missing} is missing (no such file or folder)"
        )


def test_foreign_safetensors_is_rejected(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.ones(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UserError, match="not a maxvit training checkpoint"):
        ckpt.read_weights(tmp_path / "other.safetensors")


def _save(folder, step: int) -> None:
    """A checkpoint of a 0.6 MiB model with AdamW: 3.1 MiB in best, last and last.pt."""
    torch.manual_seed(step)
    model = nn.Linear(400, 400)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 400)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    ckpt.save_checkpoint(
        folder, "last", model=model, ema=None, optimizer=optimizer, scheduler=scheduler,
        scaler=None, progress={"step": step, "epoch": 0}, meta=META, best=True,
    )  # fmt: skip


@pytest.mark.parametrize(
    "size, fails_at", [("3500k", "best.safetensors"), ("4m", "last.pt")]
)  # safetensors' own error; torch.save's "unexpected pos"
def test_a_real_full_disk_is_one_line_and_keeps_the_last_good_checkpoint(tmp_path, size, fails_at):
    with tmpfs(tmp_path / "disk", size) as disk:
        _save(disk, 1)
        with pytest.raises(UserError) as info:
            _save(disk, 2)
        pattern = (
            f"cannot write checkpoint {re.escape(str(disk / fails_at))} at step 2: No space "
            r"left on device \([\d.]+ [KM]iB needed, [\d.]+ [KM]iB free\); the previous "
            "checkpoint files are intact"
        )
        assert re.fullmatch(pattern, str(info.value)), str(info.value)
        assert sorted(p.name for p in disk.iterdir()) == [
            "best.safetensors", "last.pt", "last.safetensors",
        ]  # fmt: skip
        assert ckpt.load_state(disk / "last.pt")["progress"]["step"] == 1
        _, best = ckpt.read_weights(disk / "best.safetensors")
        assert best.step == (1 if fails_at == "best.safetensors" else 2)

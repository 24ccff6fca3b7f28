"""Checkpoints: inference weights as safetensors, the training state as a tensors-only ``.pt``.

A checkpoint ``NAME`` in ``RUN/checkpoints/`` is two files:

* ``NAME.safetensors``: the weights to evaluate and deploy (the EMA weights when EMA is on),
  with string metadata that rebuilds the model: model name, input size, class names, step.
* ``NAME.pt`` (``last`` only): everything `--resume` needs, self-contained: raw model weights,
  optimizer, LR scheduler, EMA, data position, running metrics. It holds only tensors and
  primitive containers and is read with ``torch.load(weights_only=True)``, so loading never
  unpickles arbitrary objects.

Every file is written to a temporary name in the same folder, flushed to disk and renamed over
the old one, so a crash or a full disk mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from maxvit.errors import UserError
from maxvit.files import atomic_write

FORMAT = "maxvit-checkpoint-1"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a weights file says about the model it holds."""

    path: Path  # the .safetensors file
    model: str  # create_model name
    img_size: int  # input side the model was trained and is evaluated at
    class_names: list[str]  # index -> human-readable class name
    eval_crop: float  # centre-crop fraction of its evaluation transform (1.0: none)
    step: int  # optimizer steps done when saved
    epoch: int  # epochs completed when saved


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write a state dict (copied to CPU, contiguous, unshared) and its metadata as safetensors."""
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()}
    meta = {"format": FORMAT} | {
        k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()
    }
    atomic_write(path, lambda tmp: safetensors.torch.save_file(tensors, str(tmp), metadata=meta))


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the training state (tensors and primitive containers only) with torch.save."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict[str, Any]:
    """Read a training state safely (``weights_only=True``: tensors and primitives only)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # corrupt file, foreign pickle, ...
        raise UserError(f"cannot read training state {path}: {exc}") from None


def resolve_checkpoint(path: str | Path) -> Path:
    """The weights file a ``--checkpoint`` argument means.

    A run folder means its best checkpoint (``checkpoints/best.safetensors``, falling back to
    ``last`` for a run that has not finished an epoch); a ``.pt`` means its ``.safetensors``
    sibling; a ``.safetensors`` file means itself.
    """
    p = Path(path)
    if p.is_dir():
        for name in ("best", "last"):
            candidate = p / "checkpoints" / f"{name}.safetensors"
            if candidate.is_file():
                return candidate
        raise UserError(f"{p} holds no checkpoints/best.safetensors or last.safetensors")
    if p.suffix == ".pt":
        p = p.with_suffix(".safetensors")
    if p.suffix != ".safetensors":
        raise UserError(f"{path}: expected a run folder, a .safetensors or a .pt checkpoint")
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p}")
    return p


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Weights and metadata of a checkpoint (run folder, .safetensors or .pt; see above)."""
    file = resolve_checkpoint(path)
    try:
        with safetensors.safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open API)
    except safetensors.SafetensorError as exc:
        raise UserError(f"cannot read {file}: {exc}") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{file} is not a maxvit training checkpoint (no '{FORMAT}' metadata)")
    info = CheckpointInfo(
        path=file,
        model=meta["model"],
        img_size=int(meta["img_size"]),
        class_names=json.loads(meta["class_names"]),
        eval_crop=float(meta.get("eval_crop", 1.0)),  # absent from older checkpoints
        step=int(meta["step"]),
        epoch=int(meta["epoch"]),
    )
    return tensors, info


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the model of a checkpoint, load its weights, move it to `device`, eval mode."""
    from maxvit.models import create_model

    tensors, info = read_weights(path)
    model = create_model(info.model, num_classes=len(info.class_names), img_size=info.img_size)
    model.load_state_dict(tensors)
    return model.to(device).eval(), info

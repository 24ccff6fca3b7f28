"""Checkpoints: inference weights as safetensors, the training state as a tensors-only ``.pt``.

A checkpoint ``NAME`` in ``RUN/checkpoints/`` is two files:

* ``NAME.safetensors``: the weights to evaluate and deploy (the EMA weights when EMA is on),
  with string metadata that rebuilds the model: model name, input size, class names, step.
* ``NAME.pt`` (``last`` only): everything `--resume` needs, self-contained: raw model weights,
  optimizer, LR scheduler, EMA, data position, running metrics. It holds only tensors and
  primitive containers and is read with ``torch.load(weights_only=True)``, so loading never
  unpickles arbitrary objects.

Every file is written to a temporary name in the same folder, flushed to disk and renamed over
the old one (`maxvit.files.atomic_write`), so a crash or a full disk mid-save leaves the
previous checkpoint intact, and a failed save is one line naming the file and the space needed.
"""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from maxvit.errors import UserError
from maxvit.files import WriteError, atomic_write, disk_full

FORMAT = "maxvit-checkpoint-1"


@dataclass(frozen=True)
class CheckpointInfo:
    """What a weights file says about the model it holds."""

    path: Path  # the .safetensors file
    model: str  # create_model name
    img_size: int  # input side the model was trained and is evaluated at
    class_names: list[str]  # index -> human-readable class name
    classes: list[str]  # index -> class id (wnid, folder name); the names where not recorded
    eval_crop: float  # centre-crop fraction of its evaluation transform (1.0: none)
    step: int  # optimizer steps done when saved
    epoch: int  # epochs completed when saved


def save_weights(path: Path, state_dict: dict[str, torch.Tensor], metadata: dict[str, Any]) -> None:
    """Write a state dict (copied to CPU, contiguous, unshared) and its metadata as safetensors."""
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()}
    meta = {"format": FORMAT} | {
        k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()
    }
    need = _tensor_bytes(tensors) + len(json.dumps(meta)) + 4096  # + the header's JSON
    atomic_write(
        path, lambda tmp: safetensors.torch.save_file(tensors, str(tmp), metadata=meta), need
    )


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write the training state (tensors and primitive containers only) with torch.save."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # closed here on failure, so its space is freed at once
            try:
                torch.save(state, f)
            except RuntimeError:  # torch.save names no cause: "unexpected pos 576 vs 534"
                if disk_full(tmp):
                    raise OSError(errno.ENOSPC, "No space left on device") from None
                raise

    atomic_write(path, write, _tensor_bytes(state) + (1 << 16))


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a (nested) state: about what saving it takes on disk."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def save_checkpoint(
    folder: Path,
    name: str,
    *,
    model: nn.Module,
    ema: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: Any,
    progress: dict[str, Any],
    meta: dict[str, Any],
    best: bool = False,
) -> None:
    """Write checkpoint `name` of a training run into `folder` (and ``best`` weights).

    The weights file holds the EMA weights when there is an EMA, with `meta` (model, input size,
    classes, ...); the state holds everything `--resume` needs. Order: best weights, `name`
    weights, then the training state, the commit point: an interrupt between them leaves weights
    at most one save ahead of the state, and resuming redoes those steps exactly and writes the
    same files again. A write that fails (disk full, read-only) is one `UserError` line naming
    the file, the step and, on a full disk, the space needed; the previous files are intact.
    """
    weights = (ema.module if ema is not None else model).state_dict()
    meta = {**meta, "step": progress["step"], "epoch": progress["epoch"]}
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "progress": progress,
    }
    if ema is not None:
        state["ema"] = ema.state_dict()
    if scaler is not None:
        state["scaler"] = scaler.state_dict()
    try:
        if best:
            save_weights(folder / "best.safetensors", weights, meta)
        save_weights(folder / f"{name}.safetensors", weights, meta)
        save_state(folder / f"{name}.pt", state)
    except WriteError as exc:
        raise UserError(
            f"cannot write checkpoint {exc.filename} at step {progress['step']}: {exc.reason}; "
            "the previous checkpoint files are intact"
        ) from None


def load_state(path: Path) -> dict[str, Any]:
    """Read a training state safely (``weights_only=True``: tensors and primitives only)."""
    import pickle

    if path.is_file() and path.stat().st_size == 0:
        raise UserError(f"training state {path} is empty (a write was cut short?)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(_missing(path)) from None
    except pickle.UnpicklingError:
        raise UserError(
            f"refused to load training state {path}: it holds Python objects other than "
            "tensors and plain values, which maxvit never writes (not loaded, nothing run)"
        ) from None
    except Exception as exc:  # truncated or not a torch file
        raise UserError(f"cannot read training state {path}: {_first_line(exc)}") from None
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a maxvit training state (not a mapping)")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def resolve_checkpoint(path: str | Path) -> Path:
    """The weights file a ``--checkpoint`` argument means.

    A run folder means its best checkpoint (``checkpoints/best.safetensors``, falling back to
    ``last`` for a run that has not finished an epoch); a ``.pt`` means its ``.safetensors``
    sibling; a ``.safetensors`` file means itself.
    """
    p = Path(path)
    if not p.exists() and not p.with_suffix(".safetensors").is_file():
        raise UserError(_missing(p))
    if p.is_dir():
        for name in ("best", "last"):
            candidate = p / "checkpoints" / f"{name}.safetensors"
            if candidate.is_file():
                return candidate
        raise UserError(f"{p} holds no checkpoints/best.safetensors or last.safetensors")
    if p.suffix == ".pt":
        weights = p.with_suffix(".safetensors")
        if weights.is_file():
            return weights
        raise UserError(f"{p} has no weights file beside it ({weights.name} is missing)")
    if p.suffix != ".safetensors" or not p.is_file():
        raise UserError(f"{path}: expected a run folder, a .safetensors or a .pt checkpoint")
    return p


def _missing(path: Path) -> str:
    return f"checkpoint {path} is missing (no such file or folder)"


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
    try:
        names = json.loads(meta["class_names"])
        classes = json.loads(meta["classes"]) if "classes" in meta else names  # older files
        info = CheckpointInfo(
            path=file,
            model=meta["model"],
            img_size=int(meta["img_size"]),
            class_names=names,
            classes=classes,
            eval_crop=float(meta.get("eval_crop", 1.0)),  # absent from older checkpoints
            step=int(meta["step"]),
            epoch=int(meta["epoch"]),
        )
    except KeyError as exc:
        raise UserError(
            f"{file}: its metadata lacks {exc}; not a complete maxvit checkpoint"
        ) from None
    except (ValueError, TypeError) as exc:
        raise UserError(f"{file}: bad checkpoint metadata ({_first_line(exc)})") from None
    lists = (info.class_names, info.classes)
    if not all(isinstance(x, list) and x and all(isinstance(n, str) for n in x) for x in lists):
        raise UserError(f"{file}: its class lists are not lists of names")
    if (
        len(info.classes) != len(info.class_names)
        or info.img_size < 8
        or not 0 < info.eval_crop <= 1
    ):
        raise UserError(f"{file}: inconsistent checkpoint metadata (classes, img_size, eval_crop)")
    return tensors, info


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the model of a checkpoint, load its weights, move it to `device`, eval mode."""
    from maxvit.models import create_model

    tensors, info = read_weights(path)
    model = create_model(info.model, num_classes=len(info.class_names), img_size=info.img_size)
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or unexpected or wrong:
        problems = [
            f"{len(keys)} {what} (e.g. {keys[0]})"
            for what, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("of another shape", wrong),
            )
            if keys
        ]
        raise UserError(
            f"{info.path}: its tensors do not fit {info.model} with {len(info.class_names)} "
            f"classes at {info.img_size} px: " + ", ".join(problems)
        )
    model.load_state_dict(tensors)
    return model.to(device).eval(), info


def read_resume_state(folder: Path, *, resume: bool, is_main: bool) -> dict[str, Any] | None:
    """The training state in checkpoint folder `folder` to resume from, or None for a new run.

    Without `resume`, a folder that holds a run is refused (nothing is overwritten); with it,
    a folder without a checkpoint starts a new run (said on rank 0). Temporary files left by a
    process killed mid-write are removed first.
    """
    from maxvit.files import remove_stale_temps
    from maxvit.train.log import say

    last = folder / "last.pt"
    run = folder.parent
    if run.exists() and not run.is_dir():
        raise UserError(f"{run} exists and is not a folder; choose another --out")
    if is_main and folder.is_dir():
        for stale in remove_stale_temps(folder):
            say(f"removed {stale}, left by an interrupted checkpoint write")
    if last.exists() and not resume:
        raise UserError(
            f"{run} already holds a run; pass --resume to continue it or choose another --out"
        )
    if not resume:
        return None
    if not last.exists():
        if is_main:
            say(f"no checkpoint in {folder}; starting a new run")
        return None
    state = load_state(last)
    missing = [k for k in ("model", "optimizer", "scheduler", "progress") if k not in state]
    if missing:
        raise UserError(f"{last} is not a maxvit training state (it lacks {missing})")
    return state


def restore(
    state: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
    ema: Any, scaler: Any,
) -> dict[str, Any]:  # fmt: skip
    """Load a training state (`read_resume_state`) into the run's parts; returns its progress."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    return state["progress"]

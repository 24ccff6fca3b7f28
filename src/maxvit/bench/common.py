"""Pieces shared by the benchmarks: model names, device set-up, timing, memory, output files.

Model names accepted everywhere in ``maxvit bench``:

* a registry name (``maxvit_seed``, ``vit_base_16``, ... : ``maxvit.models.list_models()``);
* ``timm:<name>``: any timm model, random weights (``img_size`` is passed when the model is
  built for a fixed input size, i.e. timm's ``fixed_input_size``);
* ``tv:<name>``: any torchvision classification model, random weights (MaxViT gets
  ``input_size`` and ViT ``image_size``; convolutional models take any size). Stochastic
  depth is switched off, as in every other model built here, so all do the same work.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from maxvit import files
from maxvit.device import sync
from maxvit.errors import UserError
from maxvit.models.variants import NUM_CLASSES

# Tiny ImageNet's class count: the head size of every benchmarked model.


def check_model_name(name: str) -> None:
    """Raise ``UserError`` unless ``name`` can be built by :func:`build_model`."""
    if name.startswith("timm:"):
        import timm

        if not timm.is_model(name[5:]):
            raise UserError(f"unknown timm model {name[5:]!r} (see timm.list_models())")
    elif name.startswith("tv:"):
        import torchvision

        if name[3:] not in torchvision.models.list_models(module=torchvision.models):
            raise UserError(
                f"unknown torchvision model {name[3:]!r} "
                "(see torchvision.models.list_models(module=torchvision.models))"
            )
    else:
        from maxvit.models import list_models

        if name not in list_models():
            raise UserError(
                f"unknown model {name!r}; choose from: {', '.join(list_models())}, "
                "timm:<name> or tv:<name>"
            )


def build_model(name: str, img_size: int, num_classes: int = NUM_CLASSES) -> nn.Module:
    """Build ``name`` (registry, ``timm:`` or ``tv:``) with random weights for ``img_size`` input."""
    check_model_name(name)
    if name.startswith("timm:"):
        import timm

        base = name[5:]
        cfg = timm.models.get_pretrained_cfg(base)
        kwargs: dict[str, Any] = {}
        if cfg is not None and cfg.fixed_input_size:
            kwargs["img_size"] = img_size
        return timm.create_model(base, pretrained=False, num_classes=num_classes, **kwargs)
    if name.startswith("tv:"):
        import torchvision

        base = name[3:]
        kwargs = {}
        if base.startswith("maxvit"):
            kwargs["input_size"] = (img_size, img_size)
        elif base.startswith("vit_"):
            kwargs["image_size"] = img_size
        model = torchvision.models.get_model(base, weights=None, num_classes=num_classes, **kwargs)
        # torchvision's maxvit_t hard-codes stochastic depth 0.2; every other model here is
        # timed without it, so switch it off for equal work per training step.
        for module in model.modules():
            if isinstance(module, torchvision.ops.StochasticDepth):
                module.p = 0.0
        return model
    from maxvit.models import create_model

    return create_model(name, num_classes=num_classes, img_size=img_size)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is a ``UserError``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    return torch.device(name)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, device work included."""
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else 0.5 * (ordered[mid - 1] + ordered[mid])


def _proc_status_mb(field: str) -> float | None:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in MiB (None where there is no /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: ``5`` into /proc/self/clear_refs); False if unable."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def current_rss_mb() -> float:
    """This process's resident set size now, MiB (falls back to the peak without /proc)."""
    rss = _proc_status_mb("VmRSS")
    return peak_rss_mb() if rss is None else rss


def peak_rss_mb() -> float:
    """This process's peak resident set size (since the last reset), MiB."""
    hwm = _proc_status_mb("VmHWM")
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)  # macOS: bytes, Linux: KiB


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and hardware, stored with every result file."""
    import platform

    import timm
    import torchvision

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "precision": "bf16 autocast" if device.type == "cuda" else "fp32",
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_json(path, data, indent=2)


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """A plain fixed-width text table (first column left-aligned, the rest right-aligned)."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


@dataclass(frozen=True)
class RunSettings:
    """How models are placed and run (shared by `bench model` and `bench scaling`)."""

    # Where to run: cpu or cuda.
    device: torch.device
    # Model and input in channels_last memory format.
    channels_last: bool
    # Wrap the model in torch.compile (inductor).
    compile: bool


def prepare(model: nn.Module, settings: RunSettings) -> nn.Module:
    """Move ``model`` to the device and memory format; compile it when asked.

    On CUDA, cuDNN autotuning is switched on (the warm-up rounds absorb its first-call cost).
    """
    if settings.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    model = model.to(settings.device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if settings.compile:
        model = torch.compile(model)
    return model


def make_input(batch: int, img_size: int, settings: RunSettings) -> torch.Tensor:
    x = torch.randn(batch, 3, img_size, img_size, device=settings.device)
    if settings.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def apply_threads(threads: int | None) -> None:
    """``torch.set_num_threads`` when given (None keeps torch's default)."""
    if threads is not None:
        if threads < 1:
            raise UserError("--threads must be at least 1")
        torch.set_num_threads(threads)


@contextlib.contextmanager
def user_errors_for(name: str, img_size: int) -> Iterator[None]:
    """Turn a model's refusal of an input size into a one-line ``UserError``."""
    try:
        yield
    except UserError:
        raise
    except (RuntimeError, ValueError, AssertionError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{name} cannot run at {img_size}x{img_size}: {msg}") from exc

"""Device helpers shared by training, evaluation and benchmarks: precision and memory layout."""

from __future__ import annotations

import contextlib
from typing import TypeVar

import torch

from maxvit.errors import UserError

T = TypeVar("T", torch.Tensor, torch.nn.Module)


PRECISIONS = ("auto", "bf16", "fp16", "fp32")


def resolve_precision(precision: str, device: torch.device) -> str:
    """ "auto" -> bf16 on CUDA devices with native bf16, fp16 on older GPUs (T4, V100: train it
    with a GradScaler), fp32 on the CPU; the other names as they are.

    On CPUs without fast bf16 units bf16 is far slower than fp32 (`maxvit bench kernels --cases
    bf16-matmul`, docs/benchmarks.md), so the CPU stays in fp32 unless asked otherwise.
    """
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """Autocast to the resolved precision on `device` (nothing for fp32)."""
    resolved = resolve_precision(precision, device)
    if resolved == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if resolved == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that wall-clock times are complete."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_model_layout(x: T, device: torch.device) -> T:
    """channels_last (a model or a batch) on CUDA, where it speeds up convolutions. Training
    and evaluation keep the default layout on the CPU, where the small models of the CPU
    presets gained little or lost from it (`maxvit bench model` uses channels_last everywhere,
    --no-channels-last to compare)."""
    return x.to(memory_format=torch.channels_last) if device.type == "cuda" else x

"""Device helpers shared by training, evaluation and benchmarks: autocast and memory layout."""

from __future__ import annotations

import contextlib
from typing import TypeVar

import torch

T = TypeVar("T", torch.Tensor, torch.nn.Module)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA devices with native bf16; fp32 elsewhere.

    On CPUs without fast bf16 units bf16 is far slower than fp32 (`maxvit bench kernels --cases
    bf16-matmul`, docs/benchmarks.md), so the CPU stays in fp32.
    """
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_model_layout(x: T, device: torch.device) -> T:
    """channels_last (a model or a batch) on CUDA, where it speeds up convolutions. Training
    and evaluation keep the default layout on the CPU, where the small models of the CPU
    presets gained little or lost from it (`maxvit bench model` uses channels_last everywhere,
    --no-channels-last to compare)."""
    return x.to(memory_format=torch.channels_last) if device.type == "cuda" else x

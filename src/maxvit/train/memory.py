"""Will a training step fit? An estimate of its peak memory, checked before the first step.

The estimate: the weights, their gradients and AdamW's two moments (4 x the parameter bytes),
plus the activations autograd keeps for the backward pass (counted on a forward pass of
`PROBE_IMAGES` images, scaled to the micro-batch), plus a margin for the allocator, the
backward's own temporaries and the batch in flight (`HEADROOM`); on the CPU, each loader worker
process adds `WORKER_BYTES`. Against `maxvit bench model`'s measured peak (a fresh process per
model, CPU): maxvit_seed at 224 px, batch 8, 3.1 GB estimated for 2.8 GB measured; maxvit_nano
at 64 px, batch 32, 0.37 for 0.29 (`tests/train/test_memory.py` checks the latter).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from maxvit.device import to_model_layout
from maxvit.errors import UserError

PROBE_IMAGES = 2
HEADROOM = 1.1  # activations x this: allocator rounding, backward temporaries, the input batch
WORKER_BYTES = 400 * 2**20  # a CPU loader worker: its interpreter, torch, a few batches
USABLE = 0.9  # the share of the available memory a run may plan to use


@contextlib.contextmanager
def no_side_effects(model: nn.Module) -> Iterator[None]:
    """Run `model` inside and leave it as it was: buffers (BatchNorm statistics), gradients and
    the random state (stochastic depth) restored."""
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    device = next(model.parameters()).device
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
    finally:
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for buffer, saved in buffers:
                buffer.copy_(saved)


def activation_bytes_per_image(model: nn.Module, img_size: int) -> float:
    """Bytes autograd keeps per image for the backward pass (distinct storages, counted once)."""
    device = next(model.parameters()).device
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    x = torch.zeros(PROBE_IMAGES, 3, img_size, img_size, device=device)
    with no_side_effects(model), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(to_model_layout(x, device))
    return sum(storages.values()) / PROBE_IMAGES


@dataclass(frozen=True)
class StepMemory:
    """A training step's peak memory: `fixed` bytes, plus `per_image` for each image of the
    micro-batch (see the module's docstring)."""

    fixed: float
    per_image: float

    def bytes(self, micro_batch: int) -> float:
        return self.fixed + self.per_image * micro_batch


def step_memory(model: nn.Module, img_size: int, workers: int) -> StepMemory:
    """The estimate for `model` at `img_size`, with `workers` CPU loader processes."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    device = next(model.parameters()).device
    processes = workers * WORKER_BYTES if device.type == "cpu" else 0
    per_image = activation_bytes_per_image(model, img_size) * HEADROOM
    return StepMemory(fixed=4 * params + processes, per_image=per_image)


def available_bytes(device: torch.device) -> float:
    """Free memory of the device: CUDA's free bytes, or Linux's MemAvailable (inf if unknown)."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("inf")


def check_fits(model: nn.Module, img_size: int, micro_batch: int, workers: int, name: str) -> None:
    """Stop with the estimate and a micro-batch that fits when a step would not fit in memory."""
    device = next(model.parameters()).device
    memory = step_memory(model, img_size, workers)
    need, have = memory.bytes(micro_batch), available_bytes(device) * USABLE
    if need <= have:
        return
    fits = int((have - memory.fixed) // memory.per_image) if have > memory.fixed else 0
    advice = (
        f"a micro-batch of about {fits} fits: lower batch_size or raise accum_steps "
        "(--set accum_steps=N keeps the batch)"
        if fits >= 1
        else "not even one image fits: choose a smaller model or img_size"
    )
    raise UserError(
        f"a training step of {name} at {img_size}px with a micro-batch of {micro_batch} needs "
        f"about {need / 2**30:.1f} GiB, and {have / 2**30:.1f} GiB of {device.type} memory is "
        f"free to use; {advice}"
    )

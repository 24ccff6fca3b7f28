"""One model's benchmark workload: a training step and an inference batch on fixed random data,
the fused inference copy it times for this project's MaxViT, and the frozen compiled copy
`bench model --compile` times beside it."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from maxvit.bench.common import NUM_CLASSES, RunSettings, make_input
from maxvit.device import autocast


class Workload:
    """A model with its AdamW optimizer and one fixed batch of random images and labels.

    ``train_step`` is what a training loop does per batch (forward, cross-entropy, backward,
    AdamW step); ``infer_step`` is one forward pass under ``inference_mode``, of
    ``infer_model`` when given (an inference-only copy, e.g. `fuse_for_inference`; built once:
    its speed does not depend on the weight values). ``frozen_step`` runs ``frozen_model``
    (see `frozen_copy`) under ``no_grad``, which inductor's freezing needs. On CUDA all run
    under bf16 autocast.
    Random data is enough: no op here has data-dependent cost.
    """

    def __init__(
        self,
        model: nn.Module,
        batch: int,
        img_size: int,
        settings: RunSettings,
        infer_model: nn.Module | None = None,
        frozen_model: nn.Module | None = None,
    ) -> None:
        self.model = model
        self.infer_model = infer_model if infer_model is not None else model
        self.frozen_model = frozen_model
        self.settings = settings
        self.x = make_input(batch, img_size, settings)
        self.y = torch.randint(0, NUM_CLASSES, (batch,), device=settings.device)
        fused = settings.device.type in ("cuda", "cpu") or None  # as `maxvit train` runs it
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=1e-4, weight_decay=0.05, fused=fused
        )

    def train_step(self) -> None:
        self.model.train()
        with autocast(self.settings.device):
            logits = self.model(self.x)
        loss = F.cross_entropy(logits.float(), self.y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def infer_step(self) -> None:
        self.infer_model.eval()
        with torch.inference_mode(), autocast(self.settings.device):
            self.infer_model(self.x)

    def frozen_step(self) -> None:
        assert self.frozen_model is not None, "built without a frozen copy"
        with torch.no_grad(), autocast(self.settings.device):
            self.frozen_model(self.x)


def fused_copy(model: nn.Module, settings: RunSettings) -> nn.Module | None:
    """The prepared (device, memory format) `fuse_for_inference` copy of this project's
    MaxViT; None for any other model."""
    from maxvit.bench.common import prepare
    from maxvit.models.fuse import fuse_for_inference
    from maxvit.models.model import MaxVit

    return prepare(fuse_for_inference(model), settings) if isinstance(model, MaxVit) else None


def frozen_copy(
    model: nn.Module, settings: RunSettings, img_size: int, precision: str = "fp32"
) -> nn.Module:
    """An eval-mode copy compiled by inductor with freezing on (`maxvit.models.runtime.Frozen`):
    weights become constants that inductor folds (batch norm into convolutions, weight layouts
    prepacked), as a deployment compile does; at `precision` (fp32, bf16 under autocast, or
    int8: PT2E quantized, calibrated on random batches, which time the same as real ones).
    Compiled lazily, on its first call (a warm-up round)."""
    from maxvit.models.runtime import inference_model, int8_program

    frozen = copy.deepcopy(model).eval().to(settings.device)
    if settings.channels_last:
        frozen = frozen.to(memory_format=torch.channels_last)

    def int8() -> nn.Module:  # random calibration batches, made only for int8
        calibration = [make_input(8, img_size, settings) for _ in range(2)]
        return int8_program(frozen, calibration).module()

    return inference_model(frozen, "compiled", precision, int8=int8)

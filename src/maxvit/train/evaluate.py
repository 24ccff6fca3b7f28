"""Evaluation: top-1 / top-5 / loss of a model on a split of any data source, single or DDP."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from maxvit.data import DataSource, EvalTransform, build_eval_loader, open_data
from maxvit.device import autocast, to_model_layout
from maxvit.errors import UserError
from maxvit.train import distributed
from maxvit.train.config import TTA
from maxvit.train.inference import load_for_inference


@torch.no_grad()
def evaluate(
    model: nn.Module,
    source: DataSource,
    split: str = "val",
    *,
    img_size: int,
    crop: float = 1.0,
    batch_size: int = 128,
    num_workers: int = 0,
    device: torch.device | str = "cpu",
    ctx: distributed.DistContext | None = None,
    precision: str = "auto",
    tta: str = "none",
    bad_samples: int | str = "1%",
    every: int = 1,
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (percent) and mean cross-entropy of `model` on a split.

    No augmentation: images are resized to img_size / crop, centre-cropped to img_size and
    normalised (crop 1.0 is the recorded test transform), so ``split="train"`` gives the clean
    train accuracy. With ``tta="flip"`` the prediction is the mean of the softmax of the image
    and of its horizontal mirror. ``every`` > 1 evaluates every `every`-th sample only (a fixed
    subset spread over the classes). The sums stay on the device and are read once, at the end
    (summed over the ranks under DDP, so every rank gets the full-set result).
    """
    if tta not in TTA:
        raise UserError(f"unknown test-time augmentation {tta!r}; choose from {', '.join(TTA)}")
    device = torch.device(device)
    rank, world = (ctx.rank, ctx.world_size) if ctx else (0, 1)
    loader = build_eval_loader(
        source,
        split,
        batch_size=batch_size,
        num_workers=num_workers,
        rank=rank,
        world_size=world,
        img_size=img_size,
        crop=crop,
        bad_samples=bad_samples,
        every=every,
    )
    transform = EvalTransform(img_size, loader.device_crop).to(device)
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, top-1 hits, top-5 hits
    n = 0  # images (known on the host)
    for images, labels in loader:
        if not len(labels):
            continue
        if labels.min() < 0:  # a host tensor: no device sync
            raise UserError(f"the {split} split has no labels; evaluate on val or train")
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        x = to_model_layout(transform(images), device)
        with autocast(device, precision):
            logits = model(x).float()
            if tta == "flip":  # log of the mean of the two softmaxes
                mirrored = model(x.flip(-1)).float()
                both = torch.stack([logits.log_softmax(1), mirrored.log_softmax(1)])
                logits = torch.logsumexp(both, 0) - math.log(2)
        loss = nn.functional.cross_entropy(logits, labels, reduction="sum")
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == labels[:, None]
        sums += torch.stack([loss, hits[:, 0].sum(), hits.any(1).sum()]).double()
        n += labels.numel()
    model.train(was_training)
    totals = torch.cat([sums, torch.tensor([float(n)], dtype=torch.float64, device=device)])
    loss_sum, top1, top5, n = ctx.sum_tensor(totals) if ctx is not None else totals.tolist()
    if n == 0:
        raise UserError(f"the {split} split is empty")
    return {"top1": 100 * top1 / n, "top5": 100 * top5 / n, "loss": loss_sum / n, "n": int(n)}


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    split: str = "val",
    *,
    batch_size: int = 128,
    num_workers: int = 0,
    crop: float | None = None,
    precision: str = "auto",
    tta: str = "none",
    runtime: str = "auto",
) -> dict[str, Any]:
    """Evaluate a checkpoint (run folder, .safetensors or .pt) on a split of `data`, run at
    `runtime` and `precision` (`maxvit.models.runtime`; int8 calibrates on `data`'s train
    split once and caches the result beside the checkpoint).

    `crop` defaults to the evaluation crop the checkpoint was trained with.
    """
    ctx = distributed.setup()
    try:
        model, info, (runtime, precision) = load_for_inference(
            checkpoint, runtime, precision, device=ctx.device, data=data
        )
        if ctx.local_rank == 0:  # prepares Tiny ImageNet archives once per node
            source = open_data(data)
        ctx.barrier()
        if ctx.local_rank != 0:
            source = open_data(data)
        if list(source.class_names) != list(info.class_names):
            raise UserError(
                f"{info.path} was trained on {len(info.class_names)} classes that are not those "
                f"of {source.describe()} (names or order differ)"
            )
        model = to_model_layout(model, ctx.device)
        crop = info.eval_crop if crop is None else crop
        result = evaluate(
            model,
            source,
            split,
            img_size=info.img_size,
            crop=crop,
            batch_size=batch_size,
            num_workers=num_workers,
            device=ctx.device,
            ctx=ctx,
            precision="fp32",  # the model runs at its precision itself
            tta=tta,
        )
        return {
            "checkpoint": str(info.path),
            "model": info.model,
            "split": split,
            "crop": crop,
            "tta": tta,
            "runtime": runtime,
            "precision": precision,
            **result,
        }
    finally:
        distributed.cleanup(ctx)

"""Evaluation: top-1 / top-5 / loss of a model on a split of any data source, single or DDP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from maxvit.data import DataSource, EvalTransform, build_eval_loader, open_data
from maxvit.device import autocast, to_model_layout
from maxvit.errors import UserError
from maxvit.train import checkpoint as ckpt
from maxvit.train import distributed


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
) -> dict[str, float]:
    """Top-1 / top-5 accuracy (percent) and mean cross-entropy of `model` on a split.

    No augmentation: images are resized to img_size / crop, centre-cropped to img_size and
    normalised (crop 1.0 is the recorded test transform), so ``split="train"`` gives the clean
    train accuracy. Under DDP each rank evaluates its shard and the sums are combined, so every
    rank gets the full-set result.
    """
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
    )
    transform = EvalTransform(img_size, loader.device_crop).to(device)
    was_training = model.training
    model.eval()
    loss_sum = top1 = top5 = n = 0.0
    for images, labels in loader:
        if not len(labels):
            continue
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        if labels.min() < 0:
            raise UserError(f"the {split} split has no labels; evaluate on val or train")
        x = to_model_layout(transform(images), device)
        with autocast(device, precision):
            logits = model(x).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = top == labels[:, None]
        top1 += hits[:, 0].sum().item()
        top5 += hits.any(dim=1).sum().item()
        n += labels.numel()
    model.train(was_training)
    if ctx is not None:
        loss_sum, top1, top5, n = ctx.sum([loss_sum, top1, top5, n])
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
) -> dict[str, Any]:
    """Evaluate a checkpoint (run folder, .safetensors or .pt) on a split of `data`.

    `crop` defaults to the evaluation crop the checkpoint was trained with.
    """
    ctx = distributed.setup()
    try:
        model, info = ckpt.load_model(checkpoint, ctx.device)
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
        from maxvit.models.fuse import inference_copy

        model = to_model_layout(inference_copy(model), ctx.device)
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
            precision=precision,
        )
        return {
            "checkpoint": str(info.path),
            "model": info.model,
            "split": split,
            "crop": crop,
            **result,
        }
    finally:
        distributed.cleanup(ctx)

"""Classify image files with a trained checkpoint (class names come from the checkpoint)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from maxvit.errors import UserError
from maxvit.models.fuse import inference_copy
from maxvit.train.checkpoint import load_model


def load_image(path: str | Path) -> torch.Tensor:
    """An image file as uint8 (3, H, W) RGB (grayscale, CMYK, palette converted)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


@torch.no_grad()
def predict(checkpoint: str | Path, images: list[str | Path], top_k: int = 5) -> list[dict]:
    """Top-k (class name, probability) for each image, with the checkpoint's eval transform."""
    from maxvit.data import EvalTransform

    model, info = load_model(checkpoint)
    model = inference_copy(model)
    transform = EvalTransform(info.img_size)
    results = []
    for path in images:
        x = transform(load_image(path).unsqueeze(0))
        probs = torch.softmax(model(x).float(), dim=-1)[0]
        values, indices = probs.topk(min(top_k, probs.numel()))
        top = [
            {"class": info.class_names[i], "probability": float(v)}
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]
        results.append({"image": str(path), "top": top})
    return results

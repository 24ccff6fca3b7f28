"""Classify image files with a trained checkpoint (class names come from the checkpoint)."""

from __future__ import annotations

from pathlib import Path

import torch

from maxvit.train.inference import load_for_inference


@torch.no_grad()
def predict(
    checkpoint: str | Path,
    images: list[str | Path],
    top_k: int = 5,
    *,
    runtime: str = "auto",
    precision: str = "auto",
    data: str | Path | None = None,
) -> list[dict]:
    """Per image, in order: ``{"image", "top"}``, its top-k (class name, class id such as the
    wnid, probability) with the checkpoint's eval transform; or ``{"image", "error"}``, one line
    saying why it cannot be classified (undecodable, or not a JPEG, PNG or WebP file, as class
    folders require: `maxvit.data.images.unsupported_type`).

    Images of any size and mode are decoded by `maxvit.data.images` and given the evaluation
    geometry (resize to img_size / eval_crop, centre crop img_size). A bad checkpoint is a
    `UserError`. The model runs at `runtime` and `precision` (`maxvit.models.runtime`; int8
    calibrates on the train split of `data` the first time, `maxvit.train.inference`).
    """
    from maxvit.data import EvalTransform
    from maxvit.data.crop import decode_crop, eval_box, stack_images
    from maxvit.data.images import ImageError, unsupported_type

    model, info, _ = load_for_inference(checkpoint, runtime, precision, data=data)
    transform = EvalTransform(info.img_size, crop=None)
    box = eval_box(info.eval_crop, info.img_size)
    results: list[dict] = []
    for path in images:
        if (problem := unsupported_type(path)) is not None:
            results.append({"image": str(path), "error": f"{path}: {problem}"})
            continue
        try:
            pixels = decode_crop(str(path), str(path), info.img_size, box)
        except ImageError as exc:
            results.append({"image": str(path), "error": str(exc)})
            continue
        batch = transform(stack_images([pixels], info.img_size))
        probs = torch.softmax(model(batch).float(), -1)[0]
        values, indices = probs.topk(min(top_k, probs.numel()))
        top = [
            {"class": info.class_names[i], "id": info.classes[i], "probability": float(v)}
            for v, i in zip(values.tolist(), indices.tolist(), strict=True)
        ]
        results.append({"image": str(path), "top": top})
    return results

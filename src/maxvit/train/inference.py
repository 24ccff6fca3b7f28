"""A checkpoint's model ready to run at a runtime and precision (`maxvit.models.runtime`), with
the int8 calibration done once and cached beside the checkpoint.

The int8 cache is ``NAME.int8.pt2`` next to ``NAME.safetensors``: the quantized program
(``torch.export.save``) with a record of what it was made from (the weights' SHA-256, the
calibration images, the input size and crop). A cache whose record does not match is made
again; it is written atomically, so an interrupted calibration leaves no half file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from maxvit.errors import UserError
from maxvit.files import sha256_file
from maxvit.models import runtime as rt
from maxvit.train.checkpoint import CheckpointInfo, load_model

CALIBRATION_IMAGES = 256  # train images the int8 activation scales are calibrated on


def load_for_inference(
    checkpoint: str | Path,
    runtime: str = "auto",
    precision: str = "auto",
    *,
    device: torch.device | str = "cpu",
    data: str | Path | None = None,
) -> tuple[nn.Module, CheckpointInfo, tuple[str, str]]:
    """The checkpoint's model as `maxvit.models.runtime.inference_model` runs it, its info, and
    the resolved (runtime, precision). int8 takes its calibration images from the train split
    of `data` the first time (then from the cache); without either it is a `UserError`."""
    device = torch.device(device)
    runtime, precision = rt.resolve(runtime, precision, device)
    model, info = load_model(checkpoint, device)
    return (
        rt.inference_model(model, runtime, precision, int8=lambda: int8_model(model, info, data)),
        info,
        (runtime, precision),
    )


def int8_cache(info: CheckpointInfo) -> Path:
    """Where the int8 program of a checkpoint is cached."""
    return info.path.with_name(f"{info.path.stem}.int8.pt2")


def int8_model(model: nn.Module, info: CheckpointInfo, data: str | Path | None) -> nn.Module:
    """The int8 graph module of a checkpoint's model: from the cache when it matches, else
    calibrated on `CALIBRATION_IMAGES` train images of `data` and cached."""
    path = int8_cache(info)
    record = {
        "weights_sha256": sha256_file(info.path),
        "images": CALIBRATION_IMAGES,
        "img_size": info.img_size,
        "crop": info.eval_crop,
    }
    cached = rt.load_program(path) if path.is_file() else None
    if cached is not None and cached[1] == record:
        return cached[0]
    if data is None:
        raise UserError(
            f"--precision int8 calibrates on {CALIBRATION_IMAGES} train images once: give --data "
            f"(the cache {path.name} beside the checkpoint is missing or was made from other "
            "weights)"
        )
    print(f"int8: calibrating on {CALIBRATION_IMAGES} train images of {data} ...", flush=True)
    program = rt.int8_program(model, calibration_batches(data, info))
    rt.save_program(program, path, record)
    print(f"int8: cached {path}", flush=True)
    return program.module()


def calibration_batches(
    data: str | Path, info: CheckpointInfo, batch: int = 32
) -> list[torch.Tensor]:
    """`CALIBRATION_IMAGES` train images of `data`, spread over the classes, with the
    checkpoint's evaluation transform (normalised float NCHW batches)."""
    from maxvit.data import EvalTransform, build_eval_loader, open_data

    source = open_data(data)
    count = source.count("train") or CALIBRATION_IMAGES
    loader = build_eval_loader(
        source,
        "train",
        batch_size=batch,
        num_workers=0,
        img_size=info.img_size,
        crop=info.eval_crop,
        every=max(1, count // CALIBRATION_IMAGES),
    )
    transform = EvalTransform(info.img_size, loader.device_crop)
    batches, seen = [], 0
    for images, _ in loader:
        if seen >= CALIBRATION_IMAGES:
            break
        batches.append(transform(images[: CALIBRATION_IMAGES - seen]))
        seen += len(batches[-1])
    if not batches:
        raise UserError(f"{data} has no train images to calibrate int8 on")
    return batches

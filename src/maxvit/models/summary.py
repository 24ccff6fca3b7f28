"""Keras-style layer table, to compare a model with the recorded `seed_architecture.csv`.

Keras counts BatchNorm's moving mean and variance as (non-trainable) parameters; PyTorch keeps
them as buffers. This table counts them the Keras way, and ignores ``num_batches_tracked``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

from maxvit.models.model import MaxVit


@dataclass(frozen=True)
class Row:
    layer: str  # Keras-style name: the snake-cased type plus a per-type counter
    type: str  # Keras class name (or the MaxViT sub-block name)
    output_shape: str  # H x W x C (or C after pooling), batch omitted
    trainable: int  # parameters with gradients
    non_trainable: int  # BatchNorm running mean + variance

    @property
    def params(self) -> int:
        return self.trainable + self.non_trainable


_NHWC = ("block_attention", "grid_attention")  # attention sub-blocks output (B, H, W, C)


def _counts(module: nn.Module | None) -> tuple[int, int]:
    if module is None:
        return 0, 0
    trainable = sum(p.numel() for p in module.parameters())
    stats = sum(
        b.numel() for n, b in module.named_buffers() if n.endswith(("running_mean", "running_var"))
    )
    return trainable, stats


def _layers(model: nn.Module) -> list[tuple[str, nn.Module | None]]:
    """(Keras type, module) in forward order."""
    if not isinstance(model, MaxVit):  # a baseline: one row per top-level child
        return [(type(m).__name__, m) for m in model.children()]
    keras_type = {nn.Conv2d: "Conv2D", nn.BatchNorm2d: "BatchNormalization"}
    layers: list[tuple[str, nn.Module | None]] = []
    for seq in model.stem.children():
        layers += [(keras_type[type(m)], m) for m in seq.children() if type(m) in keras_type]
    for stage in model.stages:
        for block in stage:
            layers += [
                ("MBConv", block.mbconv),
                ("block_attention", block.block_attn),
                ("grid_attention", block.grid_attn),
            ]
    layers.append(("GlobalAveragePooling2D", None))
    if not isinstance(model.head_norm, nn.Identity):
        layers.append(("LayerNormalization", model.head_norm))
    if not isinstance(model.pre_logits, nn.Identity):
        layers.append(("Dense", model.pre_logits.fc))
    if not isinstance(model.head, nn.Identity):
        layers.append(("Dense", model.head))
    return layers


def _snake(name: str) -> str:
    """Keras' layer naming: MBConv -> mb_conv, GlobalAveragePooling2D -> global_average_pooling2d."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def summarize(model: nn.Module, img_size: int) -> list[Row]:
    """Run one zero image through `model` and return its layer table (input row first).

    The image is made on the model's device: a model on the meta device gives its table
    without computing or allocating anything."""
    layers = _layers(model)
    shapes: dict[int, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, i=i: shapes.__setitem__(i, out.shape))
        for i, (_, m) in enumerate(layers)
        if m is not None
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            model(torch.zeros(1, 3, img_size, img_size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()

    rows = [Row("input_layer", "InputLayer", f"{img_size}x{img_size}x3", 0, 0)]
    seen: dict[str, int] = {}
    for i, (kind, module) in enumerate(layers):
        base = _snake(kind)
        name = base if base not in seen else f"{base}_{seen[base]}"
        seen[base] = seen.get(base, 0) + 1
        if module is None:  # global pooling: the last stage's width
            shape: tuple[int, ...] = (model.num_features,)
        else:
            shape = tuple(shapes[i][1:]) if i in shapes else ()
            if len(shape) == 3 and kind not in _NHWC:
                shape = (shape[1], shape[2], shape[0])  # NCHW -> H, W, C
        rows.append(Row(name, kind, "x".join(map(str, shape)), *_counts(module)))
    return rows


def format_table(rows: list[Row]) -> str:
    """A Keras-like table with totals."""
    header = ("Layer (type)", "Output Shape", "Param #")
    body = [(f"{r.layer} ({r.type})", r.output_shape, f"{r.params:,}") for r in rows]
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(3)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [line.format(*header), "=" * (sum(widths) + 4)]
    out += [line.format(*b) for b in body]
    trainable = sum(r.trainable for r in rows)
    frozen = sum(r.non_trainable for r in rows)
    out += [
        "=" * (sum(widths) + 4),
        f"Total params: {trainable + frozen:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {frozen:,}",
    ]
    return "\n".join(out)


def format_csv(rows: list[Row]) -> str:
    """`layer,type,output_shape_hwc,params` rows, comparable to seed_architecture.csv."""
    lines = ["layer,type,output_shape_hwc,params"]
    lines += [f"{r.layer},{r.type},{r.output_shape},{r.params}" for r in rows]
    return "\n".join(lines)

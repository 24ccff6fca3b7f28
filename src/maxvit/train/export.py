"""Export a checkpoint's model to ONNX (normalised float images in, logits out).

The graph takes ``images``: float (batch, 3, S, S) normalised with ImageNet mean/std (what
`maxvit.data.EvalTransform` produces) and returns ``logits`` (batch, classes); the batch size
is dynamic. It is exported with torch.onnx's dynamo exporter (needs the ``export`` extra:
onnx, onnxscript; onnxruntime to run it).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from maxvit.errors import UserError
from maxvit.files import atomic_write, check_writable
from maxvit.train.checkpoint import load_model

OPSET = 18


def export_onnx(checkpoint: str | Path, out: str | Path | None = None) -> Path:
    """Write the ONNX model (default: beside the weights, ``<name>.onnx``) and return its path."""
    try:
        import onnx
        import onnxscript  # noqa: F401  (the dynamo exporter needs it)
    except ImportError:
        raise UserError("ONNX export needs the extra: pip install 'maxvit[export]'") from None

    model, info = load_model(checkpoint)
    out = Path(out) if out is not None else info.path.with_suffix(".onnx")
    check_writable(out)  # before the export's half minute, not after
    example = torch.randn(2, 3, info.img_size, info.img_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: batch},),
        opset_version=OPSET,
        verbose=False,
    )
    proto = program.model_proto
    for key, value in {
        "model": info.model,
        "img_size": str(info.img_size),
        "class_names": json.dumps(info.class_names),
    }.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return atomic_write(out, lambda tmp: onnx.save_model(proto, str(tmp)))

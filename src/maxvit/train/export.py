"""Export a checkpoint's model: to ONNX, or as a folder timm loads.

ONNX (`export_onnx`): normalised float images in, logits out. The graph takes ``images``: float (batch, 3, S, S) normalised with ImageNet mean/std (what
`maxvit.data.EvalTransform` produces) and returns ``logits`` (batch, classes); the batch size
is dynamic. It is exported with torch.onnx's dynamo exporter (needs the ``export`` extra:
onnx, onnxscript; onnxruntime to run it).

timm (`export_timm`): ``model.safetensors`` and ``config.json``, written by timm's ``save_for_hf``, for ``timm.create_model("local-dir:FOLDER", pretrained=True)``. A paper variant is
written as timm's own ``maxvit_*_tf_224`` (keys converted, `maxvit.models.convert.to_timm`),
which needs nothing from this project to load; a seed-design model under its name in timm's
registry, which needs ``import maxvit.models.timm_registry`` first.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from maxvit.errors import UserError
from maxvit.files import atomic_write, check_writable, writing
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
    return atomic_write(out, lambda tmp: onnx.save_model(proto, str(tmp)), proto.ByteSize())


def export_pt2(
    checkpoint: str | Path,
    out: str | Path | None = None,
    *,
    precision: str = "auto",
    data: str | Path | None = None,
) -> Path:
    """Write an AOTInductor package of the checkpoint's model (default: beside the weights,
    ``<name>.pt2``) and return its path: the compiled CPU model at `precision` (auto: the
    fastest this machine keeps accuracy at, `maxvit.models.runtime.resolve`; int8 takes its
    calibration from the cache or `data`), weights frozen into it, batch size dynamic.
    ``torch._inductor.aoti_load_package(path)`` runs it with nothing from this project."""
    from maxvit.train.inference import load_for_inference

    model, info, (_, precision) = load_for_inference(checkpoint, "compiled", precision, data=data)
    out = Path(out) if out is not None else info.path.with_suffix(".pt2")
    check_writable(out)
    example = torch.randn(2, 3, info.img_size, info.img_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        exported = torch.export.export(model.eager, (example,), dynamic_shapes=({0: batch},))

    def write(tmp: Path) -> None:
        package = tmp.with_name(tmp.name + ".pt2")  # the compiler wants the suffix
        try:
            torch._inductor.aoti_compile_and_package(
                exported, package_path=str(package), inductor_configs={"freezing": True}
            )
            os.replace(package, tmp)
        finally:
            package.unlink(missing_ok=True)

    return atomic_write(out, write)


def export_timm(checkpoint: str | Path, out: str | Path | None = None) -> Path:
    """Write the checkpoint's MaxViT as a timm model folder (default: beside the weights,
    ``<name>-timm/``) and return its path. Its ``pretrained_cfg`` holds the checkpoint's
    evaluation recipe (input size, crop, bilinear resize, ImageNet mean/std) and class ids."""
    from timm.models import create_model as timm_create_model
    from timm.models import save_for_hf

    import maxvit.models.timm_registry  # noqa: F401  (the seed-design names in timm's registry)
    from maxvit.models.convert import to_timm
    from maxvit.models.variants import VARIANTS

    model, info = load_model(checkpoint)
    if info.model not in VARIANTS:
        raise UserError(
            f"timm export takes the MaxViT variants ({', '.join(VARIANTS)}); {info.model} is "
            "built from timm already: load its weights into that timm model"
        )
    out = Path(out) if out is not None else info.path.with_name(f"{info.path.stem}-timm")
    check_writable(out)  # its parent folder
    twin = VARIANTS[info.model].timm_name
    kwargs: dict = dict(num_classes=len(info.class_names), img_size=info.img_size)
    state = model.state_dict()
    if twin:
        p = model.config.partition_size  # never clamped at the sizes a paper variant takes
        if p != info.img_size // 32:  # timm's default partition: img_size / 32
            kwargs.update(transformer_window_size=(p, p), transformer_grid_size=(p, p))
        state = to_timm(state, info.model)
    with torch.device("meta"):  # no initialisation: the weights come next
        target = timm_create_model(twin or info.model, **kwargs)
    target.load_state_dict(state, strict=True, assign=True)  # raises unless every key fits
    target.pretrained_cfg = {
        **target.pretrained_cfg,
        "crop_pct": info.eval_crop,
        "interpolation": "bilinear",  # what maxvit eval resizes with
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
    }
    labels = dict(
        label_names=info.classes,
        label_descriptions=dict(zip(info.classes, info.class_names, strict=True)),
    )
    need = sum(t.numel() * t.element_size() for t in state.values())
    with (  # a failed write names `out`, never the temporary folder
        writing(out, need),
        tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp,
    ):
        save_for_hf(target, tmp, model_config=labels, safe_serialization=True)
        out.mkdir(exist_ok=True)
        for name in ("model.safetensors", "config.json"):  # each replaced in one rename
            os.replace(Path(tmp) / name, out / name)
    return out

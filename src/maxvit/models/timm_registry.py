"""This project's MaxViT variants in timm's model registry.

    import maxvit.models.timm_registry  # noqa: F401  (registers the names below with timm)
    model = timm.create_model("maxvit_seed", num_classes=200)

registers every name of `maxvit.models.variants.VARIANTS` (``maxvit_seed``, ``maxvit_nano``,
``maxvit_tiny`` ... ``maxvit_large``) with their `pretrained_cfg` (``timm.list_models(
"maxvit_*")`` then shows them beside timm's own). None of them is a timm name: timm's MaxViTs
all carry a suffix (``maxvit_tiny_tf_224``, ``maxvit_nano_rw_256``), and importing this module
raises a UserError instead of replacing a model if a timm release ever adds one of ours.

Through timm the models take timm's arguments: ``num_classes`` (0: pooled features),
``img_size`` (an int or a square pair; ``pretrained_cfg["input_size"]`` follows it),
``global_pool`` ("avg" or ""), ``drop_path_rate``, ``in_chans`` (3 only), plus any
`MaxVitConfig` field; ``features_only=True`` (timm's feature wrappers, through
``feature_info`` or, with ``feature_cls="getter"``, through ``forward_intermediates``); and
``pretrained=True`` with ``pretrained_cfg_overlay=dict(file=...)``, which loads a checkpoint of
ours or, for the paper variants, timm's ``maxvit_*_tf_224`` weights (converted), refusing a file
that does not fit instead of loading part of it. Without a file, ``pretrained=True`` downloads
the official weights of a paper variant from the Hugging Face Hub (``hf_hub_id``).
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from timm.models import (
    build_model_with_cfg,
    generate_default_cfgs,
    is_model,
    model_entrypoint,
    register_model,
)

from maxvit.errors import UserError
from maxvit.models.convert import check_fits, our_keys
from maxvit.models.factory import create_model
from maxvit.models.model import MaxVit
from maxvit.models.variants import VARIANTS, pretrained_cfg

# read by timm's register_model: the pretrained_cfg of each name
default_cfgs = generate_default_cfgs({name: pretrained_cfg(name) for name in VARIANTS})


def _build(
    name: str,
    num_classes: int,
    img_size: int | tuple[int, int],
    in_chans: int = 3,
    global_pool: str = "avg",
    drop_path_rate: float | None = None,
    drop_rate: float = 0.0,
    **overrides: Any,
) -> MaxVit:
    """`create_model` with timm's argument names (what `build_model_with_cfg` passes)."""
    if in_chans != 3:
        raise UserError(f"{name} takes RGB input (in_chans=3), got in_chans={in_chans}")
    if drop_rate:
        raise UserError(f"{name} has no dropout before the classifier (drop_rate must be 0)")
    sides = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if len(sides) != 2 or sides[0] != sides[1]:
        raise UserError(f"{name} takes square input, got img_size={img_size}")
    if drop_path_rate is not None:
        overrides["drop_path"] = drop_path_rate
    model = create_model(name, num_classes=num_classes, img_size=sides[0], **overrides)
    if global_pool != model.global_pool:
        model.reset_classifier(num_classes, global_pool)
    return model


def _filter(
    name: str, state_dict: dict[str, torch.Tensor], model: MaxVit
) -> dict[str, torch.Tensor]:
    """timm's ``pretrained_filter_fn``: the file in our keys, refused unless it fits (timm
    itself loads non-strictly whenever the class count differs)."""
    state, _ = our_keys(state_dict, name)
    check_fits(state, model, name, "the pretrained weights")
    return state


def _entrypoint(name: str) -> Any:
    """timm's model function for variant `name`: ``fn(pretrained=False, **kwargs)``."""

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> torch.nn.Module:
        if "img_size" in kwargs:  # the model runs at this size only: say so to timm's tools
            side = (
                kwargs["img_size"] if isinstance(kwargs["img_size"], int) else kwargs["img_size"][0]
            )
            kwargs["pretrained_cfg_overlay"] = {
                "input_size": (3, side, side),
                "pool_size": (side // 32, side // 32),
                **(kwargs.get("pretrained_cfg_overlay") or {}),
            }
        return build_model_with_cfg(
            functools.partial(_build, name),
            name,
            pretrained,
            feature_cfg=dict(flatten_sequential=True),
            pretrained_filter_fn=functools.partial(_filter, name),
            **kwargs,
        )

    entrypoint.__name__ = entrypoint.__qualname__ = name  # timm registers it by this name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"timm entry point of this project's {name} (maxvit.models.variants)."
    return entrypoint


def _register(name: str) -> Any:
    """Register variant `name` with timm; UserError rather than replace a model of timm's."""
    if is_model(name) and model_entrypoint(name).__module__ != __name__:
        raise UserError(
            f"timm already registers a model named {name!r} "
            f"({model_entrypoint(name).__module__}); maxvit's would replace it"
        )
    return register_model(_entrypoint(name))


for _name in VARIANTS:
    globals()[_name] = _register(_name)

"""Weight converters: timm's ``maxvit_*_tf_*`` state dicts onto ours, and checkpoint loading."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from maxvit.errors import UserError

# timm key pattern -> our key pattern, applied in order (first match wins).
_TIMM_RULES: list[tuple[str, str]] = [
    (r"^stem\.conv1\.", "stem.conv1.conv."),
    (r"^stem\.norm1\.", "stem.conv1.norm."),
    (r"^stem\.conv2\.", "stem.conv2.conv."),
    (
        r"^stages\.(\d+)\.blocks\.(\d+)\.conv\.shortcut\.expand\.",
        r"stages.\1.\2.mbconv.shortcut.conv.",
    ),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.conv\.pre_norm\.", r"stages.\1.\2.mbconv.pre_norm."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.conv\.conv1_1x1\.", r"stages.\1.\2.mbconv.expand.conv."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.conv\.norm1\.", r"stages.\1.\2.mbconv.expand.norm."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.conv\.conv2_kxk\.", r"stages.\1.\2.mbconv.depthwise.conv."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.conv\.norm2\.", r"stages.\1.\2.mbconv.depthwise.norm."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.conv\.se\.fc1\.", r"stages.\1.\2.mbconv.se.reduce."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.conv\.se\.fc2\.", r"stages.\1.\2.mbconv.se.expand."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.conv\.conv3_1x1\.", r"stages.\1.\2.mbconv.project.conv."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attn_block\.", r"stages.\1.\2.block_attn."),
    (r"^stages\.(\d+)\.blocks\.(\d+)\.attn_grid\.", r"stages.\1.\2.grid_attn."),
    (r"^head\.norm\.", "head_norm."),
    (r"^head\.pre_logits\.fc\.", "pre_logits.fc."),
    (r"^head\.fc\.", "head."),
]
_SUFFIX_RULES = [(r"\.rel_pos\.relative_position_bias_table$", ".rel_pos.table")]


def from_timm(state_dict: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Map a timm ``maxvit_{tiny,small,base,large}_tf_*`` state dict onto our `name` variant.

    SE weights are 1x1 convs in timm and Linear layers here (reshaped); BatchNorm's
    ``num_batches_tracked`` is kept. Raises UserError on a key that has no mapping.
    """
    if not name.startswith("maxvit_") or name in ("maxvit_seed", "maxvit_nano"):
        raise UserError(f"timm weights exist for the paper variants only, not {name!r}")
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state_dict.items():
        new = None
        for pattern, repl in _TIMM_RULES:
            if re.match(pattern, key):
                new = re.sub(pattern, repl, key)
                break
        if new is None:
            unmapped.append(key)
            continue
        for pattern, repl in _SUFFIX_RULES:
            new = re.sub(pattern, repl, new)
        if ".se." in new and value.ndim == 4:
            value = value.flatten(1)  # (out, in, 1, 1) conv -> (out, in) linear
        out[new] = value
    if unmapped:
        raise UserError(f"{len(unmapped)} timm key(s) have no mapping, e.g. {unmapped[:3]}")
    return out


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from a .safetensors file or a torch file (never unpickling objects).

    A torch file may hold the state dict itself or wrap it under "model" / "state_dict".
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling error, truncated file, not a torch file
        raise UserError(f"cannot read {path} as a weights-only torch file: {exc}") from exc
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise UserError(f"{path} does not hold a state dict")
    return obj


def load_pretrained(model: nn.Module, name: str, path: str | Path) -> None:
    """Load a timm-format or maxvit-format checkpoint into `model` (built as `name`).

    The classifier (``head.*``) is skipped and left freshly initialised when its shape differs
    (fine-tuning to another number of classes). Any other mismatch raises UserError listing
    a few keys.
    """
    state = read_state_dict(path)
    if any(k.startswith("stages.0.blocks.") or k.startswith("head.fc.") for k in state):
        state = from_timm(state, name)
    own = model.state_dict()
    for key in ("head.weight", "head.bias"):
        if key in state and key in own and state[key].shape != own[key].shape:
            del state[key]
    missing = sorted(set(own) - set(state) - {"head.weight", "head.bias"})
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(state) & set(own) if state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        parts = []
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", wrong),
        ):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise UserError(f"{path} does not fit {name}: " + "; ".join(parts))
    model.load_state_dict(state, strict=False)

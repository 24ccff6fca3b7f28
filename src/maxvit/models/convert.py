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


HUB_PREFIX = "hf-hub:"  # hf-hub:ORG/NAME: the model.safetensors of a Hugging Face Hub repo


def resolve_weights(spec: str | Path) -> Path:
    """The local file `spec` names: a path, or ``hf-hub:ORG/NAME`` (downloaded once into the
    Hugging Face cache, as timm does; e.g. ``hf-hub:timm/maxvit_tiny_tf_224.in1k``)."""
    text = str(spec)
    if not text.startswith(HUB_PREFIX):
        path = Path(text).expanduser()
        if not path.is_file():
            raise UserError(f"checkpoint not found: {path}")
        return path
    repo = text[len(HUB_PREFIX) :]
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo, "model.safetensors"))
    except Exception as exc:  # offline, unknown repo, no such file: all mean "not available"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot download {text} ({first}); download model.safetensors of {repo} where "
            "there is a network and pass its path"
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read tensors from a .safetensors file or a torch file (never unpickling objects).

    A torch file may hold the state dict itself or wrap it under "model" / "state_dict".
    `path` may be ``hf-hub:ORG/NAME`` (see `resolve_weights`).
    """
    path = resolve_weights(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise UserError(f"cannot read {path} as safetensors: {exc}") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling error, truncated file, not a torch file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read {path} as a weights-only torch file: {first}") from None
    for wrapper in ("model", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    return obj


def load_pretrained(model: nn.Module, name: str, path: str | Path) -> str:
    """Load a timm-format or maxvit-format checkpoint into `model` (built as `name`).

    The classifier (``model.get_classifier()``) is left freshly initialised when its shape
    differs (fine-tuning to another number of classes). Any other mismatch raises UserError
    listing a few keys. Returns one line saying what was loaded and what was re-initialised.
    """
    state = read_state_dict(path)
    timm_format = any(k.startswith("stages.0.blocks.") or k.startswith("head.fc.") for k in state)
    if timm_format:
        state = from_timm(state, name)
    own = model.state_dict()
    classifier = model.get_classifier()
    head = next(n for n, m in model.named_modules() if m is classifier)
    head_keys = {f"{head}.{k}" for k in classifier.state_dict()}
    fresh = sorted(k for k in head_keys if k in state and state[k].shape != own[k].shape)
    old_classes = state[f"{head}.weight"].shape[0] if f"{head}.weight" in state else None
    for key in fresh:
        del state[key]
    missing = sorted(set(own) - set(state) - head_keys)
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
    kind = "timm" if timm_format else "maxvit"
    line = f"pretrained: loaded {len(state)} tensors from {path} ({kind} format)"
    if fresh or not head_keys & set(state):
        new_classes = classifier.weight.shape[0]
        line += f"; classifier re-initialised ({old_classes or '?'} -> {new_classes} classes)"
    return line

"""Weight converters: timm's ``maxvit_*_tf_*`` state dicts onto ours, and checkpoint loading."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from maxvit.errors import UserError
from maxvit.models.variants import VARIANTS

# timm key prefix <-> our key prefix, in both directions ({s}: stage, {b}: block; first match
# wins). Relative-position tables are renamed by suffix; SE weights are 1x1 convs in timm and
# Linear layers here.
_KEY_MAP: list[tuple[str, str]] = [
    ("stem.conv1.", "stem.conv1.conv."),
    ("stem.norm1.", "stem.conv1.norm."),
    ("stem.conv2.", "stem.conv2.conv."),
    ("stages.{s}.blocks.{b}.conv.shortcut.expand.", "stages.{s}.{b}.mbconv.shortcut.conv."),
    ("stages.{s}.blocks.{b}.conv.pre_norm.", "stages.{s}.{b}.mbconv.pre_norm."),
    ("stages.{s}.blocks.{b}.conv.conv1_1x1.", "stages.{s}.{b}.mbconv.expand.conv."),
    ("stages.{s}.blocks.{b}.conv.norm1.", "stages.{s}.{b}.mbconv.expand.norm."),
    ("stages.{s}.blocks.{b}.conv.conv2_kxk.", "stages.{s}.{b}.mbconv.depthwise.conv."),
    ("stages.{s}.blocks.{b}.conv.norm2.", "stages.{s}.{b}.mbconv.depthwise.norm."),
    ("stages.{s}.blocks.{b}.conv.se.fc1.", "stages.{s}.{b}.mbconv.se.reduce."),
    ("stages.{s}.blocks.{b}.conv.se.fc2.", "stages.{s}.{b}.mbconv.se.expand."),
    ("stages.{s}.blocks.{b}.conv.conv3_1x1.", "stages.{s}.{b}.mbconv.project.conv."),
    ("stages.{s}.blocks.{b}.attn_block.", "stages.{s}.{b}.block_attn."),
    ("stages.{s}.blocks.{b}.attn_grid.", "stages.{s}.{b}.grid_attn."),
    ("head.norm.", "head_norm."),
    ("head.pre_logits.fc.", "pre_logits.fc."),
    ("head.fc.", "head."),
]
_SUFFIX_MAP = [(".rel_pos.relative_position_bias_table", ".rel_pos.table")]


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.escape(template).replace(r"\{s\}", r"(?P<s>\d+)").replace(r"\{b\}", r"(?P<b>\d+)")
    return re.compile("^" + pattern)


# (regex of one side, template of the other) per direction
_TO_OURS = [(_template_regex(t), o) for t, o in _KEY_MAP]
_TO_TIMM = [(_template_regex(o), t) for t, o in _KEY_MAP]


def _rename(
    state_dict: dict[str, torch.Tensor], rules: list[tuple[re.Pattern[str], str]], to_ours: bool
) -> dict[str, torch.Tensor]:
    """Rename every key by the first rule that matches; UserError if one matches none."""
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state_dict.items():
        match = next(((m, t) for r, t in rules if (m := r.match(key))), None)
        if match is None:
            unmapped.append(key)
            continue
        m, template = match
        new = template.format(**m.groupdict()) + key[m.end() :]
        for theirs, ours in _SUFFIX_MAP:
            old, repl = (theirs, ours) if to_ours else (ours, theirs)
            if new.endswith(old):
                new = new[: -len(old)] + repl
        if ".se." in new and value.ndim == (4 if to_ours else 2):
            # (out, in, 1, 1) conv <-> (out, in) linear
            value = value.flatten(1) if to_ours else value[:, :, None, None]
        out[new] = value
    if unmapped:
        side = "timm" if to_ours else "maxvit"
        raise UserError(f"{len(unmapped)} {side} key(s) have no mapping, e.g. {unmapped[:3]}")
    return out


def timm_twin(name: str) -> str:
    """timm's model of the same design as our variant `name` (weights convert both ways)."""
    twin = VARIANTS[name].timm_name if name in VARIANTS else None
    if twin is None:
        paper = [n for n, v in VARIANTS.items() if v.timm_name]
        raise UserError(
            f"timm weights exist for the paper variants only ({', '.join(paper)}), not {name!r}"
        )
    return twin


def from_timm(state_dict: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Map a timm ``maxvit_{tiny,small,base,large}_tf_*`` state dict onto our `name` variant.

    BatchNorm's ``num_batches_tracked`` is kept. Raises UserError for a variant without a timm
    twin and for a key that has no mapping.
    """
    timm_twin(name)
    return _rename(state_dict, _TO_OURS, to_ours=True)


def to_timm(state_dict: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The inverse of `from_timm`: our `name` variant's state dict as timm's `timm_twin(name)`
    (e.g. ``maxvit_tiny_tf_224``) holds it."""
    timm_twin(name)
    return _rename(state_dict, _TO_TIMM, to_ours=False)


HUB_PREFIX = "hf-hub:"  # hf-hub:ORG/NAME: the model.safetensors of a Hugging Face Hub repo
HUB_TIMEOUT_S = 10  # the Hub's first answer: a longer wait means it cannot be reached


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
        from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:  # in the cache: no network needed
            return Path(hf_hub_download(repo, "model.safetensors", local_files_only=True))
        except LocalEntryNotFoundError:
            pass
        # one request without retries, so that no network fails at once, not after ~30 s of them
        get_hf_file_metadata(hf_hub_url(repo, "model.safetensors"), timeout=HUB_TIMEOUT_S)
        return Path(hf_hub_download(repo, "model.safetensors"))
    except Exception as exc:  # offline, unknown repo, no such file: all mean "not available"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(
            f"cannot download {text} ({first}); download model.safetensors of {repo} where "
            "there is a network and pass its path (--set pretrained=PATH)"
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


def our_keys(state_dict: dict[str, torch.Tensor], name: str) -> tuple[dict[str, torch.Tensor], str]:
    """(`state_dict` in our model's keys, its format: "timm" or "maxvit"). timm-format files are
    converted for the MaxViT variants (timm's ``maxvit_*_tf_*`` keys); the baselines are timm
    models, for which both formats are the same."""
    if name in VARIANTS and any(k.startswith("stages.0.blocks.") for k in state_dict):
        return from_timm(state_dict, name), "timm"
    return state_dict, "maxvit"


def check_fits(
    state_dict: dict[str, torch.Tensor], model: nn.Module, name: str, source: str | Path
) -> None:
    """UserError listing a few keys unless `state_dict` fits `model` (built as `name`),
    classifier aside (``model.pretrained_cfg["classifier"]``)."""
    own = model.state_dict()
    head = f"{model.pretrained_cfg['classifier']}."
    mine = {k for k in own if not k.startswith(head)}
    theirs = {k for k in state_dict if not k.startswith(head)}
    problems = [
        f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})"
        for label, keys in (
            ("missing", sorted(mine - theirs)),
            ("unexpected", sorted(theirs - mine)),
            (
                "wrong shape",
                sorted(k for k in mine & theirs if state_dict[k].shape != own[k].shape),
            ),
        )
        if keys
    ]
    if problems:
        raise UserError(f"{source} does not fit {name}: " + "; ".join(problems))


def load_pretrained(model: nn.Module, name: str, path: str | Path) -> str:
    """Load a timm-format or maxvit-format checkpoint (see `our_keys`) into `model`, built as
    `name` by `create_model` (which names its classifier in ``model.pretrained_cfg``).

    The classifier is left freshly initialised when its shape differs (fine-tuning to another
    number of classes), and left out for a model without one (``num_classes=0``). Any other
    mismatch raises UserError (`check_fits`). Returns one line saying what was loaded and what
    was re-initialised.
    """
    state, kind = our_keys(read_state_dict(path), name)
    own = model.state_dict()
    head = model.pretrained_cfg["classifier"]
    head_keys = {k for k in set(state) | set(own) if k.startswith(f"{head}.")}
    fresh = [k for k in head_keys & set(state) if k not in own or state[k].shape != own[k].shape]
    old_classes = state[f"{head}.weight"].shape[0] if f"{head}.weight" in state else "?"
    for key in fresh:
        del state[key]
    check_fits(state, model, name, path)
    model.load_state_dict(state, strict=False)
    line = f"pretrained: loaded {len(state)} tensors from {path} ({kind} format)"
    if not model.num_classes:
        line += f"; no classifier ({old_classes} classes in the file left out)"
    elif fresh or not head_keys & set(state):
        line += f"; classifier re-initialised ({old_classes} -> {model.num_classes} classes)"
    return line

"""The one training configuration: a dataclass, YAML presets that set its fields, `--set` overrides.

A preset is a YAML file in ``maxvit/configs/`` (shipped with the package) whose keys are
`TrainConfig` fields; ``aug`` is a nested mapping of `maxvit.data.AugmentConfig` fields. Unset
fields keep the dataclass defaults, which are the recorded recipe (the ``seed`` preset).
Overrides use dotted keys (``aug.mixup_alpha=0.0``) and YAML values (``img_size=null``).
Unknown keys, presets or ill-typed values raise `UserError` naming the valid choices.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from maxvit.data import AugmentConfig
from maxvit.errors import UserError
from maxvit.files import write_text
from maxvit.train.presets import list_presets, preset_text

TTA = ("none", "flip")  # test-time augmentation: none, or the mean of the image and its mirror


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (saved as ``config.yaml`` in the run folder)."""

    preset: str | None = None  # the preset the run started from (resume refuses another)
    model: str = "maxvit_seed"  # name for maxvit.models.create_model
    img_size: int | None = None  # input side for training and evaluation; None = model default
    drop_path: float = 0.0  # stochastic depth rate of the last block (model option drop_path)
    pretrained: str | None = None  # weights to start from (timm maxvit_*_tf_* / maxvit file)
    data: str = "data"  # data set: Tiny ImageNet, class folders or shards (docs/data.md)
    epochs: int = 40  # epochs; with the four-pass epoch one epoch is 4 passes over train
    steps_per_epoch: int = 0  # cap on optimizer steps per epoch (0 = the loader's full epoch)
    total_steps: int = (
        0  # optimizer steps of the run (0 = epochs x steps per epoch); a budget sets it
    )
    budget_minutes: float = 0.0  # wall-clock budget, evaluations included (0 = none; epochs decide)
    batch_size: int = 128  # global batch per optimizer step (all ranks x accumulation)
    accum_steps: int = 1  # micro-batches accumulated per optimizer step
    lr: float = 5e-4  # peak learning rate (AdamW)
    min_lr: float = 0.0  # learning rate at the end of the decay
    warmup_epochs: float = 0.0  # linear warmup from 0 to lr (fractional epochs allowed)
    schedule: str = "cosine"  # lr decay after warmup, to min_lr at the last step: cosine, linear
    weight_decay: float = 0.05  # AdamW decoupled weight decay
    decay_norm_bias: bool = True  # also decay 1-d params (norms, biases), as Keras AdamW does
    layer_decay: float = 0.0  # layer-wise lr decay: lr x this^(depth from the head) (0 = off)
    clip_grad: float = 0.0  # clip the global gradient norm to this value (0 = off)
    ema_decay: float = 0.0  # EMA of the weights (0 = off); when on, the EMA is evaluated and saved
    aug: AugmentConfig = field(default_factory=AugmentConfig)  # augmentation, passes, smoothing
    eval_crop: float = 1.0  # evaluation: resize to img_size / eval_crop, centre crop img_size
    tta: str = "none"  # test-time augmentation of the evaluations: none, flip (image + mirror)
    fit_images: int = 0  # also clean-train top-1 on ~this many fixed train images per epoch
    stop_at_fit: float = 0.0  # end at the first epoch with clean-train top-1 >= this % (0 = off)
    seed: int = 0  # seeds initialisation, data order, augmentation and stochastic depth
    num_workers: int = 4  # data-loading worker processes per rank (0 = in the main process)
    bad_samples: int | str = (
        "1%"  # undecodable samples an epoch accepts: a count or "N%" of a split
    )
    precision: str = (
        "auto"  # auto (bf16 GPU, fp16 + loss scaling on old GPUs, fp32 CPU), bf16, fp16, fp32
    )
    compile: bool | str = False  # torch.compile: true (eager if it fails), "require", false
    sync_bn: bool = False  # SyncBatchNorm across ranks (CUDA DDP only)
    grad_checkpointing: bool = False  # recompute activations in the backward pass: less memory
    ckpt_every_steps: int = 0  # also checkpoint every N optimizer steps (0 = once per epoch)

    def __post_init__(self) -> None:
        if self.img_size is not None and self.img_size < 1:
            raise UserError(
                f"img_size must be >= 1 pixel (or null: the model's), got {self.img_size}"
            )
        positive = ("epochs", "batch_size", "accum_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        nonneg = ("steps_per_epoch", "total_steps", "budget_minutes", "lr", "min_lr")
        nonneg += ("warmup_epochs", "weight_decay", "clip_grad", "num_workers")
        nonneg += ("ckpt_every_steps", "drop_path", "fit_images", "stop_at_fit")
        for name in nonneg:
            if getattr(self, name) < 0:
                raise UserError(f"{name} must be >= 0, got {getattr(self, name)}")
        floats = [
            f.name for f in dataclasses.fields(self) if isinstance(getattr(self, f.name), float)
        ]
        for name in floats:
            if not math.isfinite(getattr(self, name)):
                raise UserError(f"{name} must be a finite number, got {getattr(self, name)}")
        from maxvit.data.bad import parse_bad_samples
        from maxvit.device import PRECISIONS
        from maxvit.train.schedule import SHAPES

        parse_bad_samples(self.bad_samples)
        if self.tta not in TTA:
            raise UserError(f"tta must be one of {', '.join(TTA)}, got {self.tta!r}")
        if self.schedule not in SHAPES:
            raise UserError(f"schedule must be one of {', '.join(SHAPES)}, got {self.schedule!r}")

        if self.compile not in (False, True, "require"):
            raise UserError(f"compile must be true, false or require, got {self.compile!r}")
        if self.precision not in PRECISIONS:
            raise UserError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if not 0 < self.eval_crop <= 1:
            raise UserError(f"eval_crop must be in (0, 1], got {self.eval_crop}")
        if not 0 <= self.layer_decay <= 1:
            raise UserError(f"layer_decay must be in [0, 1] (0 = off), got {self.layer_decay}")
        if self.layer_decay and self.decay_norm_bias:
            raise UserError(
                "layer_decay groups never decay norms and biases: set decay_norm_bias false"
            )
        if self.stop_at_fit and not (self.fit_images and self.stop_at_fit <= 100):
            raise UserError(
                f"stop_at_fit is a clean-train top-1 in (0, 100] measured on fit_images train "
                f"images: got {self.stop_at_fit} with fit_images {self.fit_images}"
            )
        if not 0 <= self.ema_decay < 1:
            raise UserError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.batch_size % self.accum_steps:
            raise UserError(
                f"batch_size {self.batch_size} is not divisible by accum_steps {self.accum_steps}"
            )


def load_preset(name: str) -> TrainConfig:
    """The `TrainConfig` of a shipped preset; UserError listing the presets if unknown."""
    names = list_presets()
    if name not in names:
        raise UserError(f"unknown preset {name!r}; valid presets: {', '.join(names)}")
    text = preset_text(name)
    config = config_from_dict(yaml.safe_load(text) or {}, source=f"preset {name}")
    return dataclasses.replace(config, preset=name)


def load_config(path: str | Path) -> TrainConfig:
    """Read a ``config.yaml`` written by `save_config`; one-line `UserError` if it is not one."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot read the run config {path} ({first})") from None
    return config_from_dict(data, source=str(path))


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the config as YAML (every field, so a run is reproducible from its folder)."""
    write_text(path, config_to_yaml(config))


def config_to_yaml(config: TrainConfig) -> str:
    """YAML text of every field; tuples become lists."""
    return yaml.safe_dump(_plain(dataclasses.asdict(config)), sort_keys=False)


def config_from_dict(data: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build a TrainConfig from a (possibly partial) mapping, checking names and types."""
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of TrainConfig fields")
    items = []
    for key, value in data.items():
        if key == "aug" and isinstance(value, dict):
            items += [(f"aug.{sub}", subvalue) for sub, subvalue in value.items()]
        else:
            items.append((key, value))
    return _build(TrainConfig(), items)


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings (dotted keys for ``aug``; values parsed as YAML)."""
    items = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise UserError(f"--set {key}: cannot parse value {text!r}: {problem}") from None
        items.append((key.strip(), value))
    return _build(config, items)


def valid_keys() -> list[str]:
    """Every key that presets and ``--set`` accept."""
    keys = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "aug"]
    return keys + [f"aug.{f.name}" for f in dataclasses.fields(AugmentConfig)]


def _build(config: TrainConfig, items: list[tuple[str, Any]]) -> TrainConfig:
    """Replace fields of `config` by (dotted key, value) pairs; validation runs once, at the end."""
    top_hints = typing.get_type_hints(TrainConfig)
    aug_hints = typing.get_type_hints(AugmentConfig)
    top: dict[str, Any] = {}
    aug: dict[str, Any] = {}
    for key, value in items:
        head, _, rest = key.partition(".")
        if head == "aug" and rest in aug_hints:
            aug[rest] = _coerce(value, aug_hints[rest], key)
        elif key in top_hints and key != "aug":
            top[key] = _coerce(value, top_hints[key], key)
        else:
            raise _unknown(key)
    if aug:
        top["aug"] = dataclasses.replace(config.aug, **aug)
    return dataclasses.replace(config, **top)


def _unknown(key: str) -> UserError:
    return UserError(f"unknown config key {key!r}; valid keys: {', '.join(valid_keys())}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against a field's type hint, converting int->float and list->tuple."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key)
            except UserError:
                pass
        raise UserError(f"{key}: expected {hint}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise UserError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    raise UserError(f"{key}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value

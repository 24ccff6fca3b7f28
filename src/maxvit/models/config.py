"""`MaxVitConfig`: every architecture option of a MaxViT, one field each, validated on creation.

The two recorded designs (the Keras seed and the official paper design) differ only in the
values of these fields; `maxvit.models.variants` sets them per variant, in one table. The field
names follow timm's ``MaxxVitCfg`` / ``MaxxVitConvCfg`` where timm has the same option.
"""

from __future__ import annotations

from dataclasses import dataclass

from maxvit.errors import UserError


@dataclass(frozen=True)
class MaxVitConfig:
    depths: tuple[int, ...]  # blocks per stage
    channels: tuple[int, ...]  # output channels per stage
    stem_channels: int  # channels of the two stem convs
    # stem: total stride 2 (conv/2 -> conv/1, paper) or 4 (conv/2 -> conv/2, seed). Stage 1
    # downsamples only after a stride-2 stem, so the model's total stride is 32 either way.
    stem_stride: int = 2
    stem_norm: bool = True  # BatchNorm between the stem convs (paper); none in the seed
    # bias in the convs that no BatchNorm follows: the stem convs, the MBConv projection and
    # its shortcut conv (paper); the seed has no conv bias anywhere
    conv_bias: bool = True
    pre_norm: bool = True  # BatchNorm on the MBConv input (paper; timm's pre-norm)
    # MBConv hidden width: expansion x output channels (paper) or x input channels (seed);
    # timm's `expand_output`
    expand_output: bool = True
    # SE width: se_ratio x (output channels if expand_output, else the hidden width), as timm's
    # `attn_ratio`; 0.25 gives cout/4 (paper) and cin (seed)
    se_ratio: float = 0.25
    se_act: str = "silu"  # SE activation: "silu" (paper) or "gelu" (seed: the block's GELU)
    project_norm: bool = False  # BatchNorm after the MBConv's 1x1 projection (seed)
    # MBConv shortcut: "identity" (identity, or (avg pool ->) 1x1 conv where the channels
    # change; paper) or "conv" (always (avg pool ->) 1x1 conv; seed)
    shortcut: str = "identity"
    # classifier head: "norm_mlp" (pool -> LayerNorm -> Linear + tanh -> Linear, timm's
    # NormMlpClassifierHead; paper) or "linear" (pool -> Linear; seed)
    head: str = "norm_mlp"
    head_dim: int = 32  # channels per attention head
    partition_size: int = 7  # window and grid side p (tokens); clamped to small maps
    expansion: int = 4  # hidden ratio of MBConv and of the attention MLP
    gelu: str = "tanh"  # GELU approximation: "none" (exact, seed) or "tanh" (paper)
    bn_eps: float = 1e-3  # BatchNorm epsilon (Keras/TF default)
    ln_eps: float = 1e-5  # LayerNorm epsilon
    drop_path: float = 0.0  # stochastic depth probability of the last block
    attn_impl: str = "auto"  # "auto" (SDPA on CUDA, explicit on CPU), "sdpa" or "explicit"

    def __post_init__(self) -> None:
        choices = {
            "stem_stride": (2, 4),
            "se_act": ("silu", "gelu"),
            "shortcut": ("identity", "conv"),
            "head": ("norm_mlp", "linear"),
            "gelu": ("none", "tanh"),
            "attn_impl": ("auto", "sdpa", "explicit"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UserError(
                    f"{name} must be one of {', '.join(map(str, allowed))}; "
                    f"got {getattr(self, name)!r}"
                )
        depths, channels = tuple(self.depths), tuple(self.channels)
        if not depths or len(depths) != len(channels):
            raise UserError(
                f"depths {depths} and channels {channels} must name the same stages (at least one)"
            )
        if min(depths) < 1 or min(channels) < 1 or self.stem_channels < 1:
            raise UserError("depths, channels and stem_channels must be positive")
        if self.head_dim < 1 or any(c % self.head_dim for c in channels):
            raise UserError(
                f"every stage's channels {channels} must be a multiple of head_dim {self.head_dim}"
            )
        if self.partition_size < 1 or self.expansion < 1:
            raise UserError("partition_size and expansion must be at least 1")
        if not 0 < self.se_ratio <= 1:
            raise UserError(f"se_ratio must be in (0, 1], got {self.se_ratio}")
        if not 0 <= self.drop_path < 1:
            raise UserError(f"drop_path must be in [0, 1), got {self.drop_path}")
        if self.bn_eps <= 0 or self.ln_eps <= 0:
            raise UserError("bn_eps and ln_eps must be positive")

    def stage_strides(self) -> list[int]:
        """Stride of each stage's first block: 2, except stage 1 after a stride-4 stem."""
        return [4 // self.stem_stride] + [2] * (len(self.depths) - 1)

    def stage_geometry(self, img_size: int) -> list[tuple[int, int]]:
        """(map side, partition side) of each stage at `img_size`; raises UserError if invalid."""
        size = img_size
        for _ in range(self.stem_stride // 2):
            size = _halve(size, "stem", img_size)
        geometry = []
        for i, stride in enumerate(self.stage_strides()):
            if stride == 2:
                size = _halve(size, f"stage {i + 1}", img_size)
            p = min(self.partition_size, size)
            if size % p:
                raise UserError(
                    f"stage {i + 1}: feature map {size}x{size} (img_size {img_size}) is not "
                    f"divisible by partition size {p}; choose img_size so that every stage map "
                    f"is a multiple of {self.partition_size} or smaller than it"
                )
            geometry.append((size, p))
        return geometry


def _halve(size: int, where: str, img_size: int) -> int:
    if size % 2:
        raise UserError(
            f"{where}: feature map {size}x{size} (img_size {img_size}) is odd and "
            "cannot be halved; choose an img_size divisible by 32"
        )
    return size // 2

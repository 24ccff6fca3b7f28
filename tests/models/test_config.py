"""`MaxVitConfig`: the design table, every field read by the model, bad values refused."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from maxvit.errors import UserError
from maxvit.models.config import MaxVitConfig
from maxvit.models.model import MaxVit
from maxvit.models.variants import DESIGNS, PAPER, SEED, VARIANTS

# One stage of two blocks at 32 px: every kind of layer, built in milliseconds.
PICO = dict(depths=(2,), channels=(32,), stem_channels=16, partition_size=4)


def _signature(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_variants_take_their_design_from_the_table():
    for name, variant in VARIANTS.items():
        design = PAPER if variant.timm_name else SEED
        got = {f: getattr(variant.config, f) for f in design}
        assert got == design, name
    assert VARIANTS["maxvit_seed"].timm_name is None
    assert VARIANTS["maxvit_tiny"].timm_name == "maxvit_tiny_tf_224"


@pytest.mark.parametrize("field", [f for f, (seed, paper) in DESIGNS.items() if seed != paper])
def test_every_design_field_changes_the_model(field):
    """Switch one field of the paper design to its seed value: the parameters or, with the
    same parameters, the output change. A field no code reads fails here."""
    base = MaxVitConfig(**PICO, **PAPER)
    torch.manual_seed(0)
    a = MaxVit(base, 10, 32).eval()
    torch.manual_seed(0)
    b = MaxVit(dataclasses.replace(base, **{field: SEED[field]}), 10, 32).eval()
    if _signature(a) == _signature(b):
        b.load_state_dict(a.state_dict())
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            assert not torch.equal(a(x), b(x)), field


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("gelu", "erf", "gelu must be one of none, tanh; got 'erf'"),
        ("stem_stride", 8, "stem_stride must be one of 2, 4; got 8"),
        ("se_act", "relu", "se_act must be one of silu, gelu"),
        ("shortcut", "pool", "shortcut must be one of identity, conv"),
        ("head", "mlp", "head must be one of norm_mlp, linear"),
        ("attn_impl", "flash", "attn_impl must be one of auto, sdpa, explicit"),
        ("se_ratio", 0.0, r"se_ratio must be in \(0, 1\], got 0.0"),
        ("drop_path", 1.0, r"drop_path must be in \[0, 1\), got 1.0"),
        ("head_dim", 24, r"channels \(32,\) must be a multiple of head_dim 24"),
        ("depths", (1, 1), r"depths \(1, 1\) and channels \(32,\) must name the same stages"),
        ("depths", (0,), "must be positive"),
        ("partition_size", 0, "partition_size and expansion must be at least 1"),
        ("ln_eps", 0.0, "bn_eps and ln_eps must be positive"),
    ],
)
def test_bad_values_are_one_line_user_errors(field, value, message):
    with pytest.raises(UserError, match=message) as info:
        MaxVitConfig(**{**PICO, **PAPER, field: value})
    assert "\n" not in str(info.value)


def test_create_model_validates_overrides():
    from maxvit.models import create_model

    with pytest.raises(UserError, match="gelu must be one of none, tanh; got 'exact'"):
        create_model("maxvit_nano", gelu="exact")

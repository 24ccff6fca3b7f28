"""Paper variants equal timm's maxvit_*_tf_224; pretrained checkpoints load from disk."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file

from maxvit.errors import UserError
from maxvit.models import create_model
from maxvit.models.convert import from_timm


def _timm_model(timm_name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(timm_name, num_classes=200).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics, so eval mode tests them too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def timm_tiny():
    return _timm_model("maxvit_tiny_tf_224")


@pytest.mark.slow
@pytest.mark.parametrize("ours,theirs", [("maxvit_tiny", "tiny"), ("maxvit_small", "small")])
def test_converted_timm_weights_give_the_same_logits(ours, theirs):
    ref = _timm_model(f"maxvit_{theirs}_tf_224")
    model = create_model(ours).eval()
    model.load_state_dict(from_timm(ref.state_dict(), ours), strict=True)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (model(x) - ref(x)).abs().max().item()
    assert diff <= 1e-4


@pytest.mark.slow
def test_pretrained_file_loads_and_replaces_a_different_head(tmp_path, timm_tiny):
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in timm_tiny.state_dict().items()}, str(path))
    x = torch.randn(1, 3, 224, 224)
    same = create_model("maxvit_tiny", pretrained=path).eval()
    with torch.no_grad():
        torch.testing.assert_close(same(x), timm_tiny(x), atol=1e-4, rtol=1e-4)
        ten = create_model("maxvit_tiny", num_classes=10, pretrained=path).eval()
        assert ten(x).shape == (1, 10)
        # everything but the head came from the file
        feats = ten.forward_features(x)
        torch.testing.assert_close(feats, same.forward_features(x))


def test_pretrained_torch_file_with_our_keys(tmp_path):
    src = create_model("maxvit_nano")
    path = tmp_path / "nano.pt"
    torch.save({"model": src.state_dict()}, path)
    loaded = create_model("maxvit_nano", pretrained=path)
    for (k, a), b in zip(src.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


@pytest.mark.slow
def test_pretrained_errors_are_clear(tmp_path, timm_tiny):
    with pytest.raises(UserError, match="checkpoint not found"):
        create_model("maxvit_tiny", pretrained=tmp_path / "nope.safetensors")
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in timm_tiny.state_dict().items()}, str(path))
    with pytest.raises(UserError, match="does not fit maxvit_small: .*wrong shape") as info:
        create_model("maxvit_small", pretrained=path)
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="paper variants only"):
        create_model("maxvit_seed", pretrained=path)
    partial = {k: v.contiguous() for k, v in timm_tiny.state_dict().items() if "stages.3" not in k}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(UserError, match=r"missing \(e\.g\. stages\.3"):
        create_model("maxvit_tiny", pretrained=tmp_path / "partial.safetensors")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        create_model("maxvit_nano", pretrained=tmp_path / "junk.pt")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(UserError, match="cannot read .*junk.safetensors as safetensors"):
        create_model("maxvit_nano", pretrained=tmp_path / "junk.safetensors")

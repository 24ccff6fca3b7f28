"""Fine-tuning from timm weights: everything but the head loads; the head is re-initialised."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from maxvit.data.synthetic import make_synthetic_tree
from maxvit.errors import UserError
from maxvit.models import create_model
from maxvit.models.convert import from_timm, load_pretrained
from maxvit.train.trainer import train
from tests.train.utils import read_weights, smoke_config

pytestmark = pytest.mark.slow  # MaxViT-T at 224 and timm: about 40 s


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory):
    """A randomly initialised timm maxvit_tiny_tf_224 (1000 classes) saved as safetensors."""
    import timm

    torch.manual_seed(1)
    model = timm.create_model("maxvit_tiny_tf_224", pretrained=False, num_classes=1000)
    path = tmp_path_factory.mktemp("timm") / "maxvit_tiny_tf_224.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_lr_zero_keeps_every_non_head_parameter_with_a_200_way_head(timm_weights, tmp_path, capsys):
    tree = make_synthetic_tree(
        tmp_path / "tree", num_classes=200, train_per_class=1, val_per_class=0
    )
    for name in ("class_07", "class_99"):  # a small val split: two images of two classes
        image = next((tree / "train" / name).iterdir())
        (tree / "val" / name / image.name).write_bytes(image.read_bytes())
    config = smoke_config(
        tree, "model=maxvit_tiny", "img_size=224", f"pretrained={timm_weights}", "lr=0.0",
        "batch_size=2", "epochs=1", "steps_per_epoch=1", "aug.pipeline=none",
    )  # fmt: skip
    run = train(config, tmp_path / "run")
    err = capsys.readouterr().err
    expected = from_timm(load_file(str(timm_weights)), "maxvit_tiny")
    loaded = len(expected) - 2  # all but the 1000-way head
    assert f"pretrained: loaded {loaded} tensors from {timm_weights} (timm format)" in err
    assert "classifier re-initialised (1000 -> 200 classes)" in err
    saved = read_weights(run / "checkpoints" / "last.safetensors")
    names = [n for n, _ in create_model("maxvit_tiny").named_parameters()]
    assert saved["head.weight"].shape == (200, 512) and saved["head.bias"].shape == (200,)
    body = [n for n in names if not n.startswith("head.")]
    assert len(body) == len(names) - 2
    changed = [n for n in body if not torch.equal(saved[n], expected[n])]
    assert changed == []
    fresh = create_model("maxvit_tiny").state_dict()
    assert not torch.equal(saved["stem.conv1.conv.weight"], fresh["stem.conv1.conv.weight"])


def test_a_hub_download_that_fails_is_one_line(monkeypatch):
    import huggingface_hub.constants

    # offline, as set by HF_HUB_OFFLINE=1 before the import: fails at once, without retries
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = create_model("maxvit_nano", num_classes=10)
    with pytest.raises(UserError, match="cannot download hf-hub:timm/nosuch_model") as info:
        load_pretrained(model, "maxvit_nano", "hf-hub:timm/nosuch_model")
    assert "\n" not in str(info.value)

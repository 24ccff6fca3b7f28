"""The MaxViT model: the seed table, variant shapes, geometry rule, gradients, init."""

from __future__ import annotations

import csv
import re

import pytest
import torch

from maxvit.errors import UserError
from maxvit.models import VARIANTS, create_model
from maxvit.models.summary import format_csv, summarize
from tests.helpers import SEED_CSV

# The recorded Keras summary (shared/reference/seed_architecture.csv), held here so the test
# runs without ../shared: (type, output shape, params) per row, in order.
SEED_TABLE = """\
InputLayer 224x224x3 0|Conv2D 112x112x64 1728|Conv2D 56x56x64 36864
MBConv 56x56x64 74560|block_attention 56x56x64 50322|grid_attention 56x56x64 50322
MBConv 56x56x64 74560|block_attention 56x56x64 50322|grid_attention 56x56x64 50322
MBConv 28x28x128 95296|block_attention 28x28x128 198948|grid_attention 28x28x128 198948
MBConv 28x28x128 288384|block_attention 28x28x128 198948|grid_attention 28x28x128 198948
MBConv 14x14x256 370816|block_attention 14x14x256 791112|grid_attention 14x14x256 791112
MBConv 14x14x256 1133824|block_attention 14x14x256 791112|grid_attention 14x14x256 791112
MBConv 14x14x256 1133824|block_attention 14x14x256 791112|grid_attention 14x14x256 791112
MBConv 14x14x256 1133824|block_attention 14x14x256 791112|grid_attention 14x14x256 791112
MBConv 14x14x256 1133824|block_attention 14x14x256 791112|grid_attention 14x14x256 791112
MBConv 7x7x512 1462528|block_attention 7x7x512 3155088|grid_attention 7x7x512 3155088
MBConv 7x7x512 4495872|block_attention 7x7x512 3155088|grid_attention 7x7x512 3155088
GlobalAveragePooling2D 512 0|Dense 200 102600"""


def _expected_rows() -> list[tuple[str, str, int]]:
    cells = SEED_TABLE.replace("\n", "|").split("|")
    return [(t, s, int(n)) for t, s, n in (c.split() for c in cells)]


@pytest.fixture(scope="module")
def seed_rows():
    return summarize(create_model("maxvit_seed"), 224)


@pytest.mark.slow
def test_seed_summary_matches_the_recorded_table(seed_rows):
    got = [(r.type, r.output_shape, r.params) for r in seed_rows]
    assert got == _expected_rows()
    assert len(seed_rows) == 38
    assert sum(r.params for r in seed_rows) == 33_067_056
    assert sum(r.trainable for r in seed_rows) == 33_025_840
    assert sum(r.non_trainable for r in seed_rows) == 41_216


@pytest.mark.slow
@pytest.mark.skipif(not SEED_CSV.exists(), reason="shared reference not present")
def test_seed_summary_csv_equals_reference_file(seed_rows):
    ours = list(csv.reader(format_csv(seed_rows).splitlines()))
    ref = list(csv.reader(SEED_CSV.read_text().splitlines()))
    assert ours[0] == ref[0] and len(ours) == len(ref)
    for a, b in zip(ours[1:], ref[1:], strict=True):
        # Keras numbers the last two layers with session-wide counters (dense_110);
        # the names must agree up to that counter.
        assert re.sub(r"_\d+$", "", a[0]) == re.sub(r"_\d+$", "", b[0])
        assert a[1:] == b[1:]


@pytest.mark.slow
def test_summary_cli_prints_totals(capsys):
    from maxvit.cli import main

    assert main(["summary", "--model", "maxvit_seed"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 33,067,056" in out
    assert "Trainable params: 33,025,840" in out
    assert "Non-trainable params: 41,216" in out


@pytest.mark.slow
@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_output_shape_at_default_size(name):
    size = VARIANTS[name][1]
    with torch.device("meta"):  # shapes only: no memory, no arithmetic (maxvit_large is 212 M)
        model = create_model(name, num_classes=7).eval()
        out = model(torch.empty(2, 3, size, size))
    assert out.shape == (2, 7)


def test_small_variant_computes_finite_logits():
    model = create_model("maxvit_nano", num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("maxvit_nano", 64), ("maxvit_tiny", 224)])
def test_gradients_reach_every_parameter(name, size):
    torch.manual_seed(0)  # drop_path may drop a branch for a whole small batch: fix the draw
    model = create_model(name, img_size=size, drop_path=0.1)
    model(torch.randn(4, 3, size, size)).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_nano_is_small_and_runs_at_64():
    model = create_model("maxvit_nano")
    assert sum(p.numel() for p in model.parameters()) == 2_609_098
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 200)


def test_partition_size_is_clamped_to_small_maps():
    model = create_model("maxvit_nano")  # stage maps 16, 8, 4, 2 with partition size 4
    sizes = [stage[0].block_attn.p for stage in model.stages]
    assert sizes == [4, 4, 4, 2]
    assert [stage[0].grid_attn.p for stage in model.stages] == sizes


def test_indivisible_map_is_rejected_at_construction_naming_the_stage():
    with pytest.raises(UserError, match=r"stage 1: feature map 40x40 .* partition size 7"):
        create_model("maxvit_tiny", img_size=160)
    with pytest.raises(UserError, match="odd"):
        create_model("maxvit_seed", img_size=196)  # stage 1 map 49 is odd


def test_num_classes_changes_only_the_head():
    a = create_model("maxvit_nano", num_classes=200).state_dict()
    b = create_model("maxvit_nano", num_classes=10).state_dict()
    differ = sorted(k for k in a if a[k].shape != b[k].shape)
    assert differ == ["head.bias", "head.weight"]


def test_init_is_truncated_normal_for_linear_and_bias_tables():
    torch.manual_seed(0)
    model = create_model("maxvit_nano")
    qkv = model.stages[2][0].block_attn.attn.qkv.weight
    table = model.stages[2][0].block_attn.attn.rel_pos.table
    for t in (qkv, table):
        assert t.abs().max() <= 0.04 + 1e-6  # truncated at 2 std
        assert 0.01 < t.std() < 0.02
    assert model.stages[2][0].block_attn.attn.qkv.bias.abs().max() == 0


def test_unknown_model_and_option_are_clear_errors():
    with pytest.raises(UserError, match="unknown model 'maxvit_huge'"):
        create_model("maxvit_huge")
    with pytest.raises(UserError, match="unknown option"):
        create_model("maxvit_nano", depth=3)


def test_channels_last_gives_the_same_logits():
    torch.manual_seed(0)
    model = create_model("maxvit_nano").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_classifier_api_follows_timm():
    model = create_model("maxvit_nano", num_classes=10).eval()
    assert model.get_classifier() is model.head and model.head.out_features == 10
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        torch.testing.assert_close(model.forward_head(features), model.head(pooled))
        torch.testing.assert_close(model(x), model.head(pooled))
        model.reset_classifier(3)
        assert model(x).shape == (2, 3) and model.get_classifier().out_features == 3


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("maxvit_nano", 64), ("maxvit_tiny", 224)])
def test_feature_info_and_intermediates(name, size):
    with torch.device("meta"):
        model = create_model(name, img_size=size)
        final, maps = model.forward_intermediates(torch.empty(1, 3, size, size))
    assert len(maps) == len(model.feature_info) == 5
    for info, m in zip(model.feature_info, maps, strict=True):
        assert m.shape == (1, info["num_chs"], size // info["reduction"], size // info["reduction"])
        assert model.get_submodule(info["module"]) is not None
    assert final.shape == maps[-1].shape
    with torch.device("meta"):
        only = model.forward_intermediates(
            torch.empty(1, 3, size, size), indices=[1, 2], intermediates_only=True
        )
    assert [m.shape for m in only] == [maps[1].shape, maps[2].shape]
    with pytest.raises(UserError, match=r"feature indices \[7\]"):
        model.forward_intermediates(torch.empty(1, 3, size, size), indices=[7])


def test_grad_checkpointing_same_gradients_less_saved_memory():
    """Stage checkpointing changes what is kept for backward, not the result. Memory is what
    autograd saves for backward (the activations), counted through saved-tensor hooks."""

    def run(checkpoint: bool) -> tuple[dict[str, torch.Tensor], int]:
        torch.manual_seed(0)
        model = create_model("maxvit_nano", drop_path=0.2)  # stochastic depth: RNG replayed
        model.set_grad_checkpointing(checkpoint)
        saved = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal saved
            saved += t.numel() * t.element_size()
            return t

        torch.manual_seed(1)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = model(torch.randn(4, 3, 64, 64)).logsumexp(1).sum()
        loss.backward()
        return {n: p.grad for n, p in model.named_parameters()}, saved

    plain, plain_bytes = run(False)
    checked, checked_bytes = run(True)
    assert plain.keys() == checked.keys()
    for n in plain:
        torch.testing.assert_close(checked[n], plain[n], rtol=1e-5, atol=1e-6, msg=n)
    assert checked_bytes < 0.25 * plain_bytes  # only the stage inputs, the stem and the head

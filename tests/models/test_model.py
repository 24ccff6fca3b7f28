"""The MaxViT model: the seed table, variant shapes, geometry rule, gradients, init."""

from __future__ import annotations

import csv
import re
import subprocess
import sys

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


def test_seed_summary_matches_the_recorded_table(seed_rows):
    got = [(r.type, r.output_shape, r.params) for r in seed_rows]
    assert got == _expected_rows()
    assert len(seed_rows) == 38
    assert sum(r.params for r in seed_rows) == 33_067_056
    assert sum(r.trainable for r in seed_rows) == 33_025_840
    assert sum(r.non_trainable for r in seed_rows) == 41_216


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


def test_summary_cli_prints_totals():
    out = subprocess.run(
        [sys.executable, "-m", "maxvit", "summary", "--model", "maxvit_seed"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Total params: 33,067,056" in out
    assert "Trainable params: 33,025,840" in out
    assert "Non-trainable params: 41,216" in out


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_output_shape_at_default_size(name):
    model = create_model(name, num_classes=7).eval()
    size = VARIANTS[name][1]
    with torch.no_grad():
        out = model(torch.randn(1, 3, size, size))
    assert out.shape == (1, 7)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name,size", [("maxvit_nano", 64), ("maxvit_tiny", 224)])
def test_gradients_reach_every_parameter(name, size):
    torch.manual_seed(0)  # drop_path may drop a branch for a whole small batch: fix the draw
    model = create_model(name, img_size=size, drop_path=0.1)
    model(torch.randn(4, 3, size, size)).logsumexp(1).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_nano_is_small_and_runs_at_64():
    model = create_model("maxvit_nano")
    params = sum(p.numel() for p in model.parameters())
    assert 1_000_000 <= params <= 3_000_000
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

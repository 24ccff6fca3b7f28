"""`maxvit bench profile`: op categories, the per-category table, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maxvit.bench.profile import CATEGORIES, OTHER, categorize, summarize
from maxvit.cli import main


@pytest.mark.parametrize(
    "op,category",
    [
        ("aten::native_batch_norm_backward", "batch norm"),
        ("aten::native_layer_norm", "layer norm"),
        ("aten::gelu_backward", "gelu"),
        ("aten::_softmax_backward_data", "softmax"),
        ("aten::_scaled_dot_product_flash_attention_for_cpu", "attention (sdpa)"),
        ("aten::convolution_backward", "convolution"),
        ("mkldnn::_convolution_pointwise", "convolution"),
        ("aten::mm", "matmul"),
        ("aten::addmm", "matmul"),
        ("aten::bmm", "matmul"),
        ("mkldnn::_linear_pointwise", "matmul"),
        ("aten::copy_", "copy"),
        ("aten::cat", "copy"),
        ("aten::scatter_add_", OTHER),
        ("aten::_fused_adamw_", "optimizer"),
        ("aten::add_", OTHER),
        ("aten::mul", OTHER),
    ],
)
def test_categorize(op: str, category: str) -> None:
    assert categorize(op) == category


def test_summarize_keeps_every_category_and_the_total() -> None:
    ops = {"aten::mm": 3.0, "aten::addmm": 1.0, "aten::gelu": 2.0, "aten::add": 0.5}
    totals = summarize(ops)
    assert list(totals) == [c for c, _ in CATEGORIES] + [OTHER]
    assert totals["matmul"] == 4.0 and totals["gelu"] == 2.0 and totals[OTHER] == 0.5
    assert totals["batch norm"] == 0.0
    assert sum(totals.values()) == sum(ops.values())


@pytest.mark.slow
def test_bench_profile_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "profile.json"
    argv = ["bench", "profile", "--models", "maxvit_nano,vit_nano", "--img-size", "64"]
    argv += ["--batch-size", "2", "--steps", "1", "--warmup", "1", "--top", "3"]
    assert main([*argv, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "maxvit_nano (fused inference): self CPU time per step" in text
    assert "vit_nano: 3 slowest ops, infer" in text
    doc = json.loads(out.read_text())
    nano, vit = doc["results"]
    assert nano["inference"] == "fused" and vit["inference"] == "eager"
    train = nano["train"]["categories_ms"]
    # A training step of MaxViT runs BatchNorm forward and backward, GELU, matrix products,
    # convolutions and the optimizer; its fused inference copy has no BatchNorm left.
    for category in ("batch norm", "gelu", "matmul", "convolution", "optimizer"):
        assert train[category] > 0, category
    assert nano["infer"]["categories_ms"]["batch norm"] == 0
    assert nano["infer"]["categories_ms"]["optimizer"] == 0
    assert vit["train"]["categories_ms"]["batch norm"] == 0  # ViT has LayerNorm only
    assert vit["train"]["categories_ms"]["layer norm"] > 0


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--models", "nope"], "unknown model"),
        (["--models", "maxvit_nano", "--img-size", "65"], "odd"),
        (["--models", "maxvit_nano", "--steps", "0"], "--steps"),
    ],
)
def test_bad_input_is_one_line_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "profile", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1

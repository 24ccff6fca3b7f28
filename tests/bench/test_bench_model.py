"""`maxvit bench model` end to end on nano models, memory probe, ratios, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maxvit.bench.common import build_model, count_params, format_table
from maxvit.bench.memprobe import run_probe
from maxvit.bench.model import _frozen_time, compare_to_fastest, ratios_to_reference, render
from maxvit.cli import main


@pytest.mark.slow
def test_bench_model_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sub" / "model.json"
    rc = main(
        ["bench", "model", "--models", "maxvit_nano,vit_nano", "--compare-to", "coatnet_nano",
         "--img-size", "64", "--batch-size", "2", "--rounds", "2", "--warmup", "0",
         "--no-memory", "--threads", "1", "--statistic", "min", "--json", str(out)]
    )  # fmt: skip
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["config"]["models"] == ["maxvit_nano", "vit_nano", "coatnet_nano"]
    assert doc["environment"]["threads"] == 1
    by_name = {r["model"]: r for r in doc["results"]}
    for r in by_name.values():
        assert len(r["train_s_rounds"]) == 2 and len(r["infer_s_rounds"]) == 2
        assert r["train_s_per_batch"] == min(r["train_s_rounds"])  # --statistic min
        assert r["infer_s_per_batch"] == min(r["infer_s_rounds"])
        assert r["train_img_per_s"] == pytest.approx(2 / r["train_s_per_batch"])
        assert r["gflops_train_per_image"] > 2.5 * r["gflops_forward_per_image"] > 0
        assert "peak_mem_train_mb" not in r  # --no-memory
    assert by_name["vit_nano"]["params"] == count_params(build_model("vit_nano", 64))
    # Only this project's MaxViT is timed on its fused inference copy (--fuse-inference default).
    assert doc["config"]["fuse_inference"] is True
    assert by_name["maxvit_nano"]["inference"] == "fused"
    assert by_name["vit_nano"]["inference"] == by_name["coatnet_nano"]["inference"] == "eager"
    # The ratio table divides by the first model; compare-to leaves the reference out.
    assert doc["reference"] == "maxvit_nano"
    assert doc["ratios"][0]["train_s_per_batch"] == pytest.approx(1.0)
    assert [c["model"] for c in doc["compare_to"]] == ["maxvit_nano", "vit_nano"]
    printed = capsys.readouterr().out
    assert "relative to maxvit_nano" in printed and "faster reference" in printed


@pytest.mark.slow
def test_memory_probe_in_fresh_process() -> None:
    res = run_probe(
        {"name": "vit_nano", "img_size": 64, "batch": 2, "device": "cpu",
         "channels_last": False, "threads": 1}
    )  # fmt: skip
    assert "memory_error" not in res, res
    # Training holds weights, gradients and two AdamW moments: at least 4x the fp32 weights.
    weights_mb = count_params(build_model("vit_nano", 64)) * 4 / 2**20
    assert res["peak_mem_train_mb"] >= 4 * weights_mb
    assert res["peak_mem_train_mb"] >= res["peak_mem_infer_mb"] > 0


@pytest.mark.slow
def test_memory_probe_failure_is_reported_not_raised() -> None:
    res = run_probe(
        {"name": "vit_nano", "img_size": 64, "batch": 2, "device": "cpu",
         "channels_last": False, "threads": 0}
    )  # fmt: skip
    assert "memory_error" in res and "exit 1" in res["memory_error"]


def _result(train: float, infer: float, flops: float = 1.0) -> dict:
    return {"train_img_per_s": train, "infer_img_per_s": infer,
            "train_s_per_batch": 8 / train, "gflops_train_per_image": flops}  # fmt: skip


def test_ratios_and_fastest_reference() -> None:
    results = {"ours": _result(3.0, 10.0, 2.0), "tv": _result(2.0, 12.0), "timm": _result(2.5, 8.0)}
    ratios = {q["model"]: q for q in ratios_to_reference(results, "tv")}
    assert ratios["ours"]["train_img_per_s"] == pytest.approx(1.5)
    assert ratios["ours"]["train_s_per_batch"] == pytest.approx(2 / 3)
    assert ratios["ours"]["gflops_train_per_image"] == pytest.approx(2.0)
    (cmp,) = compare_to_fastest(results, ["tv", "timm"])
    # Training: timm is the faster reference (2.5); inference: tv (12).
    assert (cmp["train_vs"], cmp["infer_vs"]) == ("timm", "tv")
    assert cmp["train_ratio"] == pytest.approx(3.0 / 2.5)
    assert cmp["infer_ratio"] == pytest.approx(10.0 / 12.0)


def test_frozen_inference_ratio_and_column() -> None:
    results = {
        "ours": {**_result(3.0, 10.0), "frozen_infer_img_per_s": 9.0},
        "tv": {**_result(2.0, 12.0), "frozen_infer_img_per_s": 11.0},
        "timm": _result(2.5, 8.0),  # its frozen compile failed: not a reference for that column
    }
    (cmp,) = compare_to_fastest(results, ["tv", "timm"])
    assert cmp["frozen_vs"] == "tv" and cmp["frozen_ratio"] == pytest.approx(9.0 / 11.0)
    rows = [
        {"model": n, "params": 1e6, "gflops_forward_per_image": 1.0, "train_spread": 0.0,
         "infer_s_per_batch": 8 / r["infer_img_per_s"], "train_gflop_per_s": 1.0, **r}
        for n, r in results.items()
    ]  # fmt: skip
    rows[2]["frozen_error"] = "BackendCompilerFailed: boom"
    doc = {
        "config": {"batch_size": 8, "img_size": 64, "channels_last": False, "compile": True,
                   "statistic": "median", "rounds": 1, "warmup": 1},
        "environment": {"device": "cpu", "cpu": "x", "precision": "fp32", "threads": 1},
        "results": rows, "reference": "tv",
        "ratios": ratios_to_reference(results, "tv"), "compare_to": [cmp],
    }  # fmt: skip
    text = render(doc)
    header = text.splitlines()[1]
    assert "frozen img/s" in header
    assert "failed" in text and "frozen inference of timm: BackendCompilerFailed: boom" in text
    assert "frozen inference 0.82x (tv)" in text


def test_a_frozen_compile_failure_is_recorded_not_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class Broken:
        def frozen_step(self) -> None:
            raise RuntimeError("inductor says no\nlong traceback")

    import torch

    result = {"model": "m"}
    assert _frozen_time(Broken(), torch.device("cpu"), result) is None
    assert result["frozen_error"] == "RuntimeError: inductor says no"
    assert "frozen inference of m failed" in capsys.readouterr().out


@pytest.mark.slow
def test_our_maxvit_compiles_frozen_and_agrees_with_eager() -> None:
    """Inductor's freezing passes accept the model (the custom SamePad autograd function once
    stopped them) and the frozen copy computes what the eager model does."""
    import torch

    from maxvit.bench.common import RunSettings
    from maxvit.bench.workload import frozen_copy
    from maxvit.models.model import MaxVit, MaxVitConfig

    torch.manual_seed(0)
    # One one-block stage of the paper design (the stem and the block's strided convs pad
    # with SamePad): the smallest model with every kind of layer, as each kernel inductor
    # builds costs seconds of C++ compilation here.
    model = MaxVit(MaxVitConfig((1,), (32,), 16, partition_size=4), 10, 32).eval()
    x = torch.randn(2, 3, 32, 32)
    settings = RunSettings(device=torch.device("cpu"), channels_last=False, compile=True)
    frozen = frozen_copy(model, settings, 32)
    with torch.no_grad():
        expected = model(x)
        got = frozen(x)
    torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--models", "nosuchmodel"], "unknown model 'nosuchmodel'"),
        (["--models", "timm:nosuchmodel"], "unknown timm model"),
        (["--models", "tv:nosuchmodel"], "unknown torchvision model"),
        (["--models", "vit_nano", "--reference", "coatnet_nano"], "--reference"),
        (["--models", "vit_nano", "--rounds", "0"], "--rounds"),
        (["--models", "vit_nano", "--compare-to", "vit_nano"], "nothing is left"),
        (["--models", "vit_nano", "--json", "."], "is a folder"),
        (["--models", "vit_nano", "--precision", "int8"], "add --compile"),
    ],
)
def test_bad_input_is_one_line_error(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.json"
    assert main(["bench", "model", "--img-size", "64", "--json", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not out.exists()


def test_prefixed_names_build_for_the_given_size() -> None:
    # tv:maxvit_t gets input_size: its stage-1 attention grid is input/4.
    tv = build_model("tv:maxvit_t", 448)
    assert tv.blocks[0].layers[0].layers.window_attention.grid_size == (112, 112)
    assert tv.classifier[-1].out_features == 200
    # torchvision's hard-coded stochastic depth is off, as in every other benchmarked model.
    depths = [m.p for m in tv.modules() if type(m).__name__ == "StochasticDepth"]
    assert depths and all(p == 0.0 for p in depths)
    # timm models with a fixed input size get img_size; the others (CNNs) are built without.
    vit = build_model("timm:vit_tiny_patch16_224", 64)
    assert vit.patch_embed.img_size == (64, 64) and vit.num_classes == 200
    assert build_model("timm:resnet18", 64).num_classes == 200


def test_table_alignment() -> None:
    text = format_table(["model", "x"], [["a", "1.0"], ["bbb", "22.5"]])
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert lines[2].startswith("a  ") and lines[3].endswith("22.5")


@pytest.mark.parametrize("case", ["gelu", "attention", "same-pad", "strided-inference", "adamw", "bf16-matmul",
                                  "jpeg-decode", "crop-resize"])  # fmt: skip
@pytest.mark.slow
def test_each_kernel_case_compares_two_ways_of_computing_the_same(case: str) -> None:
    import numpy as np
    import torch

    from maxvit.bench.kernels import TOLERANCE, build_case

    def as_array(x) -> np.ndarray:
        return x.detach().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, float)

    _, a, _, b = build_case(case)
    out_a, out_b = a(), b()
    if not isinstance(out_a, list | tuple):
        out_a, out_b = [out_a], [out_b]
    assert len(out_a) == len(out_b) > 0
    worst = max(np.abs(as_array(x) - as_array(y)).max() for x, y in zip(out_a, out_b, strict=True))
    assert worst <= TOLERANCE[case], (case, worst)
    if case == "crop-resize":  # close on average, not only within the bound
        assert (
            np.mean(
                [
                    np.abs(as_array(x) - as_array(y)).mean()
                    for x, y in zip(out_a, out_b, strict=True)
                ]
            )
            < 1.0
        )


def test_bench_kernels_table_and_unknown_case(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "kernels", "--cases", "same-pad", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "same-pad" in out and "SamePad" in out and "nn.ZeroPad2d" in out
    assert main(["bench", "kernels", "--cases", "nope"]) == 2
    assert "unknown case" in capsys.readouterr().err

"""`maxvit bench scaling` end to end at small sizes; the slope fit; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maxvit.bench.scaling import fit_slope
from maxvit.cli import main


def test_fit_slope_recovers_power_laws() -> None:
    xs = [16.0, 64.0, 256.0]
    assert fit_slope(xs, [3 * x for x in xs]) == pytest.approx(1.0)
    assert fit_slope(xs, [0.5 * x**2 for x in xs]) == pytest.approx(2.0)
    assert fit_slope([16.0], [1.0]) is None


@pytest.mark.slow
def test_bench_scaling_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "scaling"
    rc = main(
        ["bench", "scaling", "--models", "maxvit_nano,vit_nano", "--sizes", "256,128",
         "--rounds", "1", "--warmup", "0", "--threads", "1", "--out", str(out)]
    )  # fmt: skip
    assert rc == 0
    doc = json.loads((out / "scaling.json").read_text())
    assert (out / "scaling.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["config"]["sizes"] == [128, 256]
    pts = {(p["model"], p["img_size"]): p for p in doc["points"]}
    assert set(pts) == {(m, s) for m in ("maxvit_nano", "vit_nano") for s in (128, 256)}
    assert all(p["infer_s_per_image"] > 0 for p in pts.values())
    assert pts[("vit_nano", 256)]["tokens"] == 256
    # ViT's global attention: its attention share grows with the token count ...
    assert (
        pts[("vit_nano", 256)]["attention_share_forward"]
        > pts[("vit_nano", 128)]["attention_share_forward"]
        > 0
    )
    # ... so its FLOPs grow faster than linearly, and faster than MaxViT's (window + grid).
    slopes = doc["slopes"]
    assert slopes["vit_nano"]["flops"] > 1.05
    assert slopes["maxvit_nano"]["flops"] == pytest.approx(1.0, abs=0.05)
    assert slopes["vit_nano"]["time"] is not None
    # With two sizes the end slope is the whole fit.
    assert slopes["vit_nano"]["flops_end"] == pytest.approx(slopes["vit_nano"]["flops"])
    assert "slope of log(cost)" in capsys.readouterr().out


def test_no_time_gives_flops_only(tmp_path: Path) -> None:
    rc = main(["bench", "scaling", "--models", "vit_nano", "--sizes", "128,256", "--no-time",
               "--out", str(tmp_path)])  # fmt: skip
    assert rc == 0
    doc = json.loads((tmp_path / "scaling.json").read_text())
    assert all("infer_s_per_image" not in p for p in doc["points"])
    assert doc["slopes"]["vit_nano"]["time"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--sizes", "128,abc"], "--sizes must be integers"),
        (["--sizes", "8"], "--sizes must be at least"),
        (["--models", "nosuchmodel"], "unknown model"),
    ],
)
def test_bad_input_is_one_line_error(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["bench", "scaling", "--no-time", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err
    assert not out.exists()

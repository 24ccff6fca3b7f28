"""``maxvit bench scaling``: cost against input resolution, to test "O(N) vs O(N^2)".

For each model and input side S, the model is built for that size (ViT: patch 16, its
positional embedding sized for S; MaxViT: relative-position tables are per window, so only
S must divide into 7x7 windows at every stage, i.e. be a multiple of 224) and measured:

* forward FLOPs per image with the corrected counter (``maxvit.bench.flops``), which counts
  fused ``scaled_dot_product_attention`` (the stock counter misses it on CPU) and reports the
  attention share;
* with ``--time``: inference seconds per image, the median (or with ``--statistic min`` the
  fastest, better on a machine shared with other jobs) of ``--rounds`` batches.

The x axis is the number of tokens N = (S/16)^2, i.e. 16x16 patches of the input (ViT's
token count; every MaxViT stage's token count is proportional to it). A straight line of
slope 1 on the log-log plot is linear cost; global attention pushes the slope towards 2 as N
grows. The fitted slope is the least-squares slope of log(cost) on log(N) over all sizes; the
"end" slope, between the two largest sizes, shows where a quadratic term takes over.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxvit.bench.options import (
    DEVICES,
    add_options,
    from_args,
    models_option,
    option,
    parse_list,
)
from maxvit.errors import UserError
from maxvit.files import atomic_write

# Token side of the x axis: one token per 16x16 input patch.
TOKEN_PATCH = 16


def _sizes(text: str) -> list[int]:
    try:
        return [int(s) for s in parse_list(text, "sizes")]
    except ValueError:
        raise UserError(f"--sizes must be integers: {text!r}") from None


@dataclass
class ScalingConfig:
    """Options of one `bench scaling` run."""

    models: list[str] = models_option(
        "maxvit_tiny,vit_small_16", "models to measure (registry, timm:<name> or tv:<name>)"
    )
    sizes: list[int] = option([224, 448, 672], "comma-separated input sides", parse=_sizes)
    batch_size: int = option(1, "images per timed inference batch")
    time: bool = option(True, "measure inference time (--no-time: FLOPs only, fast)")
    rounds: int = option(2, "recorded timed batches per model and size")
    warmup: int = option(1, "unrecorded batches first")
    statistic: str = option(
        "median",
        "summary of the timed batches: median, or min (fastest) on a busy machine",
        choices=("median", "min"),
    )
    channels_last: bool = option(True, "channels_last model and input")
    threads: int | None = option(None, "torch CPU threads (default: torch's)")
    device: str = option("auto", "auto (CUDA when available), cpu or cuda", choices=DEVICES)
    out: Path = option(Path("bench-scaling"), "folder for scaling.json and scaling.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, ScalingConfig)


def fit_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) on log(x); None with fewer than two distinct points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    sxy = sum((p[0] - mx) * (p[1] - my) for p in pts)
    return sxy / sxx


def run_scaling(cfg: ScalingConfig) -> dict[str, Any]:
    """Measure every model at every size; write scaling.json and scaling.png into ``cfg.out``."""
    import torch

    from maxvit.bench.common import (
        RunSettings,
        apply_threads,
        build_model,
        check_model_name,
        environment,
        make_input,
        median,
        prepare,
        resolve_device,
        timed,
        user_errors_for,
        write_json,
    )
    from maxvit.bench.flops import count_flops
    from maxvit.device import autocast

    if any(s < TOKEN_PATCH for s in cfg.sizes):
        raise UserError(f"--sizes must be at least {TOKEN_PATCH}")
    if cfg.batch_size < 1 or cfg.rounds < 1 or cfg.warmup < 0:
        raise UserError("--batch-size and --rounds must be at least 1, --warmup at least 0")
    if cfg.out.exists() and not cfg.out.is_dir():
        raise UserError(f"--out {cfg.out} exists and is not a folder")
    for name in cfg.models:
        check_model_name(name)
    apply_threads(cfg.threads)
    device = resolve_device(cfg.device)
    settings = RunSettings(device=device, channels_last=cfg.channels_last, compile=False)
    sizes = sorted(set(cfg.sizes))

    points: list[dict[str, Any]] = []
    for name in cfg.models:
        for size in sizes:
            print(f"{name} at {size}x{size} ...", flush=True)
            with user_errors_for(name, size):
                model = prepare(build_model(name, size), settings).eval()
                flops = count_flops(model, make_input(1, size, settings), train=False)
            point: dict[str, Any] = {
                "model": name,
                "img_size": size,
                "tokens": (size / TOKEN_PATCH) ** 2,
                "gflops_forward_per_image": flops.forward / 1e9,
                "attention_share_forward": flops.forward_attention / max(flops.forward, 1),
            }
            if cfg.time:
                x = make_input(cfg.batch_size, size, settings)

                def infer(model: torch.nn.Module = model, x: torch.Tensor = x) -> None:
                    with torch.inference_mode(), autocast(device):
                        model(x)

                times = [timed(infer, device) for _ in range(cfg.warmup + cfg.rounds)]
                summary = median if cfg.statistic == "median" else min
                point["infer_s_per_image"] = summary(times[cfg.warmup :]) / cfg.batch_size
                point["infer_s_rounds"] = times[cfg.warmup :]
            points.append(point)
            del model

    slopes = {}
    for name in cfg.models:
        mine = [p for p in points if p["model"] == name]
        xs = [p["tokens"] for p in mine]
        flops = [p["gflops_forward_per_image"] for p in mine]
        slopes[name] = {
            "flops": fit_slope(xs, flops),
            "flops_end": fit_slope(xs[-2:], flops[-2:]),
            "time": None,
            "time_end": None,
        }
        if cfg.time:
            times = [p["infer_s_per_image"] for p in mine]
            slopes[name].update(time=fit_slope(xs, times), time_end=fit_slope(xs[-2:], times[-2:]))

    doc: dict[str, Any] = {
        "benchmark": "scaling",
        "config": {
            "models": cfg.models,
            "sizes": sizes,
            "batch_size": cfg.batch_size,
            "time": cfg.time,
            "rounds": cfg.rounds,
            "warmup": cfg.warmup,
            "statistic": cfg.statistic,
            "channels_last": cfg.channels_last,
            "token_patch": TOKEN_PATCH,
        },
        "environment": environment(device),
        "points": points,
        "slopes": slopes,
    }
    cfg.out.mkdir(parents=True, exist_ok=True)
    plot(doc, cfg.out / "scaling.png")
    write_json(cfg.out / "scaling.json", doc)
    return doc


def plot(doc: dict[str, Any], path: Path) -> None:
    """Log-log plot of FLOPs (and time) per image against tokens, slope in each legend entry."""

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    timed_run = doc["config"]["time"]
    panels = [("gflops_forward_per_image", "forward GFLOPs per image", "flops")]
    if timed_run:
        panels.append(("infer_s_per_image", "inference seconds per image", "time"))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (key, label, slope_key) in zip(axes[0], panels, strict=True):
        for name in doc["config"]["models"]:
            mine = [p for p in doc["points"] if p["model"] == name]
            slope = doc["slopes"][name][slope_key]
            tag = f"{name} (slope {slope:.2f})" if slope is not None else name
            ax.loglog([p["tokens"] for p in mine], [p[key] for p in mine], "o-", label=tag)
        # Guides through the first point of the first model: slope 1 (linear), 2 (quadratic).
        first = [p for p in doc["points"] if p["model"] == doc["config"]["models"][0]]
        x0, y0 = first[0]["tokens"], first[0][key]
        x1 = max(p["tokens"] for p in doc["points"])
        if x1 > x0:
            for k, style in ((1, ":"), (2, "--")):
                ax.loglog([x0, x1], [y0, y0 * (x1 / x0) ** k], style, color="grey", lw=1,
                          label=f"slope {k}")  # fmt: skip
        ticks = sorted({(p["tokens"], p["img_size"]) for p in doc["points"]})
        ax.set_xticks([t for t, _ in ticks], [f"{t:.0f}\n{s}px" for t, s in ticks])
        ax.minorticks_off()
        ax.set_xlabel(f"tokens N = (side / {TOKEN_PATCH})^2")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    env = doc["environment"]
    fig.suptitle(
        f"cost vs resolution ({env['device']}, {env['precision']}, {env['threads']} threads, "
        f"batch {doc['config']['batch_size']})",
        fontsize=10,
    )
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    finally:
        plt.close(fig)


def render(doc: dict[str, Any]) -> str:
    from maxvit.bench.common import format_table

    timed_run = doc["config"]["time"]
    headers = ["model", "size", "tokens", "GFLOPs fwd/img", "attention share"]
    if timed_run:
        headers.append("infer s/img")
    rows = []
    for p in doc["points"]:
        row = [
            p["model"],
            str(p["img_size"]),
            f"{p['tokens']:.0f}",
            f"{p['gflops_forward_per_image']:.2f}",
            f"{100 * p['attention_share_forward']:.1f}%",
        ]
        if timed_run:
            row.append(f"{p['infer_s_per_image']:.3f}")
        rows.append(row)

    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    out = [
        format_table(headers, rows),
        "",
        "slope of log(cost) on log(tokens), all sizes (between the two largest):",
    ]
    for name, s in doc["slopes"].items():
        line = f"  {name}: FLOPs {fmt(s['flops'])} ({fmt(s['flops_end'])})"
        if timed_run:
            line += f", time {fmt(s['time'])} ({fmt(s['time_end'])})"
        out.append(line)
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    cfg = from_args(ScalingConfig, args)
    doc = run_scaling(cfg)
    print(render(doc))
    print(f"wrote {cfg.out / 'scaling.json'} and {cfg.out / 'scaling.png'}")
    return 0

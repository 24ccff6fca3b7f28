"""``maxvit bench profile``: where a training step and an inference batch spend their time (CPU).

Each model runs the same workload as ``maxvit bench model`` (`maxvit.bench.workload`): a
training step (forward, cross-entropy, backward, AdamW step) and an inference batch, on fixed
random data, after ``--warmup`` unprofiled repetitions. PyTorch's CPU profiler
(``torch.autograd.profiler``, without kineto) records ``--steps`` of each; every op's self
time (time in the op itself, not in the ops it calls) is put in one category below, and the
table gives milliseconds per step and the share of the profiled total. The profiler adds a little time per op, so compare shares, and take speeds from
``maxvit bench model``.

CPU only: on a GPU the ops launch kernels asynchronously and their CPU time says nothing of
their cost (use ``torch.profiler`` with CUDA activities or Nsight there).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from maxvit.bench.options import (
    WorkloadOptions,
    add_options,
    from_args,
    json_option,
    models_option,
    option,
)
from maxvit.errors import UserError

# Categories of op names, tried in order; the first whose any pattern occurs in the lower-cased
# op name wins. Matrix products and convolutions are the FLOP-bound work; the rest moves memory.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("batch norm", ("batch_norm",)),
    ("layer norm", ("layer_norm",)),
    ("gelu", ("gelu",)),
    ("softmax", ("softmax",)),
    ("attention (sdpa)", ("scaled_dot_product", "flash_attention")),
    ("convolution", ("convolution", "conv2d")),
    ("matmul", ("::mm", "addmm", "bmm", "::linear", "_linear_pointwise", "matmul")),
    ("copy", ("copy_", "clone", "contiguous", "::cat")),
    ("optimizer", ("adam",)),
)
OTHER = "other element-wise"


def categorize(op_name: str) -> str:
    """The category (see `CATEGORIES`) of a profiler op name such as ``aten::gelu_backward``."""
    name = op_name.lower()
    for category, patterns in CATEGORIES:
        if any(p in name for p in patterns):
            return category
    return OTHER


@dataclass
class ProfileConfig(WorkloadOptions):
    """Options of one `bench profile` run: the workload's, then these."""

    models: list[str] = models_option(
        "maxvit_tiny,tv:maxvit_t", "models to profile (names as in `bench model`)"
    )
    steps: int = option(2, "profiled steps of each")
    warmup: int = option(2, "unprofiled steps first")
    top: int = option(0, "also list the N slowest ops")
    json_path: Path | None = json_option("write the result document here")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, ProfileConfig)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null: the profiler's C++ library logs every start and stop
    there, and a failed GPU probe as an ERROR line, which would bury the table."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _profile(fn: Any, steps: int) -> dict[str, float]:
    """Self CPU milliseconds per step of every op name over ``steps`` calls of ``fn``."""
    import torch

    with _native_stderr_silenced(), torch.autograd.profiler.profile(use_kineto=False) as prof:
        for _ in range(steps):
            fn()
    return {e.key: e.self_cpu_time_total / 1e3 / steps for e in prof.key_averages()}


def summarize(op_ms: dict[str, float]) -> dict[str, float]:
    """Milliseconds per category (every category present, zero when unused)."""
    totals = {c: 0.0 for c, _ in CATEGORIES} | {OTHER: 0.0}
    for name, ms in op_ms.items():
        totals[categorize(name)] += ms
    return totals


def run_profile(cfg: ProfileConfig) -> list[dict[str, Any]]:
    """Profile every model; one result per model with per-op and per-category times."""
    import torch

    from maxvit.bench.common import (
        RunSettings,
        build_model,
        check_model_name,
        prepare,
        user_errors_for,
    )
    from maxvit.bench.workload import Workload, fused_copy

    if cfg.steps < 1 or cfg.warmup < 0 or cfg.batch_size < 1:
        raise UserError("--steps and --batch-size must be at least 1, --warmup at least 0")
    for name in cfg.models:
        check_model_name(name)
    cpu = torch.device("cpu")
    settings = RunSettings(device=cpu, channels_last=cfg.channels_last, compile=False)
    results = []
    for name in cfg.models:
        print(f"profiling {name} ...", flush=True)
        with user_errors_for(name, cfg.img_size):
            raw = build_model(name, cfg.img_size)
            fused = fused_copy(raw, settings) if cfg.fuse_inference else None
            work = Workload(prepare(raw, settings), cfg.batch_size, cfg.img_size, settings, fused)
            for _ in range(cfg.warmup):
                work.train_step()
                work.infer_step()
            phases = {"train": _profile(work.train_step, cfg.steps)}
            phases["infer"] = _profile(work.infer_step, cfg.steps)
        results.append(
            {
                "model": name,
                "inference": "fused" if fused is not None else "eager",
                **{
                    phase: {"ops_ms": ops, "categories_ms": summarize(ops)}
                    for phase, ops in phases.items()
                },
            }
        )
    return results


def render(results: list[dict[str, Any]], top: int) -> str:
    from maxvit.bench.common import format_table

    out = []
    for res in results:
        label = res["model"] + (" (fused inference)" if res["inference"] == "fused" else "")
        train, infer = res["train"]["categories_ms"], res["infer"]["categories_ms"]
        t_total, i_total = sum(train.values()), sum(infer.values())
        rows = [
            [
                cat,
                f"{train[cat]:.1f}",
                f"{100 * train[cat] / t_total:.1f}%",
                f"{infer[cat]:.1f}",
                f"{100 * infer[cat] / i_total:.1f}%",
            ]
            for cat in train
        ]
        rows.append(["total", f"{t_total:.1f}", "100%", f"{i_total:.1f}", "100%"])
        out.append(f"{label}: self CPU time per step, by category")
        out.append(format_table(["category", "train ms", "share", "infer ms", "share"], rows))
        if top > 0:
            for phase in ("train", "infer"):
                ops = sorted(res[phase]["ops_ms"].items(), key=lambda kv: -kv[1])[:top]
                out.append(f"{label}: {top} slowest ops, {phase}")
                out.append(
                    format_table(
                        ["op", "ms", "category"], [[k, f"{v:.1f}", categorize(k)] for k, v in ops]
                    )
                )
        out.append("")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    import torch

    from maxvit.bench.common import apply_threads, environment, write_json

    cfg = from_args(ProfileConfig, args)
    if cfg.json_path is not None and cfg.json_path.is_dir():
        raise UserError(f"--json {cfg.json_path} is a folder; give a file name")
    apply_threads(cfg.threads)
    results = run_profile(cfg)
    print(
        f"cpu, fp32, {torch.get_num_threads()} threads, batch {cfg.batch_size}, "
        f"{cfg.img_size}x{cfg.img_size}; mean of {cfg.steps} profiled steps"
    )
    print(render(results, cfg.top))
    if cfg.json_path is not None:
        config = {
            k: v for k, v in asdict(cfg).items() if k not in ("models", "json_path", "threads")
        }
        doc = {
            "benchmark": "profile",
            "config": config,
            "environment": environment(torch.device("cpu")),
            "results": results,
        }
        write_json(cfg.json_path, doc)
    return 0

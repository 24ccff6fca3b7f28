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
from pathlib import Path
from typing import Any

from maxvit.bench.cli import add_workload_arguments
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models",
        default="maxvit_tiny,tv:maxvit_t",
        help="comma-separated names as in `bench model` (default maxvit_tiny,tv:maxvit_t)",
    )
    add_workload_arguments(parser)
    parser.add_argument("--steps", type=int, default=2, help="profiled steps of each (default 2)")
    parser.add_argument("--warmup", type=int, default=2, help="unprofiled steps first (default 2)")
    parser.add_argument("--top", type=int, default=0, help="also list the N slowest ops")
    parser.add_argument("--json", type=Path, default=None, help="write the result document here")


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


def run_profile(
    models: list[str],
    batch_size: int,
    img_size: int,
    steps: int,
    warmup: int,
    channels_last: bool,
    fuse_inference: bool,
) -> list[dict[str, Any]]:
    """Profile every model; one result per model with per-op and per-category times."""
    import torch

    from maxvit.bench.common import (
        RunSettings,
        build_model,
        check_model_name,
        prepare,
        user_errors_for,
    )
    from maxvit.bench.model import fused_copy
    from maxvit.bench.workload import Workload

    if steps < 1 or warmup < 0 or batch_size < 1:
        raise UserError("--steps and --batch-size must be at least 1, --warmup at least 0")
    for name in models:
        check_model_name(name)
    settings = RunSettings(device=torch.device("cpu"), channels_last=channels_last, compile=False)
    results = []
    for name in models:
        print(f"profiling {name} ...", flush=True)
        with user_errors_for(name, img_size):
            raw = build_model(name, img_size)
            fused = fused_copy(raw, settings) if fuse_inference else None
            work = Workload(prepare(raw, settings), batch_size, img_size, settings, fused)
            for _ in range(warmup):
                work.train_step()
                work.infer_step()
            phases = {"train": _profile(work.train_step, steps)}
            phases["infer"] = _profile(work.infer_step, steps)
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

    from maxvit.bench.common import apply_threads, environment, parse_list, write_json

    if args.json is not None and args.json.is_dir():
        raise UserError(f"--json {args.json} is a folder; give a file name")
    apply_threads(args.threads)
    results = run_profile(
        parse_list(args.models, "models"),
        args.batch_size,
        args.img_size,
        args.steps,
        args.warmup,
        args.channels_last,
        args.fuse_inference,
    )
    print(
        f"cpu, fp32, {torch.get_num_threads()} threads, batch {args.batch_size}, "
        f"{args.img_size}x{args.img_size}; mean of {args.steps} profiled steps"
    )
    print(render(results, args.top))
    if args.json is not None:
        doc = {
            "benchmark": "profile",
            "config": {
                k: getattr(args, k)
                for k in (
                    "batch_size",
                    "img_size",
                    "steps",
                    "warmup",
                    "channels_last",
                    "fuse_inference",
                )
            },
            "environment": environment(torch.device("cpu")),
            "results": results,
        }
        write_json(args.json, doc)
    return 0

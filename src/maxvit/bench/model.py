"""``maxvit bench model``: training and inference speed, memory, parameters and FLOPs of models.

All models are built first, then measured in one interleaved run: every round runs one
training step and one inference batch of each model in turn, so that slow drifts of a shared
machine (other jobs, thermal limits) hit all models alike and ratios stay comparable. The
figures are the median (or, with ``--statistic min``, the fastest) of the rounds, after
``--warmup`` unrecorded rounds; the JSON keeps every round. The minimum is the better
estimate of the uncontended speed on a machine shared with other jobs (contention only ever
adds time); the median is the usual figure on a quiet machine.

Peak memory comes from a fresh subprocess per model (see ``maxvit.bench.memprobe``).
FLOPs come from the corrected counter in ``maxvit.bench.flops``.

Ratios: every model against ``--reference`` (default: the first model); and, with
``--compare-to A,B``, every other model against the faster of A and B, separately for
training and inference ("our ratio to the faster of the references").
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maxvit.bench.options import (
    DEVICES,
    WorkloadOptions,
    add_options,
    from_args,
    json_option,
    models_option,
    option,
    parse_list,
)
from maxvit.errors import UserError

DEFAULT_MODELS = (
    "maxvit_seed,vit_base_16,vit_small_16,coatnet_0,tv:maxvit_t,timm:maxvit_tiny_tf_224"
)


@dataclass
class ModelBenchConfig(WorkloadOptions):
    """Options of one `bench model` run: the workload's (batch, size, layout, fused inference,
    threads), then these."""

    models: list[str] = models_option(
        DEFAULT_MODELS,
        "models to measure, in table order: registry names (maxvit_seed, vit_base_16, ...), "
        "timm:<name> or tv:<name>",
    )
    rounds: int = option(5, "recorded rounds (one training step + one inference batch each)")
    warmup: int = option(2, "unrecorded rounds first (allocator, caches, compilation)")
    compile: bool = option(
        False,
        "torch.compile every model (compiled in the warm-up rounds); also times a frozen "
        "compiled inference copy (inductor freezing, no_grad)",
    )
    precision: str = option(
        "auto",
        "precision of the frozen inference column (fp32, bf16, int8: PT2E static quantization; "
        "auto: maxvit.models.runtime's default here); bf16 and int8 need --compile",
        choices=("auto", "fp32", "bf16", "int8"),
    )
    device: str = option("auto", "auto (CUDA when available), cpu or cuda", choices=DEVICES)
    memory: bool = option(True, "peak memory per model, each in a fresh subprocess")
    statistic: str = option(
        "median",
        "summary of the rounds: median, or min (fastest round) on a busy shared machine",
        choices=("median", "min"),
    )
    reference: str | None = option(None, "model the ratio table divides by (default: the first)")
    compare_to: list[str] = option(
        [],
        "comma-separated reference implementations (added to the run if missing); every other "
        "model is compared with the faster of them",
        parse=lambda text: parse_list(text, "compare-to") if text else [],
    )
    json_path: Path | None = json_option("write the result document here")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, ModelBenchConfig)


def validate(cfg: ModelBenchConfig) -> list[str]:
    """Check options and names before any heavy work; return the full model list."""
    from maxvit.bench.common import check_model_name

    if cfg.batch_size < 1 or cfg.img_size < 1:
        raise UserError("--batch-size and --img-size must be positive")
    if cfg.rounds < 1 or cfg.warmup < 0:
        raise UserError("--rounds must be at least 1 and --warmup at least 0")
    if cfg.precision in ("bf16", "int8") and not cfg.compile:
        raise UserError(f"--precision {cfg.precision} times the frozen column: add --compile")
    if cfg.compile and cfg.warmup < 1:
        raise UserError("--compile needs --warmup of at least 1 (compilation happens there)")
    models = list(dict.fromkeys(cfg.models + cfg.compare_to))
    for name in models:
        check_model_name(name)
    if cfg.reference is not None and cfg.reference not in models:
        raise UserError(f"--reference {cfg.reference!r} is not among the models: {models}")
    if cfg.compare_to and len(models) == len(cfg.compare_to):
        raise UserError("--compare-to names every model; nothing is left to compare")
    if cfg.json_path is not None and cfg.json_path.is_dir():
        raise UserError(f"--json {cfg.json_path} is a folder; give a file name")
    return models


def run_benchmark(cfg: ModelBenchConfig) -> dict[str, Any]:
    """Measure every model; return the result document (also written to ``cfg.json_path``)."""
    import torch

    from maxvit.bench.common import (
        NUM_CLASSES,
        RunSettings,
        apply_threads,
        build_model,
        count_params,
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
    from maxvit.bench.memprobe import run_probe
    from maxvit.bench.workload import Workload, frozen_copy, fused_copy
    from maxvit.models.runtime import resolve

    models = validate(cfg)
    fuse = cfg.fuse_inference and not cfg.compile
    apply_threads(cfg.threads)
    device = resolve_device(cfg.device)
    settings = RunSettings(device=device, channels_last=cfg.channels_last, compile=cfg.compile)
    _, precision = resolve("compiled", cfg.precision, device)

    results: dict[str, dict[str, Any]] = {}
    works: dict[str, Workload] = {}
    for name in models:
        print(f"building {name} ...", flush=True)
        with user_errors_for(name, cfg.img_size):
            raw = build_model(name, cfg.img_size).to(device)
            if cfg.channels_last:
                raw = raw.to(memory_format=torch.channels_last)
            flops = count_flops(raw, make_input(1, cfg.img_size, settings))
        results[name] = {
            "model": name,
            "params": count_params(raw),
            "gflops_forward_per_image": flops.forward / 1e9,
            "gflops_train_per_image": flops.train / 1e9,
            "attention_share_forward": flops.forward_attention / max(flops.forward, 1),
        }
        fused = fused_copy(raw, settings) if fuse else None
        kind = "fused" if fused is not None else "compiled" if cfg.compile else "eager"
        results[name]["inference"] = kind
        works[name] = Workload(
            prepare(raw, settings),
            cfg.batch_size,
            cfg.img_size,
            settings,
            infer_model=fused,
            frozen_model=frozen_copy(raw, settings, cfg.img_size, precision)
            if cfg.compile
            else None,
        )

    if cfg.memory:
        for name in models:
            print(f"memory probe {name} ...", flush=True)
            spec = {
                "name": name,
                "img_size": cfg.img_size,
                "batch": cfg.batch_size,
                "device": str(device),
                "channels_last": cfg.channels_last,
                "threads": torch.get_num_threads(),
                "fuse_inference": fuse,
            }
            results[name].update(run_probe(spec))

    train_times: dict[str, list[float]] = {n: [] for n in models}
    infer_times: dict[str, list[float]] = {n: [] for n in models}
    frozen_times: dict[str, list[float]] = {n: [] for n in models if cfg.compile}
    total = cfg.warmup + cfg.rounds
    for r in range(total):
        label = (
            f"warm-up {r + 1}/{cfg.warmup}"
            if r < cfg.warmup
            else f"round {r - cfg.warmup + 1}/{cfg.rounds}"
        )
        print(f"{label} ...", flush=True)
        for name in models:
            t_train = timed(works[name].train_step, device)
            t_infer = timed(works[name].infer_step, device)
            if r >= cfg.warmup:
                train_times[name].append(t_train)
                infer_times[name].append(t_infer)
            if name in frozen_times and "frozen_error" not in results[name]:
                t_frozen = _frozen_time(works[name], device, results[name])
                if r >= cfg.warmup and t_frozen is not None:
                    frozen_times[name].append(t_frozen)

    b = cfg.batch_size
    for name in models:
        res = results[name]
        summary = median if cfg.statistic == "median" else min
        t_tr, t_in = summary(train_times[name]), summary(infer_times[name])
        res.update(
            {
                "train_s_per_batch": t_tr,
                "train_img_per_s": b / t_tr,
                "infer_s_per_batch": t_in,
                "infer_img_per_s": b / t_in,
                "train_gflop_per_s": res["gflops_train_per_image"] * b / t_tr,
                "train_spread": (max(train_times[name]) - min(train_times[name])) / t_tr,
                "train_s_rounds": train_times[name],
                "infer_s_rounds": infer_times[name],
            }
        )
        if frozen_times.get(name):
            t_fr = summary(frozen_times[name])
            res.update(
                {
                    "frozen_infer_s_per_batch": t_fr,
                    "frozen_infer_img_per_s": b / t_fr,
                    "frozen_infer_s_rounds": frozen_times[name],
                }
            )

    reference = cfg.reference or models[0]
    doc: dict[str, Any] = {
        "benchmark": "model",
        "config": {
            "models": models,
            "batch_size": cfg.batch_size,
            "img_size": cfg.img_size,
            "rounds": cfg.rounds,
            "warmup": cfg.warmup,
            "channels_last": cfg.channels_last,
            "compile": cfg.compile,
            "frozen_precision": precision,
            "fuse_inference": fuse,
            "statistic": cfg.statistic,
            "num_classes": NUM_CLASSES,
        },
        "environment": environment(device),
        "results": [results[n] for n in models],
        "reference": reference,
        "ratios": ratios_to_reference(results, reference),
    }
    if cfg.compare_to:
        doc["compare_to"] = compare_to_fastest(results, cfg.compare_to)
    if cfg.json_path is not None:
        write_json(cfg.json_path, doc)
    return doc


def _frozen_time(work: Any, device: Any, result: dict[str, Any]) -> float | None:
    """Time one frozen inference batch; a failure to compile it (inductor's freezing passes are
    less general than plain compile) is recorded in ``result`` and the model goes on without."""
    from maxvit.bench.common import timed

    try:
        return timed(work.frozen_step, device)
    except Exception as err:  # noqa: BLE001 - any compiler failure: report it, keep benchmarking
        line = str(err).strip().splitlines()[0] if str(err).strip() else ""
        result["frozen_error"] = f"{type(err).__name__}: {line}"[:300]
        print(f"frozen inference of {result['model']} failed: {result['frozen_error']}")
        return None


def ratios_to_reference(results: dict[str, dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """Each model's speed and cost as a multiple of the reference's (>1: more / slower)."""
    ref = results[reference]
    return [
        {
            "model": name,
            "train_img_per_s": r["train_img_per_s"] / ref["train_img_per_s"],
            "infer_img_per_s": r["infer_img_per_s"] / ref["infer_img_per_s"],
            "train_s_per_batch": r["train_s_per_batch"] / ref["train_s_per_batch"],
            "gflops_train_per_image": r["gflops_train_per_image"] / ref["gflops_train_per_image"],
        }
        for name, r in results.items()
    ]


def compare_to_fastest(results: dict[str, dict[str, Any]], refs: list[str]) -> list[dict[str, Any]]:
    """Each non-reference model's img/s over the faster reference's, for training and inference."""
    best_train = max(refs, key=lambda n: results[n]["train_img_per_s"])
    best_infer = max(refs, key=lambda n: results[n]["infer_img_per_s"])
    frozen = [n for n in refs if "frozen_infer_img_per_s" in results[n]]
    best_frozen = max(frozen, key=lambda n: results[n]["frozen_infer_img_per_s"], default=None)
    rows = []
    for name, r in results.items():
        if name in refs:
            continue
        row = {
            "model": name,
            "train_ratio": r["train_img_per_s"] / results[best_train]["train_img_per_s"],
            "train_vs": best_train,
            "infer_ratio": r["infer_img_per_s"] / results[best_infer]["infer_img_per_s"],
            "infer_vs": best_infer,
        }
        if best_frozen is not None and "frozen_infer_img_per_s" in r:
            best = results[best_frozen]["frozen_infer_img_per_s"]
            row.update(frozen_ratio=r["frozen_infer_img_per_s"] / best, frozen_vs=best_frozen)
        rows.append(row)
    return rows


def render(doc: dict[str, Any]) -> str:
    """The printed report: the main table, the ratio table and the compare-to lines."""
    from maxvit.bench.common import format_table

    cfg, env = doc["config"], doc["environment"]
    head = (
        f"device {env['device']} ({env.get('gpu', env['cpu'])}), {env['precision']}, "
        f"{env['threads']} threads, batch {cfg['batch_size']}, {cfg['img_size']}x{cfg['img_size']}, "
        f"channels_last {'on' if cfg['channels_last'] else 'off'}, "
        f"compile {'on' if cfg['compile'] else 'off'}; {cfg['statistic']} of {cfg['rounds']} rounds "
        f"after {cfg['warmup']} warm-up"
    )
    headers = [
        "model", "params M", "GFLOPs fwd", "GFLOPs train", "train s/batch", "train img/s",
        "spread", "infer s/batch", "infer img/s", "train GFLOP/s", "mem MB train", "mem MB infer",
    ]  # fmt: skip
    frozen = cfg["compile"]
    if frozen:
        headers.insert(9, f"frozen img/s {cfg.get('frozen_precision', 'fp32')}")
    rows = []
    for r in doc["results"]:
        name = r["model"] + (" (fused inference)" if r.get("inference") == "fused" else "")
        mem_tr = r.get("peak_mem_train_mb")
        mem_in = r.get("peak_mem_infer_mb")
        rows.append(
            [
                name,
                f"{r['params'] / 1e6:.2f}",
                f"{r['gflops_forward_per_image']:.3f}",
                f"{r['gflops_train_per_image']:.3f}",
                f"{r['train_s_per_batch']:.3f}",
                f"{r['train_img_per_s']:.2f}",
                f"{100 * r['train_spread']:.0f}%",
                f"{r['infer_s_per_batch']:.3f}",
                f"{r['infer_img_per_s']:.2f}",
                f"{r['train_gflop_per_s']:.1f}",
                "-" if mem_tr is None else f"{mem_tr:.0f}",
                "-" if mem_in is None else f"{mem_in:.0f}",
            ]
        )
        if frozen:
            fr = r.get("frozen_infer_img_per_s")
            rows[-1].insert(9, "failed" if fr is None else f"{fr:.2f}")
    out = [head, format_table(headers, rows)]
    kinds = {r["memory_kind"] for r in doc["results"] if "memory_kind" in r}
    if kinds:
        out.append(f"memory: {', '.join(sorted(kinds))}")
    for r in doc["results"]:
        if "memory_error" in r:
            out.append(f"memory of {r['model']}: {r['memory_error']}")
        if "frozen_error" in r:
            out.append(f"frozen inference of {r['model']}: {r['frozen_error']}")
    ratio_rows = [
        [
            q["model"],
            f"{q['train_img_per_s']:.2f}x",
            f"{q['infer_img_per_s']:.2f}x",
            f"{q['train_s_per_batch']:.2f}x",
            f"{q['gflops_train_per_image']:.2f}x",
        ]
        for q in doc["ratios"]
    ]
    out += [
        "",
        f"relative to {doc['reference']}:",
        format_table(
            ["model", "train img/s", "infer img/s", "train s/batch", "train FLOPs"], ratio_rows
        ),
    ]
    if "compare_to" in doc:
        out += ["", "ratio to the faster reference implementation (img/s; >1: faster):"]
        for c in doc["compare_to"]:
            frozen_part = (
                f", frozen inference {c['frozen_ratio']:.2f}x ({c['frozen_vs']})"
                if "frozen_ratio" in c
                else ""
            )
            out.append(
                f"  {c['model']}: train {c['train_ratio']:.2f}x ({c['train_vs']}), "
                f"inference {c['infer_ratio']:.2f}x ({c['infer_vs']}){frozen_part}"
            )
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    """CLI entry: run, print the tables, write JSON when asked."""
    cfg = from_args(ModelBenchConfig, args)
    doc = run_benchmark(cfg)
    print(render(doc))
    if cfg.json_path is not None:
        print(f"wrote {cfg.json_path}")
    return 0

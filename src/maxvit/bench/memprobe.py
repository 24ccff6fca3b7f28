"""Peak memory of one model, measured in a fresh process (``python -m maxvit.bench.memprobe``).

A fresh process per model is what makes per-model peaks meaningful: in the benchmark process
all models are resident at once and a CPU process's peak RSS never goes down. The probe builds
the model, runs one inference batch and then two training steps (the second one with AdamW's
state allocated) and prints one JSON line:

* CUDA: ``torch.cuda.max_memory_allocated`` during inference and during training (weights,
  gradients, optimizer state and activations; allocator caching not included);
* CPU: the process's peak RSS minus its RSS just before the model was built (the interpreter,
  torch and timm are not included; ``rss_baseline_mb`` says how much they took). The peak is
  reset first (Linux ``/proc/self/clear_refs``) so that transient peaks of importing torch do
  not hide the model's; where that is impossible the lifetime peak is used.

The model runs eagerly (no torch.compile), so the figure is the eager-mode peak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

MEMORY_KIND = {
    "cuda": "CUDA max_memory_allocated, fresh process",
    "cpu": "peak RSS over the pre-build RSS, fresh process",
}


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the probe in this process; ``spec`` holds name, img_size, batch, device, channels_last,
    threads and fuse_inference (time inference on this project's fused MaxViT copy)."""
    import timm  # noqa: F401  (imported before the baseline: libraries are not the model's)
    import torch
    import torchvision  # noqa: F401

    import maxvit.models  # noqa: F401
    from maxvit.bench.common import (
        RunSettings,
        apply_threads,
        build_model,
        current_rss_mb,
        peak_rss_mb,
        prepare,
        reset_peak_rss,
    )
    from maxvit.bench.workload import Workload, fused_copy

    apply_threads(spec["threads"])
    device = torch.device(spec["device"])
    settings = RunSettings(device=device, channels_last=spec["channels_last"], compile=False)
    reset_peak_rss()
    baseline = current_rss_mb()
    raw = build_model(spec["name"], spec["img_size"])
    fused = fused_copy(raw, settings) if spec.get("fuse_inference") else None
    work = Workload(prepare(raw, settings), spec["batch"], spec["img_size"], settings, fused)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        work.infer_step()
        torch.cuda.synchronize(device)
        infer = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
        work.train_step()
        work.train_step()
        torch.cuda.synchronize(device)
        train = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        work.infer_step()
        infer = peak_rss_mb() - baseline
        work.train_step()
        work.train_step()
        train = peak_rss_mb() - baseline
    return {
        "peak_mem_train_mb": round(train, 1),
        "peak_mem_infer_mb": round(infer, 1),
        "rss_baseline_mb": round(baseline, 1),
        "memory_kind": MEMORY_KIND[device.type],
    }


def run_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`measure` in a fresh Python process and return its result.

    A failed probe (e.g. out of memory) does not stop the benchmark: the result then holds
    ``memory_error`` and no figures.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "maxvit.bench.memprobe", json.dumps(spec)],
        capture_output=True,
        text=True,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"memory_error": f"memory probe failed (exit {proc.returncode}): {tail}"}
    return json.loads(lines[-1])


def main(argv: list[str]) -> int:
    print(json.dumps(measure(json.loads(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

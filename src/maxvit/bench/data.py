"""`maxvit bench data`: throughput of the training and evaluation input pipelines on the CPU.

The training figure covers everything between the prepared arrays and the model's input:
array read, per-sample augmentation (crop, flip, RandAugment), batching, and BatchAugment
(mixing by pass kind, uint8 upsampling to --img-size, normalisation, soft targets), with
BatchAugment on the CPU in the main process and one torch thread. "Per worker" is images per
CPU-second: the timed images divided by the CPU time the main process and the loader workers
used, i.e. the rate of one fully used core, whatever else runs on the machine (the wall-clock
rates are printed too).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        required=True,
        help="prepared folder, or the official archive / folder (prepared on first use)",
    )
    parser.add_argument("--batches", type=int, default=20, help="timed batches (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (default 3)")
    parser.add_argument(
        "--workers", type=int, default=0, help="loader worker processes (default 0)"
    )
    parser.add_argument("--img-size", type=int, default=224, help="model input side (default 224)")
    parser.add_argument(
        "--batch-size", type=int, default=128, help="images per batch (default 128)"
    )
    parser.add_argument(
        "--pipeline",
        choices=("seed", "timm", "none"),
        default="seed",
        help="augmentation preset (default seed)",
    )


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) used so far by this process and the processes `pids`.

    On a shared machine wall-clock rates depend on what else runs; CPU time gives the rate per
    fully used core. Worker CPU time comes from /proc (Linux); elsewhere only this process.
    """
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _time_train(args: argparse.Namespace, root) -> tuple[float, float, float, float]:
    """Over the timed batches: seconds waiting for the loader, seconds in BatchAugment, images,
    CPU seconds of this process and the loader workers."""
    import torch

    from maxvit.data import AugmentConfig, BatchAugment, build_train_loader

    aug = AugmentConfig(pipeline=args.pipeline)
    loader = build_train_loader(
        root,
        aug,
        batch_size=args.batch_size,
        img_size=args.img_size,
        seed=0,
        num_workers=args.workers,
    )
    batch_aug = BatchAugment(aug, loader.num_classes, args.img_size)
    generator = torch.Generator().manual_seed(0)
    wait = work = cpu = 0.0
    images = 0
    done = 0
    epoch = 0
    while done < args.warmup + args.batches:
        loader.set_epoch(epoch)
        it = iter(loader)
        pids = [w.pid for w in getattr(it, "_workers", [])]
        while done < args.warmup + args.batches:
            if done == args.warmup:
                cpu -= _cpu_seconds(pids)
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            t1 = time.perf_counter()
            x, targets = batch_aug(*batch, generator)
            t2 = time.perf_counter()
            if done >= args.warmup:
                wait += t1 - t0
                work += t2 - t1
                images += x.shape[0]
            done += 1
            if done == args.warmup + args.batches:
                cpu += _cpu_seconds(pids)
        epoch += 1
    return wait, work, images, cpu


def _time_eval(args: argparse.Namespace, root) -> float:
    """Evaluation images per second (array read, batching, EvalTransform), wall clock."""
    from maxvit.data import EvalTransform, build_eval_loader

    loader = build_eval_loader(root, "val", batch_size=args.batch_size, num_workers=args.workers)
    transform = EvalTransform(args.img_size)
    images = done = 0
    elapsed = 0.0
    while done < args.warmup + args.batches:  # the val split may be shorter: go round again
        it = iter(loader)
        while done < args.warmup + args.batches:
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            transform(batch[0])
            if done >= args.warmup:
                elapsed += time.perf_counter() - t0
                images += batch[0].shape[0]
            done += 1
    return images / elapsed


def run(args: argparse.Namespace) -> int:
    import torch

    from maxvit.data import ensure_prepared
    from maxvit.errors import UserError

    if args.batches < 1 or args.workers < 0:
        raise UserError("--batches must be >= 1 and --workers >= 0")
    root = ensure_prepared(args.source)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wait, work, images, cpu = _time_train(args, root)
        eval_rate = _time_eval(args, root)
    finally:
        torch.set_num_threads(threads)
    print(
        f"data: {root}, pipeline {args.pipeline}, batch {args.batch_size}, img {args.img_size}, "
        f"{args.workers} workers, 1 torch thread, {images} timed images"
    )
    print(f"  loader (read, per-sample aug, batching): {images / wait:8.0f} images/s waited for")
    print(f"  BatchAugment on CPU (main process):      {images / work:8.0f} images/s")
    print(f"  full training pipeline, wall clock:      {images / (wait + work):8.0f} images/s")
    print(f"  evaluation (read, batching, resize+norm):{eval_rate:8.0f} images/s")
    print(f"  CPU time used: {cpu:.2f} s for {images} images")
    print(f"train pipeline: {images / cpu:.0f} images/s per worker")
    return 0

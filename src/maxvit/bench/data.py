"""`maxvit bench data`: throughput of the training and evaluation input pipelines on the CPU.

Two workloads, by source:

* Tiny ImageNet (prepared arrays, 64x64): the whole loader as training runs it, below.
* Images of any size (class folders, shards): what one loader worker delivers (decode straight
  into the crop, flip) and the per-batch part (RandAugment, mixing, erasing, normalisation) on
  the device it runs on, timed on the same encoded images held in memory, with timm's
  ``create_transform(img_size, is_training=True, auto_augment="rand-m9-n2")`` (PIL decode
  included) timed on the same files in the same run, interleaved round by round.

For Tiny ImageNet, the training figure covers everything between the prepared arrays and the model's input:
array read, per-sample augmentation (crop, flip, RandAugment), batching, and BatchAugment
(mixing by pass kind, uint8 upsampling to --img-size, normalisation, soft targets), with
BatchAugment on the CPU in the main process and one torch thread. "Per worker" is images per
CPU-second: the timed images divided by the CPU time the main process and the loader workers
used, i.e. the rate of one fully used core, whatever else runs on the machine (the wall-clock
rates are printed too).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
from pathlib import Path

from maxvit.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        required=True,
        help="data set: Tiny ImageNet (prepared or archive), class folders or shards",
    )
    parser.add_argument(
        "--images",
        type=int,
        default=256,
        help="full-size sources: train images held in memory and timed (default 256)",
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="full-size sources: timed rounds (default 3)"
    )
    parser.add_argument(
        "--device", default="cpu", help="device of the per-batch part (default cpu; or cuda)"
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
        pids = [p.pid for p in multiprocessing.active_children()]  # the loader's workers
        started = done
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
        if done == started:
            raise UserError("the train split gives no batch at this batch size")
        epoch += 1
    return wait, work, images, cpu


def _time_eval(args: argparse.Namespace, root) -> float:
    """Evaluation images per second (array read, batching, EvalTransform), wall clock."""
    from maxvit.data import EvalTransform, build_eval_loader

    loader = build_eval_loader(
        root, "val", batch_size=args.batch_size, num_workers=args.workers, img_size=args.img_size
    )
    transform = EvalTransform(args.img_size, loader.device_crop)
    images = done = 0
    elapsed = 0.0
    while done < args.warmup + args.batches:  # the val split may be shorter: go round again
        it = iter(loader)
        started = done
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
        if done == started:
            raise UserError("the val split gives no batch")
    return images / elapsed


def run(args: argparse.Namespace) -> int:
    from maxvit.data import open_data

    if args.batches < 1 or args.workers < 0 or args.images < 1 or args.rounds < 1:
        raise UserError("--batches, --images and --rounds must be >= 1 and --workers >= 0")
    source = open_data(args.source)
    if source.native_size is None:
        return _run_full_size(args, source)
    return _run_prepared(args, source)


def _run_prepared(args: argparse.Namespace, source) -> int:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        wait, work, images, cpu = _time_train(args, source)
        eval_rate = _time_eval(args, source)
    finally:
        torch.set_num_threads(threads)
    print(
        f"data: {source.location}, pipeline {args.pipeline}, batch {args.batch_size}, "
        f"img {args.img_size}, {args.workers} workers, 1 torch thread, {images} timed images"
    )
    print(f"  loader (read, crop, flip, batching):     {images / wait:8.0f} images/s waited for")
    print(f"  BatchAugment on CPU (main process):      {images / work:8.0f} images/s")
    print(f"  full training pipeline, wall clock:      {images / (wait + work):8.0f} images/s")
    print(f"  evaluation (read, batching, resize+norm):{eval_rate:8.0f} images/s")
    print(f"  CPU time used: {cpu:.2f} s for {images} images")
    print(f"train pipeline: {images / cpu:.0f} images/s per worker")
    return 0


def _encoded_train_images(source, count: int) -> tuple[list[bytes], list[str]]:
    """The first `count` train images of a full-size source, as encoded bytes."""
    blobs, names = [], []
    for item in source.items("train"):
        if item.error is None:
            blobs.append(item.bytes())
            names.append(item.name)
        if len(blobs) == count:
            break
    return blobs, names


def _run_full_size(args: argparse.Namespace, source) -> int:
    """Worker part, per-batch part and timm's transform on the same in-memory images."""
    import io
    import statistics

    import numpy as np
    import torch
    from PIL import Image
    from timm.data import create_transform

    from maxvit.bench.common import resolve_device
    from maxvit.data import AugmentConfig, BatchAugment
    from maxvit.data.crop import TrainTransform
    from maxvit.device import sync

    device = resolve_device(args.device)
    aug = AugmentConfig(pipeline=args.pipeline)
    blobs, names = _encoded_train_images(source, args.images)
    if not blobs:
        raise UserError(f"{source.describe()} has no train images")
    transform = TrainTransform(aug, args.img_size, None)
    batch_aug = BatchAugment(aug, source.num_classes, args.img_size).to(device)
    timm_tf = create_transform(
        args.img_size,
        is_training=True,
        auto_augment=f"rand-m{aug.randaugment_magnitude}-n{aug.randaugment_ops}",
    )
    size = args.batch_size
    chunks = [(blobs[i : i + size], names[i : i + size]) for i in range(0, len(blobs), size)]
    labels = torch.zeros(size, dtype=torch.int64, device=device)
    generator = torch.Generator(device).manual_seed(0)

    def ours() -> tuple[float, list[torch.Tensor]]:
        start, out = time.process_time(), []
        for j, (chunk, chunk_names) in enumerate(chunks):
            rng = np.random.default_rng(j)
            images, _, _ = transform.encoded(chunk.__getitem__, chunk_names, rng)
            out.append(images)
        return time.process_time() - start, out

    def per_batch(batches: list[torch.Tensor]) -> float:
        batches = [b.to(device) for b in batches]
        sync(device)
        start = time.perf_counter()
        for b in batches:
            n = b.shape[0]
            batch_aug(b, labels[:n], torch.zeros(n, dtype=torch.int64, device=device), generator)
        sync(device)
        return time.perf_counter() - start

    def timm() -> float:
        start = time.process_time()
        for blob in blobs:
            timm_tf(Image.open(io.BytesIO(blob)).convert("RGB"))
        return time.process_time() - start

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, warm = ours()  # warm-up: caches, lazy imports
        timm()
        per_batch(warm[:1])
        rows = []
        for _ in range(args.rounds):
            worker_s, batches = ours()
            timm_s = timm()
            batch_s = per_batch(batches)
            rows.append((len(blobs) / worker_s, len(blobs) / timm_s, len(blobs) / batch_s))
    finally:
        torch.set_num_threads(threads)
    worker, timm_rate, batch_rate = (statistics.median(r[i] for r in rows) for i in range(3))
    ratio = statistics.median(w / t for w, t, _ in rows)  # per round: both timed back to back
    print(
        f"data: {source.describe()}, pipeline {args.pipeline}, img {args.img_size}, "
        f"{len(blobs)} images in memory, batch {size}, {args.rounds} rounds (medians), "
        "1 torch thread"
    )
    for i, (w, t, b) in enumerate(rows, 1):
        print(f"  round {i}: worker {w:.0f}, timm {t:.0f}, per-batch part {b:.0f} images/s")
    print(f"train pipeline: {worker:.0f} images/s per worker")
    print(
        f"per-batch part (RandAugment, mixing, erasing, normalisation) on {device}: "
        f"{batch_rate:.0f} images/s"
    )
    if device.type == "cpu":
        whole = 1 / (1 / worker + 1 / batch_rate)
        print(f"whole pipeline on one CPU core (worker + per-batch part): {whole:.0f} images/s")
    print(f"vs timm create_transform: {ratio:.2f} x ({timm_rate:.0f} images/s per core)")
    return 0

"""`maxvit bench loop`: the trainer's step against a minimal loop over the same model and batches.

The trainer's side is the real `_Run` built from a preset: its loader (main process or workers,
as configured), batch augmentation, forward, loss, backward, clip, AdamW, lr step, EMA, device
statistics and the host sync every `SYNC_EVERY` steps. The minimal side is what any loop must
do: forward, loss, backward and a fused AdamW step on batches already in memory (taken from the
same loader). Rounds alternate which side runs first; the medians and their ratio are printed
(docs/benchmarks.md, "The training loop"). Evaluation and checkpoints are not timed: they are
per epoch, not per step.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from maxvit.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", default="cpu-budget", help="training preset (default cpu-budget)"
    )
    parser.add_argument("--data", required=True, help="data set (any layout `maxvit train` takes)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per round (default 40)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side (default 3)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, e.g. --set num_workers=1 (repeatable)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the result as JSON here")


def run(args: argparse.Namespace) -> int:
    import torch

    from maxvit.train.config import apply_overrides, load_preset

    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        raise UserError("--steps and --rounds must be >= 1 and --warmup >= 0")
    config = apply_overrides(load_preset(args.preset), [*args.overrides, f"data={args.data}"])
    result = compare(config, steps=args.steps, warmup=args.warmup, rounds=args.rounds)
    print(
        f"{config.model} at {result['img_size']}px, batch {config.batch_size}, "
        f"{torch.get_num_threads()} threads, {config.num_workers} loader workers; median of "
        f"{args.rounds} rounds of {args.steps} steps"
    )
    print(f"trainer step   {result['trainer']:8.1f} img/s")
    print(f"minimal loop   {result['minimal']:8.1f} img/s")
    print(f"ratio          {result['ratio']:8.3f}x (trainer / minimal)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def compare(config, *, steps: int, warmup: int, rounds: int) -> dict:
    """Images per second of the trainer's step and of a minimal loop (medians over rounds)."""
    from maxvit.train import distributed
    from maxvit.train.trainer import SYNC_EVERY, _Run

    ctx = distributed.setup()
    if ctx.distributed:
        raise UserError("bench loop runs in one process (not under torchrun)")
    config = dataclasses.replace(config, total_steps=0, budget_minutes=0)  # nothing to plan
    with tempfile.TemporaryDirectory() as tmp:
        trainer = _Run(
            config, Path(tmp) / "run", ctx, resume=False, download=False, started=time.monotonic()
        )
        # the syncs (TensorBoard scalars included) are timed; their progress lines, about an
        # epoch this bench does not keep, are not printed: the last line is never 30 s old
        trainer.log.last_line = float("inf")
        minimal = _MinimalLoop(trainer, warmup + steps)
        batches = _endless(trainer.loader)

        def trainer_steps(n: int) -> None:
            for _ in range(n):
                trainer._train_step(batches)
                trainer.progress.step += 1
                if trainer.progress.step % SYNC_EVERY == 0:
                    trainer._sync()

        rates: dict[str, list[float]] = {"trainer": [], "minimal": []}
        sides = {"trainer": trainer_steps, "minimal": minimal.steps}
        for r in range(rounds):
            for name in ("trainer", "minimal") if r % 2 == 0 else ("minimal", "trainer"):
                sides[name](warmup)
                start = time.perf_counter()
                sides[name](steps)
                rates[name].append(steps * config.batch_size / (time.perf_counter() - start))
        trainer.log.close()
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        **medians,
        "ratio": medians["trainer"] / medians["minimal"],
        "rounds": rates,
        "img_size": trainer.img_size,
        "batch_size": config.batch_size,
        "model": config.model,
    }


def _endless(loader) -> Iterator:
    """The loader's batches, epoch after epoch."""
    epoch = 0
    while True:
        loader.set_epoch(epoch)
        yield from loader.iter_from(0)
        epoch += 1


class _MinimalLoop:
    """Forward, loss, backward, fused AdamW: on a fresh copy of the trainer's model, over
    batches taken once from the trainer's own loader and batch augmentation."""

    def __init__(self, trainer, count: int) -> None:
        import torch

        from maxvit.models import create_model
        from maxvit.train.build import soft_target_loss

        self.loss = soft_target_loss
        torch.manual_seed(0)
        self.model = create_model(
            trainer.cfg.model, num_classes=trainer.source.num_classes, img_size=trainer.img_size
        ).to(trainer.device)
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4, fused=True)
        self.batches = []
        with torch.no_grad():
            for images, labels, kind in itertools.islice(_endless(trainer.loader), count):
                images, labels = images.to(trainer.device), labels.to(trainer.device)
                self.batches.append(trainer.batch_aug(images, labels, kind, torch.Generator()))
        self.next = 0

    def steps(self, n: int) -> None:
        for _ in range(n):
            x, targets = self.batches[self.next % len(self.batches)]
            self.next += 1
            loss = self.loss(self.model(x), targets)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

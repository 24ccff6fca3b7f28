"""The training loop: `train(config, out_dir)`, single process or DDP.

Design decisions (see docs/training.md):

* Every random draw of a step (augmentation, stochastic depth) comes from generators seeded
  with (seed, micro-batch number, rank), and the loader is a pure function of (seed, epoch,
  batch). So the state to resume exactly is just the step counters, weights, optimizer, LR
  scheduler and EMA, and a resumed run equals an uninterrupted one bit for bit on the CPU.
* `batch_size` is the global batch of one optimizer step: each of N ranks loads
  batch_size / (N * accum_steps) per micro-batch, so runs with different process counts or
  accumulation follow the same schedule.
* Train loss and accuracy are measured on the augmented stream against the soft targets
  (accuracy = argmax of logits vs argmax of target), as recorded. A step makes no host sync:
  loss and accuracy sums, and the first step with a non-finite loss, accumulate on the device,
  and come to the host (summed over ranks, in one all-reduce) only every `SYNC_EVERY` steps,
  at checkpoints and at the end of the epoch. A non-finite loss stops the run at the next sync,
  naming the step where it first appeared; the checkpoints on disk are all from before it.
* bf16 autocast and channels_last on CUDA only (fp32 is faster on CPUs without bf16 units).
* The data set comes from `maxvit.data.open_data` (any layout); the class count and names come
  from it. `pretrained` weights load before training, the head re-initialised when the class
  count differs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from maxvit.data import BatchAugment, DataSource, build_train_loader, open_data
from maxvit.device import autocast, resolve_precision, to_model_layout
from maxvit.errors import Interrupted, UserError
from maxvit.files import remove_stale_temps, write_text
from maxvit.train import checkpoint as ckpt
from maxvit.train import distributed
from maxvit.train.config import TrainConfig, load_config, save_config
from maxvit.train.evaluate import evaluate
from maxvit.train.stop import StopSignals

LOG_INTERVAL_S = 30.0  # plain progress lines (no terminal) at most this often
SYNC_EVERY = 25  # optimizer steps between host syncs of the running statistics
CPU_ESTIMATE_AFTER = 5  # steps timed before the CPU run-time estimate
CPU_ESTIMATE_NOTE_S = 3600.0  # ... which is printed when the rest of the run takes longer
TB_EVERY_STEPS = 50  # TensorBoard step scalars every this many optimizer steps


@dataclass
class Progress:
    """Where the run stands; saved in every checkpoint (primitives only)."""

    epoch: int = 0  # current epoch, 0-based (== epochs when the run is complete)
    step_in_epoch: int = 0  # optimizer steps done in the current epoch
    step: int = 0  # optimizer steps done in total
    loss_sum: float = 0.0  # sum of per-sample train loss this epoch (all ranks)
    correct: float = 0.0  # correct augmented-stream predictions this epoch (all ranks)
    seen: float = 0.0  # samples trained on this epoch (all ranks)
    train_seconds: float = 0.0  # time spent in training steps this epoch
    data_seconds: float = 0.0  # of which waiting for the loader's next batch
    best_top1: float = -1.0  # best val top-1 so far (percent)
    best_epoch: int = 0  # epoch (1-based) of best_top1


class NonFiniteLoss(UserError):
    """The training loss became NaN or infinite; the run stops keeping the last good checkpoint."""


def soft_target_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft (mixed, smoothed) targets, averaged over the batch."""
    return torch.sum(-targets * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def lr_factor(step: int, *, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier at optimizer step `step`: linear warmup, then cosine to `min_ratio`."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def derive_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. seed, step, rank)."""
    state = np.random.SeedSequence(list(values)).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


# --------------------------------------------------------------------------------------------
# Training


def train(
    config: TrainConfig, out_dir: str | Path, *, resume: bool = False, download: bool = False
) -> Path:
    """Train `config` into the run folder `out_dir` and return it.

    With `resume`, continue from ``out_dir/checkpoints/last.pt`` exactly where it stopped
    (mid-epoch included); without a checkpoint there, start a new run. `download` allows
    fetching the official Tiny ImageNet archive into `config.data` when it holds no data set. Under torchrun this runs
    DDP; rank 0 writes every file.
    """
    ctx = distributed.setup()
    try:
        return _Run(config, Path(out_dir), ctx, resume=resume, download=download).run()
    finally:
        distributed.cleanup(ctx)


class _Running:
    """This rank's train statistics since the last sync, kept on the device.

    ``add`` is device work only (no host sync): loss and correct-prediction sums, and the first
    step whose loss was not finite. The sample count is known on the host. ``take`` returns
    them (with the stop flag) as one float64 device tensor to all-reduce, and starts over.
    """

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss * n, correct
        self.first_bad = torch.full((), -1, dtype=torch.int64, device=device)
        self.seen = 0  # samples since the last take (known on the host)

    def add(
        self,
        loss: torch.Tensor,
        logits: torch.Tensor,
        targets: torch.Tensor,
        step: int,
        *,
        check: bool = True,
    ) -> None:
        """Count one micro-batch; with `check`, remember `step` if its loss is not finite (fp16
        leaves that to its loss scaler, which skips such steps)."""
        n = targets.shape[0]
        correct = (logits.detach().argmax(1) == targets.argmax(1)).sum()
        finite = torch.isfinite(loss.detach())
        loss_sum = torch.where(finite, loss.detach().double() * n, 0.0)  # a skipped step adds 0
        self.sums += torch.stack([loss_sum, correct.double()])
        if check:
            self.first_bad = torch.where((self.first_bad < 0) & ~finite, step, self.first_bad)
        self.seen += n

    def take(self, *, stop: bool) -> torch.Tensor:
        """[loss sum, correct, non-finite (0/1), seen, stop (0/1)] since the last take, as one
        float64 device tensor to all-reduce; then starts over (the first bad step is kept)."""
        host = torch.tensor([self.seen, float(stop)], dtype=torch.float64)
        bad = (self.first_bad >= 0).double().view(1)
        out = torch.cat([self.sums, bad, host.to(self.sums.device, non_blocking=True)])
        self.sums = torch.zeros_like(self.sums)
        self.seen = 0
        return out

    def bad_step(self) -> int | None:
        """This rank's first step with a non-finite loss (a host sync: read after one is seen)."""
        step = int(self.first_bad)
        return step if step >= 0 else None


class _Run:
    """One training run: `__init__` builds everything from the config (and the checkpoint when
    resuming), `run` loops over the epochs.

    Nothing is written before everything is built: a start that fails on the data, the model,
    the batch geometry or the checkpoint leaves no run folder behind.
    """

    def __init__(
        self,
        config: TrainConfig,
        out: Path,
        ctx: distributed.DistContext,
        *,
        resume: bool,
        download: bool,
    ) -> None:
        from maxvit.models import default_img_size

        self.cfg = config
        self.out = out
        self.ckpt_dir = out / "checkpoints"
        self.ctx = ctx
        self.device = ctx.device
        state = self._read_state(resume)
        self.source = self._open_data(download)
        self.class_names: list[str] = list(self.source.class_names)
        self.img_size: int = config.img_size or default_img_size(config.model)
        self.model, self.ema, self.eager_net, self.net = self._build_model()
        self.compiled_ok = not config.compile  # until a compiled step has run
        self.micro_batch = self._micro_batch()
        self.loader = self._build_loader()
        self.steps_per_epoch = self._steps_per_epoch()
        augment = BatchAugment(config.aug, len(self.class_names), self.img_size)
        self.batch_aug = augment.to(self.device)
        # BatchAugment draws its seed from this generator on the host: a CPU generator, so that
        # drawing it is no device sync (its work runs on the device all the same)
        self.generator = torch.Generator()
        self.running = _Running(self.device)
        self.optimizer, self.scheduler = self._build_optimizer()
        self.precision = resolve_precision(config.precision, self.device)
        # fp16 needs loss scaling (bf16 has fp32's range): a step whose gradients overflow is
        # skipped by the scaler and the scale lowered, which is not a failure
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.progress = Progress()
        self.resumed = state is not None
        self.stop = StopSignals()
        self.session = (time.monotonic(), 0)  # (start, step) of this process's training
        self.last_line: float | None = None  # when the last plain progress line was printed
        if state is not None:
            self._load_state(state)
        if ctx.is_main:  # everything is built: only now is the run folder made
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, self.out / "config.yaml")
        self.tb = self._open_logs()

    def run(self) -> Path:
        cfg, ctx = self.cfg, self.ctx
        if self.progress.epoch >= cfg.epochs:
            if ctx.is_main:
                self._say(
                    f"run {self.out} is already complete ({cfg.epochs} epochs, best val top-1 "
                    f"{self.progress.best_top1:.2f}% at epoch {self.progress.best_epoch}); "
                    "nothing to train (raise epochs with --set epochs=N to train on)"
                )
            return self.out
        if ctx.is_main:
            self._say(
                f"run {self.out}: {cfg.model} at {self.img_size}px on {self.device} "
                f"(x{ctx.world_size}), {self.steps_per_epoch} steps/epoch x {cfg.epochs} epochs, "
                f"batch {cfg.batch_size} = {ctx.world_size} rank(s) x {cfg.accum_steps} x "
                f"{self.micro_batch}"
                + (
                    f"; resuming at epoch {self.progress.epoch + 1} step {self.progress.step}"
                    if self.resumed
                    else ""
                )
            )
        self.session = (time.monotonic(), self.progress.step)  # for the CPU time estimate
        try:
            with self.stop:
                while self.progress.epoch < cfg.epochs:
                    self._train_epoch()
        finally:
            if self.tb is not None:
                self.tb.close()
        if ctx.is_main:
            from maxvit.train.report import write_report

            write_report(self.out)
            self._say(
                f"done: best val top-1 {self.progress.best_top1:.2f}% (epoch "
                f"{self.progress.best_epoch}); run folder {self.out}"
            )
        return self.out

    # ---- setup -------------------------------------------------------------------------
    def _read_state(self, resume: bool) -> dict | None:
        """The checkpoint to resume from, if any; refuses to overwrite a run without resume."""
        last = self.ckpt_dir / "last.pt"
        if self.ctx.is_main and self.ckpt_dir.is_dir():
            for stale in remove_stale_temps(self.ckpt_dir):  # from a process killed mid-write
                self._say(f"removed {stale}, left by an interrupted checkpoint write")
        if last.exists() and not resume:
            raise UserError(
                f"{self.out} already holds a run; pass --resume to continue it or choose "
                "another --out"
            )
        state = None
        if resume and last.exists():
            state = ckpt.load_state(last)
            missing = [k for k in ("model", "optimizer", "scheduler", "progress") if k not in state]
            if missing:
                raise UserError(f"{last} is not a maxvit training state (it lacks {missing})")
            saved = self.out / "config.yaml"
            if saved.exists() and load_config(saved) != self.cfg and self.ctx.is_main:
                self._say(f"note: resuming with a config that differs from {saved}")
        elif resume and self.ctx.is_main:
            self._say(f"no checkpoint in {self.ckpt_dir}; starting a new run")
        return state

    def _open_data(self, download: bool) -> DataSource:
        """Local rank 0 of each node prepares (and maybe downloads) first; the others reuse."""
        if self.ctx.local_rank == 0:
            source = open_data(self.cfg.data, download=download)
        self.ctx.barrier()
        if self.ctx.local_rank != 0:
            source = open_data(self.cfg.data)
        return source

    def _build_model(self) -> tuple[nn.Module, Any, nn.Module, nn.Module]:
        """(model, EMA or None, the model as the step calls it (DDP-wrapped), the same compiled
        when `compile` is on: what the step calls, falling back to the former if that fails)."""
        from maxvit.models import create_model

        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        overrides = {"drop_path": cfg.drop_path} if cfg.drop_path else {}
        model = create_model(
            cfg.model, num_classes=len(self.class_names), img_size=self.img_size, **overrides
        )
        if cfg.pretrained:
            from maxvit.models.convert import load_pretrained

            loaded = load_pretrained(model, cfg.model, cfg.pretrained)
            if self.ctx.is_main:
                self._say(loaded)
        if cfg.sync_bn:
            if self.device.type != "cuda" or not self.ctx.distributed:
                raise UserError("sync_bn needs CUDA and more than one process (torchrun)")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = to_model_layout(model.to(self.device), self.device)
        ema = None
        if cfg.ema_decay:
            from timm.utils import ModelEmaV3

            ema = ModelEmaV3(model, decay=cfg.ema_decay)
        net: nn.Module = model
        if self.ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            net = DistributedDataParallel(net, device_ids=ids)
        return model, ema, net, torch.compile(net) if cfg.compile else net

    def _micro_batch(self) -> int:
        cfg, per_step = self.cfg, self.ctx.world_size * self.cfg.accum_steps
        if cfg.batch_size % per_step:
            raise UserError(
                f"batch_size {cfg.batch_size} is not divisible by processes x accum_steps "
                f"= {per_step}"
            )
        return cfg.batch_size // per_step

    def _build_loader(self) -> Any:
        cfg, ctx = self.cfg, self.ctx
        return build_train_loader(
            self.source,
            cfg.aug,
            batch_size=self.micro_batch,
            img_size=self.img_size,
            seed=cfg.seed,
            num_workers=cfg.num_workers,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )

    def _steps_per_epoch(self) -> int:
        cfg = self.cfg
        full = len(self.loader) // cfg.accum_steps
        steps = min(full, cfg.steps_per_epoch) if cfg.steps_per_epoch else full
        if steps < 1:
            raise UserError(f"the train set gives no full step of batch {cfg.batch_size}")
        return steps

    def _build_optimizer(self) -> tuple[torch.optim.Optimizer, Any]:
        cfg = self.cfg
        if cfg.decay_norm_bias:
            params: Any = [p for p in self.model.parameters() if p.requires_grad]
        else:
            from timm.optim import param_groups_weight_decay

            skip = getattr(self.model, "no_weight_decay", set)()
            params = param_groups_weight_decay(
                self.model, cfg.weight_decay, no_weight_decay_list=skip
            )
        optimizer = torch.optim.AdamW(
            params,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            # One fused kernel over all parameters, faster than the default multi-tensor loop on
            # the CPU too (maxvit bench kernels --cases adamw, docs/benchmarks.md).
            fused=self.device.type in ("cuda", "cpu") or None,
        )
        total = cfg.epochs * self.steps_per_epoch
        warmup = round(cfg.warmup_epochs * self.steps_per_epoch)
        min_ratio = cfg.min_lr / cfg.lr if cfg.lr else 0.0

        def factor(step: int) -> float:
            return lr_factor(step, total=total, warmup=warmup, min_ratio=min_ratio)

        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def _load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self.progress = Progress(**state["progress"])

    def _open_logs(self) -> Any:
        """metrics.jsonl trimmed to the resumed checkpoint; the TensorBoard writer (rank 0)."""
        if not self.ctx.is_main:
            return None
        resumed = self.resumed
        metrics = self.out / "metrics.jsonl"
        if resumed and metrics.exists():  # drop epochs logged after the checkpoint we resume
            from maxvit.train.report import read_metrics

            kept = [row for row in read_metrics(self.out) if row["epoch"] <= self.progress.epoch]
            write_text(metrics, "".join(json.dumps(row) + "\n" for row in kept))
        elif not resumed:
            metrics.unlink(missing_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        purge = self.progress.step if resumed else None
        return SummaryWriter(str(self.out / "tensorboard"), purge_step=purge)

    # ---- loop --------------------------------------------------------------------------
    def _train_epoch(self) -> None:
        cfg, ctx, p = self.cfg, self.ctx, self.progress
        epoch = p.epoch
        self.loader.set_epoch(epoch)
        batches = self.loader.iter_from(p.step_in_epoch * cfg.accum_steps)
        bar = self._progress_bar(epoch)
        self.model.train()
        while p.step_in_epoch < self.steps_per_epoch:
            start = time.perf_counter()
            self._train_step(batches)
            p.train_seconds += time.perf_counter() - start
            p.step += 1
            p.step_in_epoch += 1
            if bar is not None:
                bar.update(1)
            checkpoint = (
                cfg.ckpt_every_steps
                and p.step % cfg.ckpt_every_steps == 0
                and p.step_in_epoch < self.steps_per_epoch
            )
            # single process: a signal stops at this step; under DDP the ranks agree at a sync
            stop_now = self.stop.signal is not None and not ctx.distributed
            first = p.step == self.session[1] + 1  # the first step of this process: say so
            if p.step % SYNC_EVERY == 0 or checkpoint or stop_now or first:
                stop = self._sync(bar)
                if stop:
                    self._save("last")
                    self._stopped()
            if checkpoint:
                self._save("last")
            if ctx.is_main and p.step == self.session[1] + CPU_ESTIMATE_AFTER:
                self._cpu_estimate()
        if bar is not None:
            bar.close()
        self._sync(None)
        self._end_epoch()

    def _sync(self, bar: Any) -> bool:
        """The host sync: running statistics (and the stop flag) summed over the ranks into
        `progress`; a non-finite loss stops the run here. Returns whether to stop."""
        cfg, p = self.cfg, self.progress
        loss_sum, correct, bad, seen, stop = self.ctx.sum_tensor(
            self.running.take(stop=self.stop.signal is not None)
        )
        if bad:
            step = self.running.bad_step()
            where = f"at step {step}" if step is not None else "on another rank"
            raise NonFiniteLoss(
                f"training loss became non-finite {where} (epoch {p.epoch + 1}); stopped at "
                f"step {p.step}. The last good checkpoint is {self.ckpt_dir / 'last.pt'} "
                "(lower lr or set clip_grad)"
            )
        p.loss_sum, p.correct, p.seen = p.loss_sum + loss_sum, p.correct + correct, p.seen + seen
        if not p.seen:
            return bool(stop)
        lr = self.optimizer.param_groups[0]["lr"]
        if self.tb is not None and seen:
            self.tb.add_scalar("train/loss_step", loss_sum / seen, p.step)
            self.tb.add_scalar("train/lr", lr, p.step)
        if bar is not None:
            bar.set_postfix(
                loss=f"{p.loss_sum / p.seen:.3f}", acc=f"{100 * p.correct / p.seen:.1f}%"
            )
        elif self.ctx.is_main and (
            self.last_line is None or time.monotonic() - self.last_line > LOG_INTERVAL_S
        ):
            self.last_line = time.monotonic()
            self._say(
                f"epoch {p.epoch + 1}/{cfg.epochs} step {p.step_in_epoch}/{self.steps_per_epoch} "
                f"loss {p.loss_sum / p.seen:.4f} acc {100 * p.correct / p.seen:.2f}% "
                f"lr {lr:.3g} {p.seen / max(p.train_seconds, 1e-9):.1f} img/s"
            )
        return bool(stop)

    def _forward_backward(
        self, x: torch.Tensor, targets: torch.Tensor, no_sync: bool, step: int
    ) -> None:
        with (
            self.net.no_sync() if no_sync else contextlib.nullcontext(),
            autocast(self.device, self.precision),
        ):
            logits = self.net(x)
            loss = soft_target_loss(logits, targets)
        scaled = loss / self.cfg.accum_steps
        (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        self.running.add(loss, logits, targets, step, check=self.scaler is None)

    def _stopped(self) -> None:
        """After the checkpoint of a signal's step: say what was saved and how to resume."""
        from maxvit.train.stop import EXIT_CODES, NAMES

        p, sig = self.progress, self.stop.signal
        raise Interrupted(
            f"{NAMES.get(sig, 'a signal on another rank')} at step {p.step} (epoch {p.epoch + 1}, "
            f"step {p.step_in_epoch} of {self.steps_per_epoch}); checkpoint "
            f"{self.ckpt_dir / 'last.pt'}; resume with: maxvit train --resume --out {self.out}",
            EXIT_CODES.get(sig, 143),
        )

    def _cpu_estimate(self) -> None:
        """On a CPU, once a few steps are timed: how long the whole run would take, when long."""
        if self.device.type != "cpu":
            return
        start, step0 = self.session
        per_step = (time.monotonic() - start) / max(self.progress.step - step0, 1)
        left = self.cfg.epochs * self.steps_per_epoch - self.progress.step
        if left * per_step > CPU_ESTIMATE_NOTE_S:
            rate = self.cfg.batch_size / per_step
            self._say(
                f"note: training on the CPU at {rate:.1f} img/s, the remaining {left:,} steps take "
                f"about {left * per_step / 3600:.1f} h; this recipe is meant for a GPU. On a CPU, "
                "`make train PRESET=cpu-mini DATA=../shared/data/tiny-imagenet-200-mini.zip` "
                "trains in minutes"
            )

    def _train_step(self, batches: Any) -> None:
        """One optimizer step over accum_steps micro-batches, with no host sync: its statistics
        accumulate on the device (`_Running`)."""
        cfg, ctx, p = self.cfg, self.ctx, self.progress
        self.optimizer.zero_grad(set_to_none=True)
        for micro in range(cfg.accum_steps):
            wait = time.perf_counter()
            images, labels, kind = next(batches)
            p.data_seconds += time.perf_counter() - wait
            seed = derive_seed(cfg.seed, p.step * cfg.accum_steps + micro, ctx.rank)
            torch.manual_seed(seed)  # stochastic depth and any other draw in the model
            self.generator.manual_seed(seed)
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            with torch.no_grad():  # `kind` stays on the host: BatchAugment indexes with it
                x, targets = self.batch_aug(images, labels, kind, self.generator)
            x = to_model_layout(x, self.device)
            last = micro == cfg.accum_steps - 1
            no_sync = self.ctx.distributed and not last
            try:
                self._forward_backward(x, targets, no_sync, p.step + 1)
            except Exception as exc:
                if self.compiled_ok or isinstance(exc, UserError):
                    raise
                # torch.compile failed on the first step: train eager rather than not at all
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
                why = f"torch.compile failed ({type(exc).__name__}: {first})"
                if cfg.compile == "require":
                    raise UserError(f"{why}; stopped (compile: require)") from exc
                if ctx.is_main:
                    self._say(f"warning: {why}; training eager (compile: require stops instead)")
                self.optimizer.zero_grad(set_to_none=True)
                self.net, self.compiled_ok = self.eager_net, True
                torch.manual_seed(seed)
                self._forward_backward(x, targets, no_sync, p.step + 1)
            self.compiled_ok = True
        if self.scaler is not None:
            if cfg.clip_grad:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
            self.scaler.step(self.optimizer)  # skipped when the gradients overflowed
            self.scaler.update()
        else:
            if cfg.clip_grad:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
            self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, step=p.step)

    def _end_epoch(self) -> None:
        cfg, ctx, p = self.cfg, self.ctx, self.progress
        val_start = time.perf_counter()
        eval_model = self.ema.module if self.ema is not None else self.model
        if (line := self.loader.bad_report()) is not None:  # every rank counts its own
            self._say(line)
        val = evaluate(
            eval_model,
            self.source,
            "val",
            img_size=self.img_size,
            crop=cfg.eval_crop,
            batch_size=max(64, 2 * self.micro_batch),  # no gradients: larger batches fit
            num_workers=min(cfg.num_workers, 2),
            device=self.device,
            ctx=ctx,
            precision=self.precision,
        )
        row = {
            "epoch": p.epoch + 1,
            "step": p.step,
            "train_loss": p.loss_sum / p.seen,
            "train_acc": 100 * p.correct / p.seen,
            "val_top1": val["top1"],
            "val_top5": val["top5"],
            "val_loss": val["loss"],
            "lr": self.scheduler.get_last_lr()[0],
            "images_per_s": p.seen / max(p.train_seconds, 1e-9),
            "data_wait_s": p.data_seconds,
            "epoch_time_s": p.train_seconds + time.perf_counter() - val_start,
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        is_best = val["top1"] > p.best_top1
        if is_best:
            p.best_top1, p.best_epoch = val["top1"], p.epoch + 1
        p.epoch += 1
        p.step_in_epoch = 0
        p.loss_sum = p.correct = p.seen = p.train_seconds = p.data_seconds = 0.0
        if ctx.is_main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            for key, value in row.items():
                if key not in ("epoch", "step", "time"):
                    self.tb.add_scalar(f"epoch/{key}", value, p.step)
            self.tb.flush()
            self._say(
                f"epoch {row['epoch']}/{cfg.epochs}: train loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.2f}% | val top-1 {row['val_top1']:.2f}% "
                f"top-5 {row['val_top5']:.2f}% loss {row['val_loss']:.4f} | "
                f"{row['images_per_s']:.1f} img/s, {row['epoch_time_s']:.0f} s"
            )
        self._save("last", best=is_best)

    # ---- checkpoints and output --------------------------------------------------------
    def _save(self, name: str, *, best: bool = False) -> None:
        """Write checkpoint `name` (and ``best`` weights); rank 0 only; disk full -> UserError.

        Order: best weights, last weights, then the training state, the commit point. An
        interrupt between them leaves weights at most one save ahead of the state; resuming redoes
        those steps exactly and writes the same files again, so the summary's best epoch and
        ``best.safetensors`` cannot disagree after the run."""
        if not self.ctx.is_main:
            return
        p = self.progress
        weights = (self.ema.module if self.ema is not None else self.model).state_dict()
        meta = {
            "model": self.cfg.model,
            "img_size": self.img_size,
            "class_names": self.class_names,
            "classes": list(self.source.classes),
            "eval_crop": self.cfg.eval_crop,
            "step": p.step,
            "epoch": p.epoch,
        }
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "progress": dataclasses.asdict(p),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        try:  # the training state last: it commits the step, so the files never disagree
            if best:
                ckpt.save_weights(self.ckpt_dir / "best.safetensors", weights, meta)
            ckpt.save_weights(self.ckpt_dir / f"{name}.safetensors", weights, meta)
            ckpt.save_state(self.ckpt_dir / f"{name}.pt", state)
        except OSError as exc:
            raise UserError(
                f"cannot write a checkpoint in {self.ckpt_dir} at step {p.step} ({exc.strerror or exc}); "
                "the previous checkpoint files are intact"
            ) from None

    def _progress_bar(self, epoch: int) -> Any:
        if not (self.ctx.is_main and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(
            total=self.steps_per_epoch,
            initial=self.progress.step_in_epoch,
            desc=f"epoch {epoch + 1}/{self.cfg.epochs}",
            dynamic_ncols=True,
            leave=False,
        )

    @staticmethod
    def _say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

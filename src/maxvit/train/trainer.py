"""The training loop: `train(config, out_dir)`, single process or DDP (docs/training.md,
"The loop").

* Every random draw of a step comes from generators seeded with (seed, micro-batch, rank) and
  the loader is a pure function of (seed, epoch, batch): resuming needs only the counters,
  weights, optimizer, scheduler and EMA, and equals an uninterrupted run bit for bit on a CPU.
* `batch_size` is the global batch of one optimizer step (ranks x accumulation x micro-batch).
* No host sync inside a step: statistics stay on the device (`DeviceStats`) until a sync every
  `SYNC_EVERY` steps, at checkpoints and at epoch ends, where a non-finite loss stops the run.
* The run is ``total_steps`` long (epochs x steps per epoch unless set; a budget fixes it after
  timing the first steps, `maxvit.train.schedule`); every epoch, the partial last one included,
  ends with an evaluation and a checkpoint. Parts: `build`, `checkpoint`, `log`, `stats`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maxvit.data import BatchAugment, build_train_loader
from maxvit.device import autocast, resolve_precision, to_model_layout
from maxvit.errors import UserError, signals_interrupt
from maxvit.files import folder_lock
from maxvit.train import build, distributed
from maxvit.train import checkpoint as ckpt
from maxvit.train import schedule as sched
from maxvit.train.build import soft_target_loss
from maxvit.train.config import TrainConfig, load_config, save_config
from maxvit.train.evaluate import evaluate
from maxvit.train.log import RunLog, say
from maxvit.train.memory import check_fits
from maxvit.train.stats import DeviceStats, Progress
from maxvit.train.stop import StopSignals

SYNC_EVERY = 25  # optimizer steps between host syncs of the running statistics
CPU_NOTE_AFTER = 5  # steps timed before the CPU run-time note


class NonFiniteLoss(UserError):
    """The training loss became NaN or infinite; the run stops keeping the last good checkpoint."""


def derive_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from integers (e.g. seed, step, rank)."""
    state = np.random.SeedSequence(list(values)).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def train(
    config: TrainConfig, out_dir: str | Path, *, resume: bool = False, download: bool = False
) -> Path:
    """Train `config` into the run folder `out_dir` and return it.

    With `resume`, continue from ``out_dir/checkpoints/last.pt`` exactly where it stopped
    (mid-epoch included); without a checkpoint there, start a new run. `download` allows
    fetching the official Tiny ImageNet archive into `config.data` when it holds no data set.
    Under torchrun this runs DDP; rank 0 writes every file, and holds `out_dir` for the run
    (`maxvit.files.folder_lock`: another process training into it is refused in one line).
    A budget counts from this call.
    """
    started = time.monotonic()
    ctx = distributed.setup()
    # rank 0 writes the run folder: it keeps a second run (or a resume) out while this one runs
    held = folder_lock(out_dir) if ctx.is_main else contextlib.nullcontext()
    try:
        with held:
            # a signal while building ends in one line (in training, StopSignals checkpoints)
            with signals_interrupt(f"starting the run in {out_dir}; nothing was written"):
                run = _Run(
                    config, Path(out_dir), ctx, resume=resume, download=download, started=started
                )
            return run.run()
    finally:
        distributed.cleanup(ctx)


class _Run:
    """One training run: `__init__` builds everything from the config (and the checkpoint when
    resuming), `run` loops over the epochs. Nothing is written before everything is built: a
    start that fails on the data, the model, the batch geometry, compiling or the checkpoint
    leaves no run folder behind."""

    def __init__(
        self, config: TrainConfig, out: Path, ctx: distributed.DistContext, *, resume: bool,
        download: bool, started: float,
    ) -> None:  # fmt: skip
        from maxvit.models import default_img_size

        self.cfg, self.out, self.ctx, self.device = config, out, ctx, ctx.device
        self.ckpt_dir = out / "checkpoints"
        state = ckpt.read_resume_state(self.ckpt_dir, resume=resume, is_main=ctx.is_main)
        saved = out / "config.yaml"
        if state is not None and saved.exists() and load_config(saved) != config and ctx.is_main:
            say(f"note: resuming with a config that differs from {saved}")
        self.source = build.open_source(config, ctx, download=download)
        if not self.source.has_split("val"):  # every epoch ends with an evaluation
            raise UserError(f"{self.source.describe()} has no val split to evaluate on")
        classes = self.source.num_classes
        self.img_size: int = config.img_size or default_img_size(config.model)
        self.precision = resolve_precision(config.precision, self.device)
        self.model, self.ema, net = build.build_model(config, classes, self.img_size, ctx, say)
        self.micro_batch = build.micro_batch(config, ctx.world_size)
        check_fits(self.model, self.img_size, self.micro_batch, config.num_workers, config.model)
        self.loader = build_train_loader(
            self.source, config.aug, batch_size=self.micro_batch, img_size=self.img_size,
            seed=config.seed, num_workers=config.num_workers, rank=ctx.rank,
            world_size=ctx.world_size, bad_samples=config.bad_samples,
        )  # fmt: skip
        self.steps_per_epoch = build.steps_per_epoch(config, len(self.loader))
        # the stride of the fixed train subset that `fit_images` scores at each epoch end
        self.fit_every = max(1, (self.source.count("train") or 0) // max(1, config.fit_images))
        self.length = sched.RunLength(config, self.steps_per_epoch, started, self.device)
        self.batch_aug = BatchAugment(config.aug, classes, self.img_size).to(self.device)
        # BatchAugment draws its seed from this generator on the host: a CPU generator, so that
        # drawing it is no device sync (its work runs on the device all the same)
        self.generator = torch.Generator()
        self.net = build.compile_or_eager(
            net, self.model, (self.micro_batch, self.img_size, self.img_size), classes,
            mode=config.compile, precision=self.precision, say=say if ctx.is_main else lambda _: None,
        )  # fmt: skip
        self.stats = DeviceStats(self.device)
        self.optimizer = build.build_optimizer(config, self.model, self.device)
        self.scheduler = build.build_scheduler(
            config, self.optimizer, self.steps_per_epoch, lambda: self.length.total_steps
        )
        # fp16 needs loss scaling (bf16 has fp32's range): a step whose gradients overflow is
        # skipped by the scaler and the scale lowered, which is not a failure
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.progress = Progress()
        self.stop = StopSignals()
        if state is not None:
            self.progress = Progress(**ckpt.restore(
                state, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                ema=self.ema, scaler=self.scaler,
            ))  # fmt: skip
        if ctx.is_main:  # everything is built: only now is the run folder made
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            save_config(config, saved)
        resumed_at = self.progress.step if state is not None else None
        self.log = RunLog(out, is_main=ctx.is_main, resumed_at=resumed_at)

    def run(self) -> Path:
        cfg, p, length = self.cfg, self.progress, self.length
        if length.finished(p):
            self.log.say(f"run {self.out} {length.already_complete(p)}")
            return self.out
        ranks = self.ctx.world_size
        resuming = f"; resuming at epoch {p.epoch + 1} step {p.step_in_epoch}" if p.step else ""
        self.log.say(
            f"run {self.out}: {cfg.model} at {self.img_size}px on {self.device} (x{ranks}), "
            f"{self.steps_per_epoch} steps/epoch x {length.describe()}, batch {cfg.batch_size} = "
            f"{ranks} rank(s) x {cfg.accum_steps} x {self.micro_batch}{resuming}"
        )
        self.session = (time.monotonic(), p.step)  # this process's training: start, first step
        try:
            with self.stop:
                while not length.finished(p):
                    self._train_epoch()
        finally:
            self.log.close()
        if self.ctx.is_main:
            from maxvit.train.report import write_report

            write_report(self.out)
            self.log.say(
                f"done in {length.spent()}{length.fit_note(p)}: val top-1"
                f"{' with flip TTA' * (cfg.tta == 'flip')} {self.last_top1:.2f}% at the end, best "
                f"{p.best_top1:.2f}% (epoch {p.best_epoch}); run folder {self.out}"
            )
        return self.out

    # ---- the loop ------------------------------------------------------------------------
    def _train_epoch(self) -> None:
        cfg, p = self.cfg, self.progress
        self.loader.set_epoch(p.epoch)
        batches = self.loader.iter_from(p.step_in_epoch * cfg.accum_steps)
        length = self.length
        label = f"epoch {p.epoch + 1}" + (f"/{length.epochs}" if length.planned else "")
        self.log.open_bar(label, length.epoch_steps(p.epoch), p.step_in_epoch)
        self.model.train()
        while p.step_in_epoch < length.epoch_steps(p.epoch):
            start = time.perf_counter()
            self._train_step(batches)
            p.train_seconds += time.perf_counter() - start
            p.step += 1
            p.step_in_epoch += 1
            self.log.step_done()
            done_here = p.step - self.session[1]
            if plan := length.after_step(done_here, p.step, self._val_images):
                self._fix_plan(plan)
            last = p.step_in_epoch >= length.epoch_steps(p.epoch)
            checkpoint = cfg.ckpt_every_steps and p.step % cfg.ckpt_every_steps == 0 and not last
            # single process: a signal stops at this step; under DDP the ranks agree at a sync
            stop_now = self.stop.signal is not None and not self.ctx.distributed
            if p.step % SYNC_EVERY == 0 or checkpoint or stop_now or done_here == 1:
                if self._sync():
                    self._save("last")
                    raise self.stop.interrupted(
                        f"at step {p.step} (epoch {p.epoch + 1}, step {p.step_in_epoch} of "
                        f"{length.epoch_steps(p.epoch)})", self.ckpt_dir / "last.pt", self.out,
                    )  # fmt: skip
            if checkpoint:
                with length.paused():
                    self._save("last")
            if done_here == CPU_NOTE_AFTER and self.device.type == "cpu" and length.planned:
                step_s = (time.monotonic() - self.session[0]) / CPU_NOTE_AFTER
                self.log.cpu_note(
                    cfg.batch_size, steps_left=length.total_steps - p.step, step_s=step_s
                )
        self.log.close_bar()
        self._sync()
        with length.paused():
            self._end_epoch()

    def _train_step(self, batches) -> None:
        """One optimizer step, read top to bottom: for each of accum_steps micro-batches load,
        augment, forward, loss, backward, count; then clip, optimizer step, lr step, EMA. No
        host sync: the statistics stay on the device (`DeviceStats`)."""
        cfg, p, device = self.cfg, self.progress, self.device
        self.optimizer.zero_grad(set_to_none=True)
        for micro in range(cfg.accum_steps):
            wait = time.perf_counter()
            images, labels, kind = next(batches)
            p.data_seconds += time.perf_counter() - wait
            seed = derive_seed(cfg.seed, p.step * cfg.accum_steps + micro, self.ctx.rank)
            torch.manual_seed(seed)  # stochastic depth and any other draw in the model
            self.generator.manual_seed(seed)
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            with torch.no_grad():  # `kind` stays on the host: BatchAugment indexes with it
                x, targets = self.batch_aug(images, labels, kind, self.generator)
            x = to_model_layout(x, device)
            accumulating = self.ctx.distributed and micro < cfg.accum_steps - 1
            with (
                self.net.no_sync() if accumulating else contextlib.nullcontext(),
                autocast(device, self.precision),
            ):
                logits = self.net(x)
                loss = soft_target_loss(logits, targets)
            scaled = loss / cfg.accum_steps
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            self.stats.add(loss, logits, targets, p.step + 1, check=self.scaler is None)
        if self.scaler is not None and cfg.clip_grad:
            self.scaler.unscale_(self.optimizer)
        if cfg.clip_grad:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skipped when the gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model, step=p.step)

    def _sync(self) -> bool:
        """The host sync: running statistics (and the stop flag) summed over the ranks into
        `progress`; a non-finite loss stops the run here. Returns whether to stop."""
        p = self.progress
        loss_sum, correct, bad, seen, stop = self.ctx.sum_tensor(
            self.stats.take(stop=self.stop.signal is not None)
        )
        if bad:
            step = self.stats.bad_step()
            where = f"at step {step}" if step is not None else "on another rank"
            raise NonFiniteLoss(
                f"training loss became non-finite {where} (epoch {p.epoch + 1}); stopped at "
                f"step {p.step}. The last good checkpoint is {self.ckpt_dir / 'last.pt'} "
                "(lower lr or set clip_grad)"
            )
        p.loss_sum, p.correct, p.seen = p.loss_sum + loss_sum, p.correct + correct, p.seen + seen
        if p.seen:
            self.log.progress(
                f"epoch {p.epoch + 1} step {p.step_in_epoch}/{self.length.epoch_steps(p.epoch)}",
                step=p.step, loss=p.loss_sum / p.seen, acc=100 * p.correct / p.seen,
                lr=self.optimizer.param_groups[0]["lr"],
                rate=p.seen / max(p.train_seconds, 1e-9),
                step_loss=loss_sum / seen if seen else None,
            )  # fmt: skip
        return bool(stop)

    def _val_images(self) -> int:
        """Images evaluated at each epoch end (for a budget's plan)."""
        fit = (self.source.count("train") or 0) // self.fit_every if self.cfg.fit_images else 0
        return (self.source.count("val") or 0) + fit

    def _fix_plan(self, plan: sched.Plan) -> None:
        """Fix the step count of a budget (rank 0's plan, for all ranks), write it to
        config.yaml, and say the plan in one line."""
        total = int(self.ctx.sum([plan.total_steps if self.ctx.is_main else 0])[0])
        self.length.fix(total)
        budget = self.cfg.budget_minutes
        self.cfg = dataclasses.replace(self.cfg, total_steps=total)
        if self.ctx.is_main:
            save_config(self.cfg, self.out / "config.yaml")
            say(plan.describe(budget, self.cfg.batch_size, self.steps_per_epoch))
            if total == self.progress.step:
                say("note: the budget leaves no time for more steps; the run ends here")

    def _end_epoch(self) -> None:
        cfg, p = self.cfg, self.progress
        t0 = time.perf_counter()
        if (line := self.loader.bad_report()) is not None:  # every rank counts its own
            say(line)
        val = self._evaluate("val", tta=cfg.tta)
        if cfg.fit_images:  # how far the model fits its train set: a fixed subset, no TTA
            fit = self._evaluate("train", every=self.fit_every)
            val |= {"fit_top1": fit["top1"], "fit_n": fit["n"]}
        row = p.end_epoch(val, lr=self.scheduler.get_last_lr()[0], eval_s=time.perf_counter() - t0)
        self.last_top1 = val["top1"]
        tta = " (val: flip TTA)" if cfg.tta == "flip" else ""
        self.log.epoch(row, f"epoch {row['epoch']}/{self.length.epochs}{tta}")
        self._save("last", best=p.best_epoch == row["epoch"])

    def _evaluate(self, split: str, **options) -> dict[str, float]:
        """The weights the run keeps (the EMA when on) evaluated on `split` (`evaluate`)."""
        cfg = self.cfg
        return evaluate(
            self.ema.module if self.ema is not None else self.model, self.source, split,
            img_size=self.img_size, crop=cfg.eval_crop,
            batch_size=max(64, 2 * self.micro_batch),  # no gradients: larger batches fit
            num_workers=min(cfg.num_workers, 2), device=self.device, ctx=self.ctx,
            precision=self.precision, bad_samples=cfg.bad_samples, **options,
        )  # fmt: skip

    def _save(self, name: str, *, best: bool = False) -> None:
        """Checkpoint `name` (rank 0 only); see `maxvit.train.checkpoint.save_checkpoint`."""
        if not self.ctx.is_main:
            return
        ckpt.save_checkpoint(
            self.ckpt_dir, name, model=self.model, ema=self.ema, optimizer=self.optimizer,
            scheduler=self.scheduler, scaler=self.scaler,
            progress=dataclasses.asdict(self.progress), best=best,
            meta={
                "model": self.cfg.model, "img_size": self.img_size,
                "class_names": list(self.source.class_names), "classes": list(self.source.classes),
                "eval_crop": self.cfg.eval_crop,
            },
        )  # fmt: skip

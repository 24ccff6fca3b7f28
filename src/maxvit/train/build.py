"""What a training run is made of, built from its config: the data source and the batch
geometry, the model (with EMA, DDP and the compile decision), the optimizer and the lr schedule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from maxvit.data import DataSource, open_data
from maxvit.device import autocast, to_model_layout
from maxvit.errors import UserError
from maxvit.train.config import TrainConfig
from maxvit.train.distributed import DistContext
from maxvit.train.memory import no_side_effects
from maxvit.train.schedule import PLAN_STEPS, lr_factor


def soft_target_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against soft (mixed, smoothed) targets, averaged over the batch."""
    return torch.sum(-targets * torch.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def open_source(cfg: TrainConfig, ctx: DistContext, *, download: bool) -> DataSource:
    """The run's data set. Local rank 0 of each node prepares (and maybe downloads) it first;
    the other ranks of the node then open what it prepared."""
    if ctx.local_rank == 0:
        source = open_data(cfg.data, download=download)
    ctx.barrier()
    if ctx.local_rank != 0:
        source = open_data(cfg.data)
    return source


def micro_batch(cfg: TrainConfig, world_size: int) -> int:
    """Images per micro-batch on each rank: batch_size / (ranks x accum_steps)."""
    per_step = world_size * cfg.accum_steps
    if cfg.batch_size % per_step:
        raise UserError(
            f"batch_size {cfg.batch_size} is not divisible by processes x accum_steps = {per_step}"
        )
    return cfg.batch_size // per_step


def steps_per_epoch(cfg: TrainConfig, loader_batches: int) -> int:
    """Optimizer steps per epoch: the loader's full batches / accum_steps, capped by the config."""
    full = loader_batches // cfg.accum_steps
    steps = min(full, cfg.steps_per_epoch) if cfg.steps_per_epoch else full
    if steps < 1:
        raise UserError(f"the train set gives no full step of batch {cfg.batch_size}")
    return steps


def build_model(
    cfg: TrainConfig, num_classes: int, img_size: int, ctx: DistContext, say: Callable[[str], None]
) -> tuple[nn.Module, Any, nn.Module]:
    """(the model, its EMA or None, the module a training step calls: DDP-wrapped under
    torchrun). Seeded with ``cfg.seed``; `pretrained` weights loaded, the head re-initialised
    when the class count differs; gradient checkpointing on where `grad_checkpointing` asks."""
    from maxvit.models import create_model

    torch.manual_seed(cfg.seed)
    overrides = {"drop_path": cfg.drop_path} if cfg.drop_path else {}
    model = create_model(cfg.model, num_classes=num_classes, img_size=img_size, **overrides)
    if cfg.pretrained:
        from maxvit.models.convert import load_pretrained

        loaded = load_pretrained(model, cfg.model, cfg.pretrained)
        if ctx.is_main:
            say(loaded)
    if cfg.sync_bn:
        if ctx.device.type != "cuda" or not ctx.distributed:
            raise UserError("sync_bn needs CUDA and more than one process (torchrun)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if cfg.grad_checkpointing:
        model.set_grad_checkpointing(True)
    model = to_model_layout(model.to(ctx.device), ctx.device)
    ema = None
    if cfg.ema_decay:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=cfg.ema_decay)
    net: nn.Module = model
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel

        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        net = DistributedDataParallel(net, device_ids=ids)
    return model, ema, net


def compile_or_eager(
    net: nn.Module,
    model: nn.Module,
    batch_shape: tuple[int, int, int],
    num_classes: int,
    *,
    mode: bool | str,
    precision: str,
    say: Callable[[str], None],
) -> nn.Module:
    """The module training steps call: `net` compiled when `mode` is on and compiling works.

    The decision is made here, once: the compiled module runs one forward and backward pass on
    a blank micro-batch of `batch_shape` (batch, side, side; what the steps will see), which
    compiles both graphs, and leaves nothing behind (the gradients, the buffers such as
    BatchNorm statistics, and the random state are as before).
    If that fails, training goes on eager with one warning, or stops when `mode` is "require".
    """
    if not mode:
        return net
    compiled = torch.compile(net)
    device = next(model.parameters()).device
    batch, side, _ = batch_shape
    x = to_model_layout(torch.zeros(batch, 3, side, side, device=device), device)
    targets = torch.full((batch, num_classes), 1 / num_classes, device=device)
    try:
        with no_side_effects(model):
            with autocast(device, precision):
                loss = soft_target_loss(compiled(x), targets)
            loss.backward()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        why = f"torch.compile failed ({type(exc).__name__}: {first})"
        if mode == "require":
            raise UserError(f"{why}; stopped (compile: require)") from exc
        say(f"warning: {why}; training eager (compile: require stops instead)")
        return net
    return compiled


def build_optimizer(
    cfg: TrainConfig, model: nn.Module, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW over the model's trainable parameters.

    Norms, biases and the model's ``no_weight_decay`` set are not decayed unless
    ``decay_norm_bias`` (Keras AdamW decays all). With ``layer_decay`` d, timm's layer groups
    (the model's ``group_matcher``: stem, blocks, head) get lr x d^(depth from the head): the
    head the full lr, the stem the least; the schedule then scales every group alike.
    """
    skip = getattr(model, "no_weight_decay", set)()
    if cfg.layer_decay:
        from timm.optim import param_groups_layer_decay

        params: Any = param_groups_layer_decay(
            model, cfg.weight_decay, no_weight_decay_list=skip, layer_decay=cfg.layer_decay
        )
        for group in params:
            group["lr"] = cfg.lr * group["lr_scale"]
    elif cfg.decay_norm_bias:
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        from timm.optim import param_groups_weight_decay

        params = param_groups_weight_decay(model, cfg.weight_decay, no_weight_decay_list=skip)
    return torch.optim.AdamW(
        params,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        # One fused kernel over all parameters, faster than the default multi-tensor loop on
        # the CPU too (maxvit bench kernels --cases adamw, docs/benchmarks.md).
        fused=device.type in ("cuda", "cpu") or None,
    )


def build_scheduler(
    cfg: TrainConfig,
    optimizer: torch.optim.Optimizer,
    steps_per_epoch: int,
    total_steps: Callable[[], int],
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warmup, then ``cfg.schedule`` down to ``min_lr`` at step ``total_steps()``: a callable,
    since a budget fixes the count after timing the first steps (`maxvit.train.schedule`).
    Under a budget the warmup lasts at least those steps, so the lr of every step depends only
    on the final count: a second run from the saved config.yaml repeats the first exactly."""
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    if cfg.budget_minutes:
        warmup = max(warmup, PLAN_STEPS)
    min_ratio = cfg.min_lr / cfg.lr if cfg.lr else 0.0

    def factor(step: int) -> float:
        return lr_factor(
            step, total=total_steps(), warmup=warmup, min_ratio=min_ratio, shape=cfg.schedule
        )

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

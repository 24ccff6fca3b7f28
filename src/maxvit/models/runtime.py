"""How a model runs for inference: the runtime (eager or compiled) and the precision (fp32, bf16,
fp16 or int8), with the defaults this machine supports.

`resolve(runtime, precision, device)` turns ``auto`` into the fastest pair that keeps accuracy:

  - precision: bf16 on GPUs that have it (fp16 on older ones); on a CPU bf16 only where it has
    bf16 units (AMX or AVX-512-BF16 in /proc/cpuinfo), else fp32. Elsewhere bf16 is emulated and
    many times slower (`maxvit bench kernels --cases bf16-matmul`): asked for explicitly, it runs
    with a one-line warning. int8 is never the default: it needs a calibration pass (cached) and
    minutes of compiling, and its speed is measured per machine (docs/benchmarks.md).
  - runtime: eager (this project's MaxViT on its fused inference copy) for fp32/bf16/fp16, as a
    compile costs minutes that one evaluation or prediction does not win back; compiled for
    int8, which only inductor lowers to int8 kernels.

`inference_model(model, runtime, precision, ...)` builds the module that runs: the fused copy,
an autocast wrapper, an inductor compile with freezing, or the PT2E int8 model
(`torchao.quantization.pt2e`, X86 inductor quantizer, static activation scales from a
calibration pass), whose quantized program `int8_program` returns, `save_program` caches and
`load_program` reads back. torchao is imported only on the int8 path.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from torch import nn

from maxvit.device import resolve_precision
from maxvit.errors import UserError
from maxvit.files import atomic_write
from maxvit.models.fuse import inference_copy

RUNTIMES = ("auto", "eager", "compiled")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
RECORD = "maxvit-int8.json"  # the record of a saved int8 program, an extra file of its archive


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX tiles or AVX-512-BF16 instructions)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "AMX" in torch.backends.cpu.get_cpu_capability()
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])  # fmt: skip
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve(runtime: str, precision: str, device: torch.device) -> tuple[str, str]:
    """The (runtime, precision) that ``auto`` means here (see the module docstring); a pair
    that cannot run is a `UserError`, bf16 on a CPU without bf16 units a warning."""
    if runtime not in RUNTIMES:
        raise UserError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "auto":
        precision = "bf16" if device.type == "cpu" and cpu_has_bf16() else "fp32"
        if device.type != "cpu":
            precision = resolve_precision("auto", device)
    if precision == "int8":
        if device.type != "cpu":
            raise UserError("--precision int8 runs on the CPU only (X86 inductor quantizer)")
        if runtime == "eager":
            raise UserError(
                "--precision int8 runs compiled only (inductor lowers the quantized graph to "
                "int8 kernels); use --runtime compiled or auto"
            )
    elif precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        print(
            "warning: this CPU has no bf16 units (AMX or AVX-512-BF16): bf16 runs emulated, "
            "several times slower than fp32",
            file=sys.stderr,
        )
    if runtime == "auto":
        runtime = "compiled" if precision == "int8" else "eager"
    return runtime, precision


class Autocast(nn.Module):
    """Runs `model` under autocast to `dtype` and returns float32 logits."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.model(x).float()


class Frozen(nn.Module):
    """`model` compiled by inductor with freezing on: weights become constants, batch norm
    folds into convolutions, weight layouts are prepacked (int8: quantized kernels).

    The freezing flag is set around every call, not passed as ``options``: dynamo reads it
    while tracing to mark the weights static, and without that they stay graph inputs that
    freezing cannot fold (int8 then fails on ``onednn.qconv_prepack``). Use under ``no_grad``
    or ``inference_mode``; compiled on the first call."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.compiled = torch.compile(model)

    def train(self, mode: bool = True) -> Frozen:
        """Inference only: the mode stays eval (an int8 graph module refuses ``train()``)."""
        return self

    @property
    def eager(self) -> nn.Module:
        """The module compiled (what `torch.export` takes to package it ahead of time)."""
        return self.compiled._orig_mod

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=True):
            return self.compiled(x)


def _batch_dim() -> dict[int, torch.export.Dim]:
    return {0: torch.export.Dim("batch", min=1, max=4096)}


@contextlib.contextmanager
def _quiet_torchao() -> Iterator[None]:
    """torchao's import logs a deprecation warning of torch's pytree module: silence it."""
    import logging

    logger = logging.getLogger("torch.utils._pytree")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def int8_program(model: nn.Module, batches: Iterable[torch.Tensor]) -> torch.export.ExportedProgram:
    """The PT2E static int8 quantization of eval-mode `model` (CPU, float32): exported, annotated
    by torchao's X86 inductor quantizer (its default recipe: int8 convolutions and linear
    layers, per-channel weights, per-tensor activations; the attention's matrix products stay
    float), calibrated on `batches` (NCHW float images, normalised as for evaluation), converted
    and exported again with a dynamic batch, ready to save or to run through `Frozen`."""
    try:
        with _quiet_torchao():
            import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError:
        raise UserError("--precision int8 needs torchao: pip install 'maxvit[int8]'") from None
    batches = iter(batches)
    first = next(batches, None)
    if first is None:
        raise UserError("int8 calibration needs at least one batch of images")
    model = model.eval()
    with torch.no_grad():
        graph = torch.export.export(model, (first,), dynamic_shapes=(_batch_dim(),)).module()
        quantizer = xiq.X86InductorQuantizer()
        quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
        prepared = prepare_pt2e(graph, quantizer)
        prepared(first)
        for x in batches:
            prepared(x)
        converted = convert_pt2e(prepared)
        return torch.export.export(converted, (first,), dynamic_shapes=(_batch_dim(),))


def save_program(program: torch.export.ExportedProgram, path: Path, record: dict) -> None:
    """Write `program` to `path` atomically, with `record` (JSON) inside the archive."""
    extra = {RECORD: json.dumps(record, sort_keys=True)}

    def write(tmp: Path) -> None:  # a file object: torch warns about a path not ending in .pt2
        with open(tmp, "wb") as f:
            torch.export.save(program, f, extra_files=extra)

    atomic_write(path, write)


def load_program(path: Path) -> tuple[nn.Module, dict] | None:
    """A program `save_program` wrote, as a module, and its record; None for a file that is
    not one (unreadable, or written by another version)."""
    with _quiet_torchao():
        import torchao.quantization.pt2e  # noqa: F401  (registers the quantized ops it calls)
    found = {RECORD: ""}
    try:
        program = torch.export.load(str(path), extra_files=found)
        return program.module(), json.loads(found[RECORD])
    except Exception:  # noqa: BLE001 - any unreadable file is made again by the caller
        return None


def inference_model(
    model: nn.Module,
    runtime: str,
    precision: str,
    *,
    int8: Callable[[], nn.Module] | None = None,
) -> nn.Module:
    """The module that runs `model` (eval mode) at a resolved (`resolve`) runtime and precision.

    fp32 eager is `inference_copy` (this project's MaxViT fused; other models as they are);
    bf16 / fp16 run the same under autocast, float32 logits out; compiled wraps the eager
    model in `Frozen`. int8 calls `int8` for the quantized graph module (see `int8_program`;
    the caller calibrates and caches it) and compiles it.
    """
    model = model.eval()
    if precision == "int8":
        if int8 is None:
            raise ValueError("int8 needs the quantized model (int8=...)")
        return Frozen(int8())
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    base = inference_copy(model) if runtime == "eager" else model
    if precision in dtypes:
        base = Autocast(base, dtypes[precision])
    return Frozen(base) if runtime == "compiled" else base

"""`maxvit` command line: one subcommand per area, each registered by its own package.

Each area module exposes ``register(subparsers)``, which adds its commands and sets
``func`` (called with the parsed args, returns an exit code). Heavy imports happen inside
the command functions so that ``maxvit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys

from maxvit import __version__
from maxvit.errors import Interrupted, UserError


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the OS at once.

    PyTorch's CPU tensors come straight from malloc, and glibc serves blocks above 32 MB with
    fresh mmap pages, which the kernel zero-fills on first touch: every large activation of a
    training step then costs page faults. Raising the mmap and trim thresholds keeps those
    blocks in the heap: about 1.3x faster CPU training steps for MaxViT-T and torchvision's
    maxvit_t alike (`maxvit bench model` with and without ``GLIBC_TUNABLES=`` in the
    environment, docs/benchmarks.md). The price is a resident
    size that stays near its peak. Skipped when not on glibc or when the environment already
    tunes malloc (MALLOC_*_ or GLIBC_TUNABLES). Returns whether the setting was applied.
    """
    import ctypes
    import platform

    tuned = "GLIBC_TUNABLES" in os.environ or any(k.startswith("MALLOC_") for k in os.environ)
    if tuned or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    ok = mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1))
    return bool(ok and mallopt(m_mmap_threshold, ctypes.c_int(2**30)))


def build_parser() -> argparse.ArgumentParser:
    from maxvit.bench import cli as bench_cli
    from maxvit.data import cli as data_cli
    from maxvit.models import cli as models_cli
    from maxvit.repro import cli as repro_cli
    from maxvit.train import cli as train_cli
    from maxvit.train import loop_bench, precision_bench

    parser = argparse.ArgumentParser(
        prog="maxvit",
        description="MaxViT on Tiny ImageNet: data, models, training, evaluation, benchmarks.",
    )
    parser.add_argument("--version", action="version", version=f"maxvit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for area in (data_cli, models_cli, train_cli, repro_cli):
        area.register(sub)
    loop = ("loop", loop_bench, "the trainer's step against a minimal loop over the same batches")
    precision = ("precision", precision_bench, "a checkpoint's accuracy and speed per precision")
    bench_cli.register(sub, extra=(loop, precision))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command != "bench":
        # OpenMP threads sleep instead of spinning between parallel regions: on a small
        # machine, spinning threads starve the data-loader workers and any other job (several
        # times slower CPU training with other jobs running; docs/training.md). Benchmarks keep
        # OpenMP's default (spin briefly, then sleep), a little faster when nothing else runs.
        # Takes effect only here, before the command imports torch; the environment's own
        # setting wins.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C); nothing half-written was kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output (`| head`) is gone: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # 128 + SIGPIPE, what a shell reports for a tool that stopped on it
    except OSError as exc:  # a path the user gave that cannot be read or written
        if exc.filename is None:
            raise
        print(f"error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2

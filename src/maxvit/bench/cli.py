"""`maxvit bench ...`: model speed/memory/FLOPs, cost scaling with resolution, data pipeline,
single-op kernel comparisons, time per op category.

The command modules are imported when the parser is built (inside ``register``, not when this
module is imported); they keep torch, timm and matplotlib imports inside their functions, so
``maxvit --help`` stays fast.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, extra: tuple = ()) -> None:
    """Add ``maxvit bench`` and its benchmarks; `extra` holds (name, module, help) of benchmarks
    from higher layers (the top-level CLI passes ``loop``, which runs the trainer)."""
    from maxvit.bench import data, kernels, model, profile, scaling

    bench = sub.add_parser("bench", help="benchmarks: model speed and cost, scaling, data")
    cmds = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK", required=True)
    for name, mod, text in (
        ("model", model, "train/inference speed, peak memory, params, FLOPs of models"),
        ("scaling", scaling, "FLOPs and time per image against resolution, with fitted slopes"),
        ("data", data, "input pipeline throughput"),
        ("kernels", kernels, "single-op comparisons behind the model's speed choices (CPU)"),
        ("profile", profile, "where a training step and an inference batch spend time (CPU)"),
        *extra,
    ):
        parser = cmds.add_parser(name, help=text, description=text)
        mod.add_arguments(parser)
        parser.set_defaults(func=mod.run)

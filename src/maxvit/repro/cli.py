"""`maxvit repro` (the reduced-scale reproduction study, maxvit.repro, docs/repro.md) and
`maxvit report`, which rebuilds the report of a training run or of a study folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "repro",
        help="reproduction study: MaxViT vs a 12-block ViT vs CoAtNet, one recipe; REPORT.md",
        description="Train the preset's MaxViT, ViT and CoAtNet with the same recipe and budget, "
        "measure accuracy, gap, speed, parameters, FLOPs and cost scaling, and write REPORT.md "
        "with the recorded claims checked. cpu-mini: about 25 min on 2 idle CPU cores; seed: the "
        "recorded recipe at full scale on a GPU.",
    )
    p.add_argument(
        "--preset",
        default="cpu-mini",
        help="study: cpu-mini, cpu-fit, cpu-fit-aug, seed, paper, smoke (MaxViT, ViT, CoAtNet alike); or "
        "cpu-budget (accuracy per minute: the budgeted recipe at 2, 5, 10, 20 min against "
        "cpu-mini at 1 and 3 epochs), smoke-budget (default cpu-mini)",
    )
    p.add_argument("--data", help="Tiny ImageNet archive, unpacked or prepared folder")
    p.add_argument("--out", type=Path, help="study folder (default runs/repro-PRESET)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe field for all three models, e.g. --set num_workers=0 (repeatable)",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild REPORT.md and curves.png of the study in --out from its files",
    )
    p.set_defaults(func=_repro)

    p = sub.add_parser(
        "report", help="write curves.png and summary.md of a run folder (or a study's REPORT.md)"
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=_report)


def _repro(args: argparse.Namespace) -> int:
    from maxvit.errors import UserError
    from maxvit.repro.budget import SWEEPS, run_sweep, write_sweep_report
    from maxvit.repro.report import rebuild_report
    from maxvit.repro.study import run_study

    out = args.out or Path(f"runs/repro-{args.preset}")
    sweep = args.preset in SWEEPS
    if args.report_only:
        print(write_sweep_report(out) if sweep else rebuild_report(out))
        return 0
    if not args.data:
        raise UserError("--data is required (a Tiny ImageNet archive or prepared folder)")
    study = run_sweep if sweep else run_study
    print(study(args.preset, args.data, out, args.overrides))
    return 0


def _report(args: argparse.Namespace) -> int:
    if (Path(args.run_dir) / "study.json").is_file():  # a `maxvit repro` study folder
        from maxvit.repro.report import rebuild_report

        print(rebuild_report(args.run_dir))
        return 0
    from maxvit.train.report import write_report

    for path in write_report(args.run_dir):
        print(path)
    return 0

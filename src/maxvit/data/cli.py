"""`maxvit data ...`: download, subset and prepare Tiny ImageNet; shard, verify and inspect any
source."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data",
        help="download, subset, prepare, shard, verify and inspect data sets",
        description="Get Tiny ImageNet from the official archive into a fast, verified form; "
        "write WebDataset shards of any source; check any source.",
    )
    cmds = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = cmds.add_parser(
        "download",
        help="download the official archive (resumable, verified)",
        description="Download tiny-imagenet-200.zip with a progress bar, resuming a partial "
        "download, and verify its size and MD5 before it gets its final name.",
    )
    p.add_argument(
        "--root", type=Path, default=Path("data"), help="destination folder (default: data)"
    )
    p.add_argument("--url", default=None, help="archive address (default: the official CS231n one)")
    p.add_argument(
        "--md5", default=None, help="expected MD5 (default: the official one for the official URL)"
    )
    p.set_defaults(func=_download)

    p = cmds.add_parser(
        "prepare",
        help="decode the archive once into verified arrays",
        description="Validate the official zip (read in place) or an unpacked copy and write "
        "uint8 arrays, labels, class lists and a checksummed manifest. Atomic: the output "
        "appears only when complete. (Training needs no explicit prepare: `maxvit train --data "
        "ZIP` prepares on first use into ZIP's folder as <name>-prepared, or, when that folder "
        "is read-only or shared, into $XDG_CACHE_HOME/maxvit (~/.cache/maxvit).)",
    )
    p.add_argument(
        "--source", type=Path, required=True, help="tiny-imagenet-200.zip or its unpacked folder"
    )
    p.add_argument("--out", type=Path, required=True, help="folder to create")
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out corrupt images (counted) instead of failing",
    )
    p.add_argument("--force", action="store_true", help="replace an existing prepared folder")
    p.set_defaults(func=_prepare)

    p = cmds.add_parser(
        "subset",
        help="make a smaller Tiny ImageNet archive from the official one",
        description="Copy the first N train and M val images of every class (and the first T "
        "test images), in natural file-name order, from the official archive (zip or unpacked "
        "folder) into a zip in the official layout, which every command that takes the "
        "official archive accepts. Deterministic: the same source gives the same bytes. "
        "Atomic: the zip appears only when complete. The defaults give the development mini "
        "archive (100 / 5 / 100).",
    )
    p.add_argument("source", type=Path, help="tiny-imagenet-200.zip or its unpacked folder")
    p.add_argument("--out", type=Path, required=True, help="zip file to create")
    p.add_argument(
        "--per-class", type=int, default=100, help="train images per class (default 100)"
    )
    p.add_argument("--val-per-class", type=int, default=5, help="val images per class (default 5)")
    p.add_argument("--test", type=int, default=100, help="test images (default 100)")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(func=_subset)

    p = cmds.add_parser(
        "shard",
        help="write WebDataset shards from any data source",
        description="Write train-NNNNNN.tar / val-NNNNNN.tar shards, classes.txt and a manifest "
        "(counts, checksums) from Tiny ImageNet, a class-folder tree or other shards. Every "
        "image is decoded once to check it; undecodable ones are left out and named. Train "
        "samples are shuffled first. Atomic: the folder appears only when complete.",
    )
    p.add_argument("source", help="data source (any layout `maxvit train --data` accepts)")
    p.add_argument("--out", type=Path, required=True, help="folder to create")
    p.add_argument("--shard-size", type=int, default=1000, help="samples per shard (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the train order (default 0)")
    p.add_argument(
        "--workers", type=int, default=None, help="decode threads (default: CPUs, max 8)"
    )
    p.add_argument(
        "--force", action="store_true", help="replace an existing --out folder of shards"
    )
    p.set_defaults(func=_shard)

    p = cmds.add_parser(
        "verify",
        help="check a data set: prepared folder, class folders, shards or a Hugging Face dataset",
        description="Tiny ImageNet: re-check a prepared folder (checksums, shapes, labels). "
        "Class folders and shards: decode every image and check every label, naming each bad "
        "entry. Exits with status 2 if anything is wrong.",
    )
    p.add_argument(
        "dir",
        help="prepared folder, class-folder root, shard folder or pattern, or a Hugging Face dataset folder",
    )
    p.add_argument(
        "--workers", type=int, default=None, help="decode threads (default: CPUs, max 8)"
    )
    p.set_defaults(func=_verify)

    p = cmds.add_parser(
        "info",
        help="counts, classes and a contact sheet of a prepared folder",
        description="Print counts per split and the classes; optionally draw samples.",
    )
    p.add_argument("dir", type=Path, help="prepared folder")
    p.add_argument(
        "--json", action="store_true", help="print JSON (keys train, val, test, classes, ...)"
    )
    p.add_argument(
        "--grid", type=Path, default=None, metavar="PNG", help="write a contact sheet PNG"
    )
    p.add_argument(
        "--augmented", action="store_true", help="contact sheet of augmented training samples"
    )
    p.set_defaults(func=_info)


def _download(args: argparse.Namespace) -> int:
    from maxvit.data.download import OFFICIAL_URL, download

    path = download(args.url or OFFICIAL_URL, args.root, md5=args.md5)
    print(path)
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from maxvit.data.prepare import prepare

    out = prepare(args.source, args.out, skip_bad=args.skip_bad, force=args.force)
    print(out)
    return 0


def _subset(args: argparse.Namespace) -> int:
    from maxvit.data.subset import make_subset

    out = make_subset(
        args.source,
        args.out,
        per_class=args.per_class,
        val_per_class=args.val_per_class,
        test=args.test,
        force=args.force,
    )
    print(out)
    return 0


def _shard(args: argparse.Namespace) -> int:
    from maxvit.data.write_shards import write_shards

    print(
        write_shards(
            args.source,
            args.out,
            shard_size=args.shard_size,
            seed=args.seed,
            workers=args.workers,
            force=args.force,
        )
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from maxvit.data.sources import open_data
    from maxvit.errors import UserError

    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    verified = open_data(args.dir).verify(args.workers or min(os.cpu_count() or 1, 8))
    for name, problem in verified.bad:
        print(f"bad: {name}: {problem}")
    if verified.bad:
        n = len(verified.bad)
        raise UserError(
            f"{args.dir}: {n} bad entr{'y' if n == 1 else 'ies'} of {verified.checked} checked "
            "(listed above)"
        )
    print(f"{args.dir}: OK ({verified.summary})")
    return 0


def _info(args: argparse.Namespace) -> int:
    from maxvit.data.info import contact_sheet, format_summary, summary
    from maxvit.errors import UserError

    if args.augmented and args.grid is None:
        raise UserError("--augmented applies to the contact sheet: add --grid out.png")
    info = summary(args.dir)
    if args.json:
        json.dump(info, sys.stdout, indent=1)
        print()
    else:
        print(format_summary(info, args.dir))
    if args.grid is not None:
        path = contact_sheet(args.dir, args.grid, augmented=args.augmented)
        print(f"wrote {path}", file=sys.stderr)
    return 0

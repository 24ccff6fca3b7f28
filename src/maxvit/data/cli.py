"""`maxvit data ...`: download, prepare, verify and inspect Tiny ImageNet."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "data",
        help="download, prepare, verify and inspect Tiny ImageNet",
        description="Get Tiny ImageNet from the official archive into a fast, verified form.",
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
        "appears only when complete.",
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
        "verify",
        help="re-check a prepared folder (checksums, shapes, labels)",
        description="Exit with status 2 and a message naming the problem if the folder is not intact.",
    )
    p.add_argument("dir", type=Path, help="prepared folder")
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


def _verify(args: argparse.Namespace) -> int:
    from maxvit.data.prepare import SPLITS, verify

    manifest = verify(args.dir)
    counts = ", ".join(f"{s} {manifest['splits'][s]['count']}" for s in SPLITS)
    print(f"{args.dir}: OK ({manifest['classes']} classes; {counts}; checksums match)")
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

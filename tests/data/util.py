"""Helpers of the data tests."""

from __future__ import annotations

import argparse
import sys

from maxvit.data.cli import register
from maxvit.errors import UserError


def run_cli(*argv: str) -> int:
    """`maxvit data ...` through the data area's own parser, handled as maxvit.cli.main does."""
    parser = argparse.ArgumentParser(prog="maxvit")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *argv])
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

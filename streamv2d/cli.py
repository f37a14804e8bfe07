"""The ``streamv2d`` command line."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from . import __version__


def _demo(args: argparse.Namespace) -> int:
    from .demo.run import run_demo

    return run_demo(args.out, videos=args.videos, workers=args.workers)


def _stats(args: argparse.Namespace) -> int:
    from .report import summarize

    summary = summarize(args.folder)
    if summary.shards == 0:
        print(f"{args.folder}: no *_stats.json found", file=sys.stderr)
        return 1
    print("\n".join(summary.lines(args.top)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamv2d", description=__doc__)
    parser.add_argument("--version", action="version", version=f"streamv2d {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every failure")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the whole pipeline offline on a generated sample served on 127.0.0.1")
    demo.add_argument("--out", default="demo-output", help="folder for the sample videos, table and outputs")
    demo.add_argument("--videos", type=int, default=24, help="number of sample videos to generate")
    demo.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    demo.set_defaults(run=_demo)

    stats = commands.add_parser("stats", help="summarise a folder of *_stats.json (success rates, errors, sizes)")
    stats.add_argument("folder", help="output folder (local path or fsspec URL)")
    stats.add_argument("--top", type=int, default=10, help="how many distinct errors to list")
    stats.set_defaults(run=_stats)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

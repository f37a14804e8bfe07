"""The ``streamv2d`` command line: ``demo``, ``materialize``, ``reshard``, ``reprocess``, ``stats``, ``status``,
``video2dataset``."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import fields
from typing import List, Optional

from . import __version__
from .engines import DISTRIBUTORS


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _demo(args: argparse.Namespace) -> int:
    from .demo.run import run_demo

    return run_demo(args.out, videos=args.videos, workers=args.workers)


def _materialize(args: argparse.Namespace) -> int:
    from .config import load_config
    from .fetch import FetchConfig
    from .materialize import materialize
    from .sources.table import TableOptions

    def run():
        job = load_config(args.config, source=args.input, clip_col=args.clip_col)
        for line in job.notes:
            print(f"config: ignored {line}", file=sys.stderr)
        table = {f.name: getattr(args, f.name) for f in fields(TableOptions)
                 if getattr(args, f.name, None) is not None}
        changes = {"table": table}
        if args.format:
            changes["output_format"] = args.format
        fetch = dict(_settings(args.fetch, "--fetch"))
        if args.threads:
            fetch["threads"] = args.threads
        if fetch:
            changes["fetch"] = FetchConfig.from_any({**vars(job.fetch), **fetch})
        if args.distributor_args is not None and args.distributor is None:
            changes["distributor_args"] = args.distributor_args
        if args.distributor is not None:
            changes.update(distributor=args.distributor, distributor_args=args.distributor_args or {})
        job = job.replace(**changes)   # tar shards with --samples-per-shard are cut anew (open_source)
        return job, materialize(None, args.output, job, processes=args.processes, progress=not args.quiet,
                                detach=args.detach, tmp_dir=args.tmp_dir)

    return _workflow("materialize", run, args.output)


def _reshard(args: argparse.Namespace) -> int:
    from .workflows import reshard

    return _workflow("reshard", lambda: (None, reshard(args.inputs, args.output, args.samples_per_shard,
                                                       output_format=args.format or "tar",
                                                       processes=args.processes, progress=not args.quiet,
                                                       tmp_dir=args.tmp_dir)), args.output)


def _reprocess(args: argparse.Namespace) -> int:
    from .config import load_config
    from .workflows import reprocess

    def run():
        job = load_config(args.config)
        for line in job.notes:
            print(f"config: ignored {line}", file=sys.stderr)
        if args.format:
            job = job.replace(output_format=args.format)
        return job, reprocess(args.input, args.output, job=job, processes=args.processes,
                              progress=not args.quiet, tmp_dir=args.tmp_dir)
    return _workflow("reprocess", run, args.output)


def _workflow(name: str, run, output: str) -> int:
    """Run a materialize (``run()`` → its Job, or None, and its result) and report it: 2 for a job that could not
    start, 130 when interrupted, 1 when shards are left to resume, else 0."""
    from .errors import StreamV2DError

    try:
        job, result = run()
    except (StreamV2DError, ValueError, OSError, ImportError) as exc:
        print(f"streamv2d {name}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nstreamv2d {name}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if result.submitted is not None:
        print(f"submitted {job.distributor} job {result.submitted}; follow it with: streamv2d status {output}")
        return 0
    print("\n".join(result.summary.lines()))
    if result.failed:
        print(f"{len(result.failed)} shard(s) could not be completed ({result.failed[:10]}): run the same "
              "command again to resume them", file=sys.stderr)
        return 1
    return 0


def _settings(items: List[str], flag: str) -> List["tuple[str, object]"]:
    """``KEY=VALUE`` items as pairs, each value read as YAML (``true``, ``20``, ``1GiB``, ``{a: 1}``)."""
    import yaml

    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r}: expected KEY=VALUE")
        pairs.append((key.strip(), yaml.safe_load(value)))
    return pairs


def _stats(args: argparse.Namespace) -> int:
    from .report import summarize

    if not os.path.isdir(args.folder) and "://" not in args.folder:
        print(f"{args.folder}: no such folder", file=sys.stderr)
        return 2
    summary = summarize(args.folder)
    if summary.shards == 0 and not summary.partial:
        print(f"{args.folder}: no *_stats.json found", file=sys.stderr)
        return 1
    print("\n".join(summary.lines(args.top)))
    return 0


def _status(args: argparse.Namespace) -> int:
    from .report import store_status

    try:
        reports = store_status(args.store)
    except (ValueError, OSError, ImportError) as exc:
        print(f"streamv2d status: {exc}", file=sys.stderr)
        return 2
    if not reports:
        print(f"{args.store}: no streamv2d output or cache namespace found", file=sys.stderr)
        return 1
    for report in reports:
        print("\n".join(report.lines(args.top)))
    return 0


def _json_mapping(value: str) -> dict:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {value!r}")
    return parsed


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log each shard and every failure")
    parser = argparse.ArgumentParser(prog="streamv2d", description=__doc__, parents=[common])
    parser.add_argument("--version", action="version", version=f"streamv2d {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", parents=[common],
                               help="run the whole pipeline offline on a generated sample served on 127.0.0.1")
    demo.add_argument("--out", default="demo-output", help="folder for the sample videos, table and outputs")
    demo.add_argument("--videos", type=_positive, default=24, help="number of sample videos to generate")
    demo.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    demo.set_defaults(run=_demo)

    mat = commands.add_parser("materialize", parents=[common],
                              help="process a source into output shards (resumable, N processes)")
    mat.add_argument("input", help="URL table(s), tar shards or an output folder: path, glob, brace pattern, "
                                   "or fsspec URL")
    mat.add_argument("output", help="output folder (one output shard per input shard)")
    mat.add_argument("--config", help="YAML job file (ours, or a video2dataset config)")
    mat.add_argument("--processes", type=_positive, default=None,
                     help="worker processes (default: the config's, else one per usable CPU, at most one per shard)")
    mat.add_argument("--threads", type=_positive, help="concurrent fetches per process (default: config or 8)")
    mat.add_argument("--format", choices=["tar", "webdataset", "parquet", "files", "tfrecord", "dummy"],
                     help="output format (default tar)")
    mat.add_argument("--url-col", dest="url_col", help="column holding the URL (default url)")
    mat.add_argument("--caption-col", dest="caption_col", help="column holding the caption")
    mat.add_argument("--clip-col", dest="clip_col", help="column holding [[start, end], ...] spans in seconds")
    mat.add_argument("--save-additional-columns", dest="save_additional_columns", nargs="+", metavar="COLUMN",
                     help="columns carried into each sample's json")
    mat.add_argument("--samples-per-shard", dest="samples_per_shard", type=_positive,
                     help="rows per input shard (default 1000); with tar shards as input, "
                          "they are cut anew into shards of this many samples (as streamv2d reshard)")
    mat.add_argument("--input-format", dest="input_format", help="csv, tsv, json, jsonl, parquet or txt")
    mat.add_argument("--fetch", action="append", default=[], metavar="KEY=VALUE",
                     help="a fetch and input-policy setting (a FetchConfig field), e.g. max_bytes=1GiB, "
                          "max_pixels=8294400, allow_local_files=true, read_timeout=20; repeatable")
    mat.add_argument("--distributor", choices=list(DISTRIBUTORS),
                     help="who runs the shards (default: config or multiprocessing)")
    mat.add_argument("--distributor-args", dest="distributor_args", type=_json_mapping, metavar="JSON",
                     help='the distributor\'s arguments, e.g. \'{"shards_per_task": 4}\'')
    mat.add_argument("--detach", action="store_true", help="submit (slurm) and return without waiting")
    mat.add_argument("--tmp-dir", dest="tmp_dir", help="local scratch for spools and journals of an object-store "
                                                       "output (default: the system temp dir)")
    mat.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    mat.set_defaults(run=_materialize)

    workflow = argparse.ArgumentParser(add_help=False, parents=[common])
    workflow.add_argument("--processes", type=_positive, default=None,
                          help="worker processes (default: one per usable CPU, at most one per shard)")
    workflow.add_argument("--format", choices=["tar", "webdataset", "parquet", "files", "tfrecord", "dummy"],
                          help="output format (default tar)")
    workflow.add_argument("--tmp-dir", dest="tmp_dir", help="local scratch for an object-store output")
    workflow.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    resh = commands.add_parser("reshard", parents=[workflow],
                               help="merge datasets' tar shards into shards of another size, keys made unique")
    resh.add_argument("inputs", nargs="+", help="output folders, tar patterns or tars (local or fsspec), in order")
    resh.add_argument("output", help="output folder")
    resh.add_argument("--samples-per-shard", dest="samples_per_shard", type=_positive, required=True,
                      help="samples in each output shard")
    resh.set_defaults(run=_reshard)
    repr_ = commands.add_parser("reprocess", parents=[workflow],
                                help="run metadata stages over tar shards into metadata-only shards that zip "
                                     "with them")
    repr_.add_argument("input", help="the shards' folder, tar pattern or tars (local or fsspec)")
    repr_.add_argument("output", help="folder for the metadata shards")
    repr_.add_argument("--config", required=True, help="YAML job file whose subsamplers are the metadata stages "
                                                       "(ours, or a video2dataset config)")
    repr_.set_defaults(run=_reprocess)

    stats = commands.add_parser("stats", parents=[common],
                                help="summarise a folder of *_stats.json (success rates, errors, sizes)")
    stats.add_argument("folder", help="output folder (local path or fsspec URL)")
    stats.add_argument("--top", type=_positive, default=10, help="how many distinct errors to list")
    stats.set_defaults(run=_stats)

    status = commands.add_parser("status", parents=[common],
                                 help="progress of a job from its store: shards done, running, failed; rate, ETA")
    status.add_argument("store", help="output folder or cache_dir (local path or fsspec URL)")
    status.add_argument("--top", type=_positive, default=5, help="how many distinct errors to list")
    status.set_defaults(run=_status)
    commands.add_parser("video2dataset", help="video2dataset's command line: --url_list=… --output_folder=… "
                                              "(streamv2d video2dataset --help)")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["video2dataset"]:   # video2dataset's own command line (python-fire style), see streamv2d.v2d
        from .v2d.cli import main as video2dataset_main

        return video2dataset_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "verbose", False):
        logging.getLogger("streamv2d").setLevel(logging.DEBUG)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

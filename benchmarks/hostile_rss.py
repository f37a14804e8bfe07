"""Peak RSS of one process reading a hostile URL table vs tables of good videos, at the default memory settings.

Each table is read by ``VideoDataset`` (no DataLoader workers: the process measured is the one fetching, as a
worker would be) in a fresh Python process, whose peak RSS (``VmHWM``) is reported with the time taken and the
failure categories counted. The hostile table cycles through endless chunked bodies, over-cap declared sizes, slow
trickles, resets mid-body, servers that never answer, redirects to ``file://``, local paths, HTML and random bytes.
The good tables hold the small synthetic videos, and mp4-headed bodies of ``--good-mb`` MB with a Content-Length.

    python benchmarks/hostile_rss.py                  # 64 URLs per table, 8 fetch threads, defaults
    python benchmarks/hostile_rss.py --max-bytes 128MiB --max-bytes-in-flight 160MiB   # a tighter budget
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from typing import Dict, List

from _common import Row, corpus, print_table, served

#: Run in a fresh interpreter: read one table, print peak RSS, seconds and the error categories as JSON.
CHILD = """
import json, sys, time
from collections import Counter
sys.path.insert(0, sys.argv[1])
import streamv2d as sv
from _common import peak_rss_mb
fetch = json.loads(sys.argv[3])
t0 = time.perf_counter()
errors, samples = Counter(), 0
for sample in sv.VideoDataset(sys.argv[2], samples_per_shard=10 ** 6, yield_failures=True, fetch=fetch):
    samples += 1
    errors[sample["json"].get("error_message") or "success"] += 1
print(json.dumps({"peak": peak_rss_mb(), "seconds": time.perf_counter() - t0, "samples": samples,
                  "errors": dict(errors)}))
"""


def hostile_urls(base: str, names: List[str], count: int) -> List[str]:
    """``count`` URLs cycling through the ways a server or a table can be hostile."""
    video = names[0]
    kinds = [f"{base}/big/{10 ** 15}/no", f"{base}/big/{10 ** 12}/yes", f"{base}/trickle/0.01/{video}",
             f"{base}/reset/{video}", f"{base}/slow/600/{video}", f"{base}/redirect?to=file:///etc/hostname",
             "/etc/passwd", "simplecache::" + f"{base}/slow/600/{video}", f"{base}/html", f"{base}/garbage/100000"]
    return [kinds[i % len(kinds)] for i in range(count)]


def measure(label: str, urls: List[str], workdir: str, fetch: Dict) -> Row:
    """Read a table of ``urls`` in a fresh process; its peak RSS, seconds and most frequent outcomes."""
    table = os.path.join(workdir, f"{label.replace(' ', '_')}.csv")
    with open(table, "w") as f:
        f.write("url\n" + "".join(f"{u}\n" for u in urls))
    here = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "PYTHONPATH": here}
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.dirname(here), table, json.dumps(fetch)],
                         capture_output=True, text=True, env=env, check=True)
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    top = ", ".join(f"{m} x{n}" for m, n in Counter(doc["errors"]).most_common(4))
    return {"table": label, "urls": len(urls), "peak RSS MiB": round(doc["peak"]), "seconds": doc["seconds"],
            "outcomes (top 4)": top}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus-dir", default="bench-output/corpus", help="videos are made once and cached here")
    parser.add_argument("--urls", type=int, default=64, help="URLs per table")
    parser.add_argument("--good-mb", type=int, default=32, help="size of the large good bodies, MB")
    parser.add_argument("--threads", type=int, default=8, help="fetch threads (the library's default: 8)")
    parser.add_argument("--max-bytes", default=None, help="default: the library's")
    parser.add_argument("--max-bytes-in-flight", default=None, help="default: the library's")
    parser.add_argument("--read-timeout", type=float, default=2.0,
                        help="short, so servers that never answer do not make the run long (memory is unaffected)")
    args = parser.parse_args()
    names = corpus(args.corpus_dir, 12)
    fetch = {"threads": args.threads, "read_timeout": args.read_timeout, "max_seconds": 10, "retries": 0}
    fetch.update({k: v for k, v in (("max_bytes", args.max_bytes), ("max_bytes_in_flight", args.max_bytes_in_flight))
                  if v})
    with served(args.corpus_dir) as base, tempfile.TemporaryDirectory() as workdir:
        good_small = [f"{base}/videos/{names[i % len(names)]}" for i in range(args.urls)]
        good_large = [f"{base}/big/{args.good_mb * 10 ** 6}/yes?{i}" for i in range(args.urls)]
        rows = [measure("good: small videos", good_small, workdir, fetch),
                measure(f"good: {args.good_mb} MB bodies", good_large, workdir, fetch),
                measure("hostile", hostile_urls(base, names, args.urls), workdir, fetch)]
    print_table(f"peak RSS, {args.threads} fetch threads, fetch settings {fetch}", rows)
    hostile = rows[-1]["peak RSS MiB"]
    for row in rows[:-1]:
        print(f"hostile / {row['table']}: {hostile / row['peak RSS MiB']:.2f}x")


if __name__ == "__main__":
    main()

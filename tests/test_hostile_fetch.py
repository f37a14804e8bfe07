"""Untrusted input, fetch side: hostile servers and URL tables end in counted failure records, in bounded time and
memory, without reading local files, running commands or leaving temp files behind.

Time bounds are generous (a few times the configured deadline): they catch hangs, they do not benchmark."""
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from contextlib import contextmanager

import pytest

from streamv2d.fetch import Fetcher, FetchConfig
from streamv2d.stats import ShardStats

FAST = dict(retries=0, backoff=0.01, connect_timeout=1, read_timeout=0.5, max_seconds=2)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def record(url, **config):
    """The failure record of fetching ``url``, and the seconds it took."""
    sample = {"__key__": "000000", "json": {"url": url, "key": "000000"}}
    t0 = time.monotonic()
    out, nbytes, permanent = Fetcher(FetchConfig(**{**FAST, **config})).fetch_outcome(sample)
    assert nbytes == 0 and out["json"]["status"] == "failed_to_download" and "mp4" not in out
    assert "permanent" not in out["json"]   # an explicit result, not a field of the user's data
    return {**out["json"], "permanent": permanent}, time.monotonic() - t0


@contextmanager
def silent_listener():
    """A TCP port that accepts connections and never sends a byte (an FTP server that never greets)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_server_that_never_answers_is_a_read_timeout(server, corpus_names):
    meta, seconds = record(server.url(f"slow/600/{corpus_names[0]}"), retries=1)
    assert meta["error_message"] == "read timeout" and not meta["permanent"]
    assert "127.0.0.1" in meta["error_detail"] and "after 2 attempts" in meta["error_detail"]
    assert seconds < 3 * (2 * FAST["read_timeout"] + 1)


def test_stall_mid_body_is_a_read_timeout_not_a_truncated_body(server, corpus_names):
    meta, seconds = record(server.url(f"trickle/600/{corpus_names[0]}"))
    assert meta["error_message"] == "read timeout"
    assert seconds < 3 * FAST["max_seconds"]


def test_endless_chunked_body_is_cut_at_max_bytes(server):
    meta, seconds = record(server.url(f"big/{10 ** 15}/no"), max_bytes="2MB")
    assert meta["error_message"] == "body exceeds max_bytes" and meta["permanent"]
    assert "2000000" in meta["error_detail"] and seconds < 3 * FAST["max_seconds"]


def test_reset_mid_body_is_a_connection_reset(server, corpus_names):
    meta, seconds = record(server.url(f"reset/{corpus_names[0]}"))
    assert meta["error_message"] == "connection reset" and not meta["permanent"]
    assert seconds < 3 * FAST["max_seconds"]


def test_slow_trickle_is_cut_at_the_deadline(server, corpus_names):
    meta, seconds = record(server.url(f"trickle/0.02/{corpus_names[0]}"), max_seconds=1)
    assert meta["error_message"] == "download exceeded max_seconds" and not meta["permanent"]
    assert seconds < 3 * 1


def test_refused_connection_says_so_with_the_host():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]   # closed again before the fetch: nothing listens there
    meta, _ = record(f"http://127.0.0.1:{port}/v.mp4")
    assert meta["error_message"] == "connection refused" and f"127.0.0.1:{port}" in meta["error_detail"]


def test_redirect_to_a_file_url_is_refused(server):
    meta, _ = record(server.url("redirect?to=file:///etc/hostname"))
    assert meta["error_message"] == "redirect to a non-http(s) URL" and meta["permanent"]
    assert_no_content_of("/etc/hostname", meta)


@pytest.mark.parametrize("url", ["/etc/passwd", "file:///etc/hostname", "local:///etc/hostname",
                                 "simplecache::file:///etc/hostname", "memory://x", "data:text/plain,root"])
def test_url_tables_read_no_local_files_by_default(url):
    meta, _ = record(url)
    assert meta["permanent"] and meta["error_message"] in (
        "local files not allowed", "chained URLs not allowed", "protocol not allowed")
    assert_no_content_of(url.split("://")[-1], meta)


def test_not_media_never_echoes_content():
    meta, _ = record("/etc/passwd", allow_local_files=True)
    assert meta["error_message"] == "not media (unrecognised bytes)"
    assert_no_content_of("/etc/passwd", meta)


def assert_no_content_of(path, meta):
    """Neither the message nor the detail shows the first bytes of ``path`` (as text or as hex)."""
    if not os.path.isfile(path):
        return
    with open(path, "rb") as f:
        head = f.read(8)
    text = f"{meta['error_message']} {meta.get('error_detail', '')}"
    assert head.hex() not in text and head.decode("latin-1").strip() not in text


def test_chained_urls_are_refused_unless_allowed_and_never_over_http(server, corpus_names):
    hanging = server.url(f"slow/600/{corpus_names[0]}")
    meta, seconds = record("simplecache::" + hanging)
    assert meta["error_message"] == "chained URLs not allowed" and seconds < 1
    meta, seconds = record("simplecache::" + hanging, allow_url_chains=True)
    assert meta["error_message"] == "chained URLs over http(s) not allowed" and seconds < 1


def test_ftp_that_never_greets_meets_the_read_timeout():
    with silent_listener() as port:
        meta, seconds = record(f"ftp://127.0.0.1:{port}/v.mp4", max_seconds=30)
    assert meta["error_message"] == "read timeout" and seconds < 3 * (FAST["read_timeout"] + 1)


def test_a_blocked_store_is_cut_at_the_deadline_and_its_cache_removed(tmp_path, monkeypatch):
    """fsspec code that blocks past our timeouts (here: ftp's own timeout set to a minute) is abandoned at
    max_seconds; the cache layer's folder is gone afterwards."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with silent_listener() as port:
        meta, seconds = record(f"simplecache::ftp://127.0.0.1:{port}/v.mp4", allow_url_chains=True, max_seconds=1,
                               storage_options={"ftp": {"timeout": 60}})
    assert meta["error_message"] == "download exceeded max_seconds" and seconds < 3 * 1
    assert os.listdir(tmp_path) == []


def test_a_cache_layer_leaves_no_temp_files(tmp_path, monkeypatch, corpus_dir, corpus_names):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    config = FetchConfig(allow_url_chains=True, allow_local_files=True)
    data, ext = Fetcher(config).fetch(f"simplecache::file://{corpus_dir}/{corpus_names[0]}")
    assert ext == "mp4" and data and os.listdir(tmp_path) == []


def test_yt_dlp_respects_the_deadline(server, corpus_names):
    meta, seconds = record(server.url(f"page/{corpus_names[0]}"), yt_dlp="always", max_seconds=1,
                           yt_dlp_options={"sleep_interval": 30})
    assert meta["error_message"] == "download exceeded max_seconds" and seconds < 3 * 1


@pytest.mark.parametrize("options,named", [
    ({"postprocessors": [{"key": "Exec", "exec_cmd": "touch /tmp/pwned", "when": "after_move"}]}, "postprocessors"),
    ({"exec": "id"}, "exec"), ({"external_downloader": {"default": "curl"}}, "external_downloader"),
    ({"outtmpl": "/tmp/x.%(ext)s"}, "outtmpl"), ({"paths": {"home": "/"}}, "paths"),
    ({"download_archive": "/tmp/archive"}, "download_archive"), ({"ffmpeg_location": "/bin/sh"}, "ffmpeg_location"),
    ({"cookiesfrombrowser": ("firefox",)}, "cookiesfrombrowser"), ({"enable_file_urls": True}, "enable_file_urls"),
])
def test_yt_dlp_options_that_run_commands_or_write_files_are_refused(options, named):
    with pytest.raises(ValueError, match=f"yt_dlp_options {named}.*unsafe_yt_dlp_options"):
        FetchConfig.from_any({"yt_dlp_options": options})
    assert FetchConfig(yt_dlp_options=options, unsafe_yt_dlp_options=True).yt_dlp_options == options


def test_safe_yt_dlp_options_pass():
    FetchConfig(yt_dlp_options={"format": "best", "cookiefile": "cookies.txt", "postprocessors": [
        {"key": "FFmpegVideoRemuxer", "preferedformat": "mp4"}]})


def test_stats_show_one_line_per_cause(server):
    stats = ShardStats(0)
    for size in (3_000_000, 4_000_000):
        meta, _ = record(server.url(f"big/{size}/yes"), max_bytes=1_000_000)
        stats.add_row({"json": meta}, [])
    for host in ("127.0.0.1", "localhost"):
        meta, _ = record(server.url("status/404").replace("127.0.0.1", host))
        stats.add_row({"json": meta}, [])
    assert dict(stats.status_dict) == {"body exceeds max_bytes": 2, "HTTP 404": 2}


RSS_CHILD = textwrap.dedent("""
    import sys
    from concurrent.futures import ThreadPoolExecutor
    sys.path.insert(0, sys.argv[1])
    from streamv2d.fetch import Fetcher, FetchConfig
    config = FetchConfig()                        # the defaults
    fetcher = Fetcher(config)
    samples = [{"__key__": str(i), "json": {"url": f"{sys.argv[2]}/big/{10 ** 15}/no?{i}"}} for i in range(8)]
    with ThreadPoolExecutor(config.threads) as pool:
        records = [r["json"]["error_message"] for r, _ in pool.map(fetcher.fetch_sample, samples)]
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmHWM:"))
    print(config.threads, peak, *sorted(set(records)), sep="|")
""")


def test_peak_rss_stays_under_1gb_with_8_threads_of_endless_bodies(server):
    """Eight endless chunked bodies at once, at the default caps, in a fresh process: without a process budget they
    would hold 8 x max_bytes (2 GiB); with it, the worker's peak RSS stays under 1 GB."""
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, ROOT, server.base_url], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    threads, peak_mib, *messages = out.stdout.strip().split("|")
    assert int(threads) == 8 and int(peak_mib) < 1000, f"peak RSS {peak_mib} MiB"
    assert messages == ["body exceeds max_bytes"]


def test_yt_dlp_endless_body_is_cut_at_max_bytes(server, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    meta, seconds = record(server.url(f"big/{10 ** 15}/no"), yt_dlp="always", max_bytes="2MB")
    assert meta["error_message"] == "body exceeds max_bytes" and meta["permanent"]
    assert seconds < 3 * FAST["max_seconds"] and os.listdir(tmp_path) == []


def test_refusals_remembered_by_a_cache_do_not_outlive_the_setting(tmp_path, corpus_dir, corpus_names):
    """A local path refused (a permanent failure, remembered by the cache) is fetched once it is allowed."""
    import streamv2d as sv
    from conftest import write_csv

    table = write_csv(str(tmp_path / "t.csv"), [{"url": f"{corpus_dir}/{corpus_names[0]}"}])
    results = []
    for allowed in (False, True):
        ds = sv.VideoDataset(table, fetch={"allow_local_files": allowed}, cache_dir=str(tmp_path / "cache"),
                             yield_failures=True)
        results.append([s["json"]["status"] for s in ds])
    assert results == [["failed_to_download"], ["success"]]

"""Fetching: every way a download goes wrong becomes a counted failure record; retries only where they help."""
import re

import pytest

from streamv2d.errors import FetchError
from streamv2d.fetch import Fetcher, FetchConfig
from streamv2d.fetch.sniff import sniff_container
from streamv2d.demo import make_video

FAST = dict(retries=2, backoff=0.01, connect_timeout=2, read_timeout=1)


def fetch(server, path, **config):
    return Fetcher(FetchConfig(**{**FAST, **config})).fetch(server.url(path))


def failure(server, path, **config):
    with pytest.raises(FetchError) as info:
        fetch(server, path, **config)
    return info.value


def test_video_is_fetched_with_its_container(server, corpus_names):
    data, ext = fetch(server, f"videos/{corpus_names[0]}")
    assert ext == "mp4" and len(data) > 1000


def test_404_is_permanent_and_not_retried(server):
    err = failure(server, "status/404")
    assert "HTTP 404" in str(err) and err.permanent
    assert server.requests["/status/404"] == 1


def test_500_is_retried_with_backoff_then_transient(server):
    err = failure(server, "status/503")
    assert "HTTP 503" in str(err) and not err.permanent
    assert server.requests["/status/503"] == FAST["retries"] + 1


def test_flaky_server_recovers_on_retry(server, corpus_names):
    data, ext = fetch(server, f"flaky/2/{corpus_names[0]}")
    assert ext == "mp4" and server.requests[f"/flaky/2/{corpus_names[0]}"] == 3


def test_read_timeout_is_a_transient_failure(server, corpus_names):
    err = failure(server, f"slow/3/{corpus_names[0]}", retries=0, read_timeout=0.3)
    assert str(err) == "read timeout" and not err.permanent and "127.0.0.1" in err.detail


def test_truncated_body_is_a_failure(server, corpus_names):
    err = failure(server, f"truncated/{corpus_names[0]}", retries=1)
    assert str(err) == "truncated body" and "after 2 attempts" in err.detail
    assert server.requests[f"/truncated/{corpus_names[0]}"] == 2


def test_dropped_connection_is_retried(server):
    err = failure(server, "drop", retries=1)
    assert str(err) in ("connection dropped", "connection reset") and server.requests["/drop"] == 2


def test_html_error_page_with_200_is_not_media(server):
    err = failure(server, "html", yt_dlp="never")
    assert str(err) == "not media (HTML page)" and err.permanent


def test_random_bytes_are_not_media(server):
    err = failure(server, "garbage/5000")
    assert str(err) == "not media (unrecognised bytes)" and err.detail.startswith("5000 bytes")


@pytest.mark.parametrize("declared", ["yes", "no"])
def test_body_over_the_cap_is_abandoned(server, declared):
    err = failure(server, f"big/3000000/{declared}", max_bytes=1_000_000)
    assert str(err) == "body exceeds max_bytes" and err.permanent


def test_local_paths_and_file_urls_when_allowed(corpus_dir, corpus_names):
    fetcher = Fetcher(FetchConfig(allow_local_files=True))
    path = f"{corpus_dir}/{corpus_names[0]}"
    assert fetcher.fetch(path)[1] == "mp4"
    assert fetcher.fetch("file://" + path)[1] == "mp4"
    with pytest.raises(FetchError, match="no such file"):
        fetcher.fetch(path + ".missing")


def test_missing_url_is_a_failure():
    with pytest.raises(FetchError, match="missing url"):
        Fetcher(FetchConfig()).fetch(None)


def test_fetch_sample_turns_errors_into_records(server):
    sample = {"__key__": "000000", "json": {"url": server.url("status/404"), "key": "000000"}}
    record, nbytes = Fetcher(FetchConfig(**FAST)).fetch_sample(sample)
    assert nbytes == 0 and record["json"]["status"] == "failed_to_download"
    assert record["json"]["error_message"] == "HTTP 404" and "mp4" not in record


def test_ytdlp_generic_extractor_resolves_an_html_page(server, corpus_names):
    """A page embedding a <video>: plain http finds HTML, auto mode hands it to yt-dlp (as a library)."""
    data, ext = fetch(server, f"page/{corpus_names[1]}")
    assert ext == "mp4" and data == open_video(server, corpus_names[1])
    assert server.requests[f"/videos/{corpus_names[1]}"] == 1


def test_ytdlp_options_pass_through(server, corpus_names):
    err = failure(server, f"page/{corpus_names[1]}", yt_dlp="always", yt_dlp_options={"max_filesize": 10})
    assert "yt-dlp" in str(err)


def open_video(server, name):
    import os

    with open(os.path.join(server._server.directory, name), "rb") as f:
        return f.read()


@pytest.mark.parametrize("container,ext", [("mp4", "mp4"), ("matroska", "mkv"), ("webm", "webm")])
def test_sniffing_real_containers(container, ext):
    codec = "libvpx" if container == "webm" else "libx264"
    assert sniff_container(make_video(0.3, 64, 48, container=container, codec=codec)) == ext


def test_sniffing_rejects_text():
    assert sniff_container(b"<!DOCTYPE html><html>") is None
    assert sniff_container(b"") is None


def test_trickling_server_is_cut_at_max_seconds(server, corpus_names):
    err = failure(server, f"trickle/0.05/{corpus_names[0]}", retries=0, read_timeout=1, max_seconds=0.5)
    assert str(err) == "download exceeded max_seconds" and not err.permanent


def test_only_gone_statuses_are_permanent(server):
    assert not failure(server, "status/403").permanent and server.requests["/status/403"] == 1
    assert failure(server, "status/410").permanent
    failure(server, "status/408")
    assert server.requests["/status/408"] == FAST["retries"] + 1


def test_sizes_and_numeric_strings_are_parsed():
    config = FetchConfig.from_any({"max_bytes": "50MB", "max_bytes_in_flight": "2GiB", "read_timeout": "20",
                                   "retries": "3"})
    assert (config.max_bytes, config.max_bytes_in_flight) == (50_000_000, 2 << 30)
    assert config.read_timeout == 20.0 and config.retries == 3


@pytest.mark.parametrize("setting,value,allowed", [
    ("retries", -1, "an integer >= 0"), ("retries", 1.5, "an integer >= 0"), ("threads", 0, "an integer >= 1"),
    ("read_timeout", 0, "> 0"), ("connect_timeout", -2, "> 0"), ("max_seconds", "fast", "> 0"),
    ("max_seconds", float("inf"), "> 0"), ("backoff", -0.1, ">= 0"), ("max_bytes", "50 parsecs", "size in bytes"),
    ("max_bytes", -5, "size in bytes"), ("max_bytes", 0, "size in bytes"),
    ("allow_local_files", "yes", "true or false"),
    ("yt_dlp", "sometimes", "'auto', 'always' or 'never'"), ("headers", ["a"], "a mapping"),
])
def test_bad_settings_are_refused_at_construction(setting, value, allowed):
    pattern = rf"^fetch\.{setting}={re.escape(repr(value))}: must be .*{re.escape(allowed)}"
    with pytest.raises(ValueError, match=pattern) as info:
        FetchConfig.from_any({setting: value})
    assert "\n" not in str(info.value)


def test_one_body_must_fit_in_the_process_budget():
    with pytest.raises(ValueError, match="max_bytes=.* exceeds fetch.max_bytes_in_flight"):
        FetchConfig(max_bytes="2GiB")


def test_the_pool_window_opens_from_one_item_so_the_first_row_runs_alone():
    """The first row is fetched and processed with nothing else in flight (it reached the first sample 0.2 s
    sooner on loopback), then the window doubles with each result up to its bound; results keep input order."""
    from concurrent.futures import ThreadPoolExecutor

    from streamv2d.fetch.pool import ordered_map

    submitted = []

    def items():
        for item in range(40):
            submitted.append(item)
            yield item

    def in_flight(**window):   # items submitted and not yet yielded, as each result is yielded
        submitted.clear()
        seen = []
        with ThreadPoolExecutor(4) as executor:
            for result in ordered_map(lambda item: item, items(), executor, **window):
                assert result == len(seen)
                seen.append(len(submitted) - result)
        return seen

    opening = in_flight(window=8)
    assert opening[:5] == [1, 2, 4, 8, 8]
    assert max(opening) == 8 and len(opening) == 40
    assert in_flight(window=8, initial=8)[:2] == [8, 8]   # a caller that wants the whole window from the start

"""What a URL table may make us read, and which yt-dlp options a config may set: the trust boundary.

A URL table is untrusted input: by default its URLs reach http(s) and remote fsspec stores only. Local files,
chained URLs (``simplecache::…``) and yt-dlp options that run commands or write outside our temp folder are
refused unless the user's config allows them explicitly.
"""
from __future__ import annotations

import re
from typing import Any, List, Mapping, Tuple

from ..errors import FetchError

HTTP = frozenset({"http", "https"})
#: Protocols that read this machine's files.
LOCAL = frozenset({"", "file", "local"})
#: fsspec protocols of remote stores: what a URL table may name besides http(s).
REMOTE_STORES = frozenset({
    "s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "hf", "hdfs", "arrow_hdfs", "webhdfs", "ftp", "sftp",
    "ssh", "smb", "oss", "oci", "ocilake", "dbfs", "webdav", "lakefs", "tos", "tosfs", "box", "dropbox", "gdrive",
    "github", "gist", "wandb", "root"})
#: fsspec layers that only make sense in a chain: caches (they write the whole body to a local folder) and
#: archives read from another store.
CHAIN_LAYERS = frozenset({"simplecache", "filecache", "blockcache", "cached", "zip", "tar", "libarchive"})
#: Protocols whose fsspec implementation keeps a local copy of what it reads.
CACHING = frozenset({"simplecache", "filecache", "blockcache", "cached"})

#: YoutubeDL options that run commands, load code, read local secrets or write outside our temp folder.
UNSAFE_YT_DLP_OPTIONS = {
    "exec": "runs a shell command",
    "exec_cmd": "runs a shell command",
    "netrc_cmd": "runs a shell command",
    "external_downloader": "runs another program",
    "external_downloader_args": "passes arguments to another program",
    "postprocessor_args": "passes arguments (output files) to ffmpeg",
    "ffmpeg_location": "chooses the program run as ffmpeg",
    "remote_components": "downloads code and runs it",
    "plugin_dirs": "loads Python code",
    "outtmpl": "writes outside the temp folder (streamv2d sets it)",
    "paths": "writes outside the temp folder (streamv2d sets it)",
    "download_archive": "writes a file outside the temp folder",
    "cachedir": "writes a cache outside the temp folder",
    "print_to_file": "writes a file outside the temp folder",
    "write_pages": "writes pages to the working folder",
    "batchfile": "reads URLs from a local file",
    "load_info_filename": "reads a local file",
    "enable_file_urls": "lets URLs read local files",
    "cookiesfrombrowser": "reads the browser's cookie store",
}
#: Postprocessor kinds that run commands.
_EXEC_POSTPROCESSORS = frozenset({"exec", "execafterdownload"})


def protocols(url: str) -> List[str]:
    """The protocol of each layer of ``url``, outermost first, as fsspec reads it (``""`` for a plain path)."""
    parts = url.split("::")
    return [_protocol(part, chained=len(parts) > 1) for part in parts]


def _protocol(part: str, chained: bool) -> str:
    """One layer's protocol: ``s3`` of ``s3://b/k``, a bare word in a chain (``simplecache``), ``data`` of
    ``data:…``; ``""`` for a path (``c://`` is a Windows drive)."""
    if "://" in part:
        scheme = part.split("://", 1)[0].lower()
        return scheme if len(scheme) > 1 else ""
    if part.startswith("data:"):
        return "data"
    return part.lower() if chained and re.fullmatch(r"[a-z]+", part) else ""


def check_url(url: str, allow_local_files: bool, allow_url_chains: bool) -> str:
    """``"http"`` or ``"fsspec"``: how ``url`` may be fetched; a refused URL raises a permanent FetchError."""
    if url[:8].lower().startswith(("http://", "https://")):   # one URL even with '::' in it (IPv6 hosts)
        return "http"
    layers = protocols(url)
    if len(layers) > 1 or layers[0] in CHAIN_LAYERS:
        _check_chain(layers, allow_url_chains)
    for protocol in layers:
        if protocol in LOCAL and not allow_local_files:
            raise FetchError("local files not allowed", permanent=True,
                             detail="a URL table names a local path; set fetch allow_local_files: true to read it")
        if protocol not in LOCAL | REMOTE_STORES | CHAIN_LAYERS:
            raise FetchError("protocol not allowed", permanent=True, detail=f"protocol {protocol!r}")
    return "fsspec"


def _check_chain(layers: List[str], allow_url_chains: bool) -> None:
    """Chains (and their cache layers) only when allowed, and never over http(s): it goes through HttpFetcher."""
    if not allow_url_chains:
        raise FetchError("chained URLs not allowed", permanent=True,
                         detail=f"protocols {'::'.join(layers)}; set fetch allow_url_chains: true to read them")
    if any(p in HTTP for p in layers):
        raise FetchError("chained URLs over http(s) not allowed", permanent=True,
                         detail="http(s) is fetched by streamv2d itself; drop the '::' layers")


def unsafe_yt_dlp_options(options: Mapping[str, Any]) -> List[Tuple[str, str]]:
    """``(option, why)`` for each option of ``options`` that yt-dlp would use to run commands or write files."""
    found = [(name, why) for name, why in UNSAFE_YT_DLP_OPTIONS.items() if name in options]
    for pp in options.get("postprocessors") or ():
        kind = str(pp.get("key", "")).lower() if isinstance(pp, Mapping) else ""
        if kind in _EXEC_POSTPROCESSORS or (isinstance(pp, Mapping) and "exec_cmd" in pp):
            found.append((f"postprocessors[{pp.get('key')!r}]", "runs a shell command"))
    runtimes = options.get("js_runtimes")
    if isinstance(runtimes, Mapping) and any(isinstance(c, Mapping) and "path" in c for c in runtimes.values()):
        found.append(("js_runtimes path", "chooses a program to run"))
    return found

"""A real S3 server on loopback for tests and benchmarks: moto's ``moto_server`` (``pip install 'moto[server]'``)
in a subprocess, buckets made by a plain HTTP PUT (s3fs's mkdir sends a location constraint moto refuses for
us-east-1), and the s3fs ``storage_options`` that point at it."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any, Dict, Tuple


class S3Unavailable(RuntimeError):
    """moto's server is not installed, or did not come up (the message says which)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(timeout: float = 10.0) -> Tuple[subprocess.Popen, str]:
    """``moto_server`` on a free loopback port, answering: its process and endpoint URL (stop it with
    ``terminate``); :class:`S3Unavailable` when it is missing or does not answer within ``timeout`` seconds."""
    binary = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
    if not os.path.exists(binary):
        raise S3Unavailable("moto[server] is not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=1).close()
            return proc, endpoint
        except OSError:
            if proc.poll() is not None:
                raise S3Unavailable(f"moto_server exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                proc.kill()
                raise S3Unavailable("moto_server did not answer on loopback") from None
            time.sleep(0.1)


def make_bucket(endpoint: str, prefix: str = "b") -> str:
    """A fresh, empty bucket on the server at ``endpoint``: its name."""
    name = f"{prefix}{uuid.uuid4().hex[:12]}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{name}", method="PUT"), timeout=10).close()
    return name


def s3_options(endpoint: str) -> Dict[str, Any]:
    """The s3fs ``storage_options`` for the server at ``endpoint`` (moto takes any credentials)."""
    return {"key": "testing", "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}

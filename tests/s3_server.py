"""A real S3 server on loopback for tests: moto's ``moto_server`` in a subprocess, a bucket made by a plain
HTTP PUT (s3fs's mkdir sends a location constraint moto refuses for us-east-1), and the fsspec config that
points s3fs at it — in this process and, through ``FSSPEC_S3``, in every subprocess (workers, Ray, Spark,
Slurm tasks)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    """The endpoint URL of a moto S3 server on 127.0.0.1 (skips when moto[server] or s3fs is missing)."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'streamv2d[s3]')")
    binary = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
    if not os.path.exists(binary):
        pytest.skip("moto[server] is not installed")
    port = _free_port()
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.skip(f"moto_server exited with {proc.returncode}")
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.skip("moto_server did not answer on loopback")
    options = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    import fsspec.config

    previous_conf, previous_env = fsspec.config.conf.get("s3"), os.environ.get("FSSPEC_S3")
    fsspec.config.conf["s3"] = options
    os.environ["FSSPEC_S3"] = json.dumps(options)
    try:
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if previous_conf is None:
            fsspec.config.conf.pop("s3", None)
        else:
            fsspec.config.conf["s3"] = previous_conf
        if previous_env is None:
            os.environ.pop("FSSPEC_S3", None)
        else:
            os.environ["FSSPEC_S3"] = previous_env


@pytest.fixture()
def bucket(moto_endpoint) -> str:
    """A fresh, empty bucket on the moto server: ``s3://<name>``."""
    name = f"b{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(f"{moto_endpoint}/{name}", method="PUT")
    urllib.request.urlopen(request, timeout=10).close()
    return f"s3://{name}"

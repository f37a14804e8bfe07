"""A real S3 server on loopback for tests (:mod:`streamv2d.demo.s3`: moto's ``moto_server`` in a subprocess,
buckets made by a plain HTTP PUT), and the fsspec config that points s3fs at it — in this process and, through ``FSSPEC_S3``, in every subprocess (workers, Ray, Spark,
Slurm tasks)."""
from __future__ import annotations

import json
import os

import pytest

from streamv2d.demo.s3 import S3Unavailable, make_bucket, s3_options, start_moto


@pytest.fixture(scope="session")
def moto_endpoint():
    """The endpoint URL of a moto S3 server on 127.0.0.1 (skips when moto[server] or s3fs is missing)."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'streamv2d[s3]')")
    try:
        proc, endpoint = start_moto()
    except S3Unavailable as exc:
        pytest.skip(str(exc))
    options = s3_options(endpoint)
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
    return f"s3://{make_bucket(moto_endpoint)}"

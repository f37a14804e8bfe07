"""Review finding: settings that were accepted and then ignored."""
import json

import pytest

import streamv2d as sv
from conftest import tar_of


@pytest.fixture()
def source(tmp_path):
    return [tar_of(tmp_path / "in.tar", [("k0.json", json.dumps({"i": 0}).encode())])]


@pytest.mark.parametrize("options,message", [
    ({"cache_format": "parquet"}, "cache_format: given without cache_dir"),
    ({"cache_format": "nonsense"}, "cache_format: given without cache_dir"),
    ({"collate_fn": list}, "collate_fn: given without batch_size"),
])
def test_a_setting_that_would_be_ignored_is_refused(source, options, message):
    """Finding: ``cache_format`` without ``cache_dir`` and ``collate_fn`` without ``batch_size`` were taken and
    silently did nothing (a misspelt format too), as ``cache_limit`` without ``cache_dir`` is already refused."""
    with pytest.raises(ValueError, match=message):
        sv.VideoDataset(source, **options)


def test_a_mix_collate_fn_without_batch_size_is_refused(source):
    with pytest.raises(ValueError, match="collate_fn: given without batch_size"):
        sv.mix([sv.VideoDataset(source)], collate_fn=list)


def test_the_settings_still_work_together(source, tmp_path):
    ds = sv.VideoDataset(source, cache_dir=str(tmp_path / "c"), cache_format="parquet", batch_size=1, collate_fn=list)
    assert ds.cache.fmt == "parquet" and [b[0]["__key__"] for b in ds] == ["k0"]
    assert sv.VideoDataset(source, cache_dir=str(tmp_path / "d")).cache.fmt == "tar"
    mixed = sv.mix([sv.VideoDataset(source)], batch_size=1, collate_fn=list)
    assert [b[0]["__key__"] for b in mixed] == ["k0"]

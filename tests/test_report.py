"""``streamv2d stats`` sums a folder of _stats.json."""
import json

from streamv2d.cli import main
from streamv2d.report import summarize


def write_stats(folder, shard, **counts):
    doc = {"count": 10, "successes": 8, "failed_to_download": 2, "failed_to_subsample": 0,
           "bytes_downloaded": 5_000_000, "start_time": 100.0 + shard, "end_time": 110.0 + shard, "duration": 10.0,
           "status_dict": {"success": 8, "HTTP 404": 2}}
    doc.update(counts)
    (folder / f"{shard:05d}_stats.json").write_text(json.dumps(doc))


def test_summary_totals_and_errors(tmp_path, capsys):
    write_stats(tmp_path, 0)
    write_stats(tmp_path, 1, successes=5, failed_to_subsample=3,
                status_dict={"success": 5, "HTTP 404": 2, "no video stream": 3})
    summary = summarize(str(tmp_path))
    assert summary.shards == 2 and summary.totals["count"] == 20 and summary.totals["successes"] == 13
    assert summary.errors == {"HTTP 404": 4, "no video stream": 3}
    assert summary.duration == 11.0
    assert main(["stats", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "successes: 13 (65.0%)" in out and "HTTP 404" in out


def test_empty_folder_is_an_error(tmp_path):
    assert main(["stats", str(tmp_path)]) == 1

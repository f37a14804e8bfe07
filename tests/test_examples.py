"""The examples in examples/ run as documented."""
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_example_runs(path, tmp_path):
    result = subprocess.run([sys.executable, path], cwd=tmp_path, capture_output=True, text=True, timeout=240,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()


def test_cli_demo(tmp_path):
    result = subprocess.run([sys.executable, "-m", "streamv2d.cli", "demo", "--out", str(tmp_path / "d"),
                             "--videos", "6"], capture_output=True, text=True, timeout=240,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 samples" in result.stdout and "HTTP 404" in result.stdout

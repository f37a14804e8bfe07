"""A Slurm task unpickles its job file only when it carries the submission's signature: the file sits in the
store, which others may write; the key reaches the tasks through their environment only."""
import pickle

import pytest

from streamv2d.engines import slurm


def _job_file(tmp_path, key, payload_object=(None, None, [[]])):
    payload = pickle.dumps(payload_object)
    path = tmp_path / "job.pkl"
    path.write_bytes(slurm._signature(key, payload) + payload)
    return path


class _Boom:
    def __reduce__(self):   # what a planted pickle does: run code when loaded
        return (pytest.fail, ("a tampered job file was unpickled",))


def test_a_signed_job_file_runs(tmp_path, monkeypatch):
    key = "ab" * 32
    monkeypatch.setenv(slurm.KEY_VARIABLE, key)
    assert slurm.task_main(str(_job_file(tmp_path, key)), 0) == 0


def test_a_changed_or_unsigned_job_file_is_never_unpickled(tmp_path, monkeypatch):
    key = "ab" * 32
    path = _job_file(tmp_path, key)
    planted = pickle.dumps(_Boom())
    path.write_bytes(path.read_bytes()[:32] + planted)          # the signature kept, the payload replaced
    monkeypatch.setenv(slurm.KEY_VARIABLE, key)
    with pytest.raises(SystemExit, match="signature does not match"):
        slurm.task_main(str(path), 0)
    monkeypatch.setenv(slurm.KEY_VARIABLE, "cd" * 32)              # another submission's key
    with pytest.raises(SystemExit, match="signature does not match"):
        slurm.task_main(str(_job_file(tmp_path, key, _Boom())), 0)
    monkeypatch.delenv(slurm.KEY_VARIABLE)
    with pytest.raises(SystemExit, match="STREAMV2D_JOB_KEY is not set"):
        slurm.task_main(str(path), 0)

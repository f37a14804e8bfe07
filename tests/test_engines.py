"""Engines: torchrun ranks, Ray, Spark and Slurm each run ``ShardJob.run`` and give what a local materialize
gives, byte for byte (a download + probe job: no transcode, so no dependence on encoder determinism)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

import streamv2d as sv
from streamv2d.cli import main
from streamv2d.config import job_from_dict
from streamv2d.demo.s3 import free_port
import threading

from streamv2d.engines.base import opened_once, poll_store, rank_shards, shard_groups
from conftest import write_csv
from s3_server import bucket, moto_endpoint  # noqa: F401  (fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def files_of(folder):
    """``{name: bytes}`` of the published files (stats without their clock fields)."""
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith("."):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        if name.endswith("_stats.json"):
            data = {k: v for k, v in json.loads(data).items() if k not in ("start_time", "end_time", "duration")}
        out[name] = data
    return out


@pytest.fixture()
def job(tmp_path, server, corpus_names):
    rows = [{"url": server.url(f"videos/{n}"), "caption": n} for n in corpus_names[:5]]
    rows.append({"url": server.url("status/404"), "caption": "gone"})
    table = write_csv(str(tmp_path / "t.csv"), rows)
    return sv.Job(source=table, subsamplers=[sv.Probe()], table={"samples_per_shard": 2, "caption_col": "caption"})


@pytest.fixture()
def reference(tmp_path, job):
    """The same job materialized by local processes."""
    out = str(tmp_path / "local")
    assert sv.materialize(None, out, job, progress=False).failed == []
    return files_of(out)


def test_ranks_split_the_shards():
    """Bug: under torchrun every rank of a materialize processed every shard."""
    assert rank_shards(range(5), "multiprocessing", {"RANK": "1", "WORLD_SIZE": "2"}) == [1, 3]
    assert rank_shards(range(5), "multiprocessing", {}) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="RANK/WORLD_SIZE are not set"):
        rank_shards(range(5), "torchrun", {})


def test_shard_groups_cut_the_todo_list():
    assert shard_groups([3, 4, 5, 7, 9], 2) == [[3, 4], [5, 7], [9]]
    with pytest.raises(ValueError, match="shards_per_task: 0 is not >= 1"):
        shard_groups([1], 0)


class _EmptyStore:
    """A store on which no shard ever appears (the job ends without publishing)."""
    class location:
        fresh = staticmethod(lambda: None)
        published_names = staticmethod(lambda root: [])
    root = "unused"


def test_polling_ends_when_the_job_does_not_a_poll_later():
    """Bug: the Spark engine slept a whole poll interval after its job had ended before its last look (up to 1 s
    of every run). A wait that returns when the job ends makes the last look at once, whatever the interval."""
    ended = threading.Event()
    timer = threading.Timer(0.05, ended.set)
    timer.start()
    events = poll_store(_EmptyStore(), [0], lambda: not ended.is_set(), lambda: {0: "lost"}, every=3600,
                        wait=ended.wait)
    assert list(events) == [(0, "lost")]


def test_a_worker_opens_a_shipped_job_once():
    loads = []
    first = opened_once("job-a", lambda: loads.append("a") or ("job", "store"))
    assert opened_once("job-a", lambda: loads.append("again")) is first and loads == ["a"]
    assert opened_once("job-b", lambda: ("other", "store")) == ("other", "store")   # a new job replaces it


@pytest.fixture()
def eight_cores(monkeypatch):
    """A machine of 8 CPUs, all this process's; the share declarations are put back after the test."""
    from streamv2d.distribute import world

    monkeypatch.setattr(world.os, "sched_getaffinity", lambda pid: set(range(8)))
    monkeypatch.setattr(world.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(world, "cgroup_cpus", lambda: 8)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    yield world
    world.share_cores_among(1)


def test_a_task_decodes_on_the_cpus_its_engine_granted(eight_cores):
    """Bug: a Ray, Spark or Slurm task sized its decode slots from all the node's cores, while its engine ran one
    task per granted CPU (2 tasks of 1 CPU on a 2-core node: 4 rows decoding at once). A task now decodes on its
    grant, and a worker process reused by a job of another grant resizes its slots."""
    from streamv2d.distribute.slots import decode_slot
    from streamv2d.engines.base import run_shard
    from streamv2d.engines.slurm import allocated_cpus

    class Job:
        def run(self, shard_id, store):
            self.seen = (eight_cores.core_share(), decode_slot()._free)

    shard_job = Job()
    run_shard(shard_job, None, 0, 3)
    assert shard_job.seen == (3, 3)
    run_shard(shard_job, None, 1, 0.5)      # a fraction of a CPU still decodes one row at a time
    assert shard_job.seen == (1, 1)
    run_shard(shard_job, None, 2, 64)       # never more than the machine has
    assert shard_job.seen == (8, 8)
    run_shard(shard_job, None, 3)           # no grant: the machine's cores
    assert shard_job.seen == (8, 8)
    assert allocated_cpus({"SLURM_CPUS_ON_NODE": "4"}) == 4 and allocated_cpus({}) is None
    with pytest.raises(ValueError, match="num_cpus_per_task: 0 is not a positive number"):
        sv.Job(distributor="ray", distributor_args={"num_cpus_per_task": 0})
    with pytest.raises(ValueError, match="shards_per_task: 2.7 is not a positive whole number"):
        sv.Job(distributor="slurm", distributor_args={"shards_per_task": 2.7})
    with pytest.raises(ValueError, match="max_parallel: 0.5 is not a positive whole number"):
        sv.Job(distributor="slurm", distributor_args={"max_parallel": 0.5})
    assert sv.Job(distributor="ray", distributor_args={"num_cpus_per_task": 0.5}).distributor_args == \
        {"num_cpus_per_task": 0.5}


def test_torchrun_ranks_on_one_machine_share_its_cores(eight_cores, monkeypatch, tmp_path, job):
    """Bug: every torchrun rank of a materialize started one process per CPU, and each decoded on the whole
    machine (4 ranks on 8 cores: 32 processes, each sized for 8 cores). Ranks split the cores, unless each is
    already pinned to fewer CPUs than its cgroup allows (a Slurm allocation or a container limits all ranks alike)."""
    from streamv2d.materialize import usable_cpus

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert usable_cpus() == 2 and eight_cores.core_share() == 2
    eight_cores.share_cores_among(2)
    assert eight_cores.core_share() == 1
    monkeypatch.setattr(eight_cores.os, "sched_getaffinity", lambda pid: {0, 1})   # pinned to its 2 CPUs
    assert eight_cores.local_ranks() == 1 and usable_cpus() == 2
    monkeypatch.setattr(eight_cores.os, "cpu_count", lambda: 64)   # the job's cgroup allows 8 of 64: not pinned
    monkeypatch.setattr(eight_cores.os, "sched_getaffinity", lambda pid: set(range(8)))
    assert eight_cores.local_ranks() == 4 and usable_cpus() == 2
    assert eight_cores.cpu_list_size("0-3,8-11\n") == 8 and eight_cores.cpu_list_size("5") == 1
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "many")
    monkeypatch.setattr(eight_cores.os, "sched_getaffinity", lambda pid: set(range(8)))
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE: 'many' is not a positive number of ranks"):
        usable_cpus()
    with pytest.raises(ValueError, match="LOCAL_WORLD_SIZE"):   # before any row, not in each row's decode
        sv.materialize(None, str(tmp_path / "out"), job, processes=1, progress=False)


def with_core_share(job):
    """``job`` with a last stage noting in each sample's json the cores its process may keep busy; a closure, so
    cloudpickle ships it by value to Ray and Spark workers."""
    from streamv2d.distribute import core_share

    def record(sample):
        sample["json"]["core_share"] = core_share()
        return sample

    return job.replace(subsamplers=[*job.subsamplers, record])


def core_shares(folder) -> list:
    """The cores each processed sample's process had, as ``with_core_share`` noted them (failed rows have none)."""
    import webdataset as wds

    samples = [s for name in sorted(os.listdir(folder)) if name.endswith(".tar")
               for s in wds.WebDataset(os.path.join(folder, name), shardshuffle=False).decode()]
    return [s["json"]["core_share"] for s in samples if "core_share" in s["json"]]


def test_a_rank_materializes_only_its_shards(tmp_path, job, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = sv.materialize(None, str(tmp_path / "out"), job, progress=False)
    assert result.written == 1 and sorted(n for n in os.listdir(tmp_path / "out") if n.endswith("_stats.json")) \
        == ["00001_stats.json"]


def test_torchrun_ranks_together_equal_a_local_run(tmp_path, job, reference):
    out = str(tmp_path / "out")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                "-m", "streamv2d.cli", "materialize", job.source, out, "--samples-per-shard", "2",
                "--caption-col", "caption", "--config", _probe_config(tmp_path), "--distributor", "torchrun", "-q"]
    done = subprocess.run(launcher, env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert files_of(out) == reference


def _probe_config(tmp_path) -> str:
    path = tmp_path / "job.yaml"
    path.write_text("subsampling: [probe]\n")
    return str(path)


@pytest.fixture(scope="module")   # torn down before other modules fork DataLoader workers
def ray_local():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'streamv2d[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": ROOT}})
    yield ray
    ray.shutdown()


def test_ray_equals_a_local_run(tmp_path, job, reference, ray_local):
    out = str(tmp_path / "out")
    result = sv.materialize(None, out, job, distributor="ray", distributor_args={"retries": 2}, progress=False)
    assert result.failed == [] and result.written == 3
    assert files_of(out) == reference


def test_ray_tasks_decode_on_their_cpus(tmp_path, job, ray_local):
    out = str(tmp_path / "out")
    assert sv.materialize(None, out, with_core_share(job), distributor="ray", progress=False).written == 3
    assert core_shares(out) == [1] * 5   # num_cpus_per_task 1 (before: the node's 2)


@pytest.fixture(scope="module")
def spark_session():
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'streamv2d[spark]')")
    if shutil.which("java") is None:
        pytest.skip("no Java runtime for Spark")
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (SparkSession.builder.master("local[2]").appName("streamv2d tests")
             .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
    yield spark
    spark.stop()


@pytest.mark.parametrize("per_task", [1, 2])
def test_spark_equals_a_local_run(tmp_path, job, reference, spark_session, per_task):
    out = str(tmp_path / "out")
    result = sv.materialize(None, out, job, distributor="spark", distributor_args={"shards_per_task": per_task},
                            progress=False)
    assert result.failed == [] and result.written == 3
    assert files_of(out) == reference


SLURM_CONF = """ClusterName=streamv2d
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def test_spark_tasks_decode_on_their_cpus(tmp_path, job, spark_session):
    out = str(tmp_path / "out")
    assert sv.materialize(None, out, with_core_share(job), distributor="spark", progress=False).written == 3
    assert core_shares(out) == [1] * 5   # spark.task.cpus 1 (before: the node's 2)


@pytest.fixture(scope="module")
def slurm_cluster():
    """A real single-node Slurm (Debian's slurm-wlm + munge) started as root, once (this module)."""
    if os.geteuid() != 0 or not all(shutil.which(b) for b in ("slurmctld", "slurmd", "sbatch", "munged")):
        pytest.skip("needs root and slurm-wlm + munge (apt-get install slurm-wlm munge; see .ci/run)")
    folder = tempfile.mkdtemp(prefix="streamv2d-slurm-")
    os.makedirs(f"{folder}/state")
    os.makedirs(f"{folder}/spool")
    conf = f"{folder}/slurm.conf"
    with open(conf, "w") as f:
        f.write(SLURM_CONF.format(host=socket.gethostname(), ctld_port=free_port(), d_port=free_port(),
                                  dir=folder, cpus=os.cpu_count()))
    started = []
    if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
        for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            os.makedirs(d, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True)
        started.append("/run/munge/munged.pid")
    env = {**os.environ, "SLURM_CONF": conf}
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([daemon, "-f", conf], env=env, check=True)
        started.append(f"{folder}/{daemon}.pid")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    deadline = time.monotonic() + 30
    while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout:
        if time.monotonic() > deadline:
            pytest.skip(f"slurm did not come up: {open(f'{folder}/slurmctld.log').read()[-500:]}")
        time.sleep(0.3)
    yield conf
    for pid_file in reversed(started):   # only the daemons this fixture started, by their pid
        try:
            with open(pid_file) as f:
                os.kill(int(f.read().strip()), 15)
        except (OSError, ValueError):
            pass
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous


def test_slurm_array_equals_a_local_run(tmp_path, job, reference, slurm_cluster):
    out = str(tmp_path / "out")
    result = sv.materialize(None, out, job, distributor="slurm",
                            distributor_args={"shards_per_task": 2, "poll_seconds": 0.3}, progress=False)
    assert result.failed == [] and result.written == 3
    assert files_of(out) == reference


def test_slurm_detach_submits_and_status_follows(tmp_path, job, reference, slurm_cluster, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", ROOT)
    out = str(tmp_path / "out")
    assert main(["materialize", job.source, out, "--config", _probe_config(tmp_path), "--samples-per-shard", "2",
                 "--caption-col", "caption", "--distributor", "slurm", "--detach", "-q"]) == 0
    assert "follow it with: streamv2d status" in capsys.readouterr().out
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(
            os.path.exists(os.path.join(out, f"{k:05d}_stats.json")) for k in range(3)):
        time.sleep(0.3)
    assert main(["status", out]) == 0 and "3 done of 3" in capsys.readouterr().out
    assert files_of(out) == reference


def test_distribution_config_maps_video2dataset_distributors():
    job = job_from_dict({"distribution": {"distributor": "slurm", "distributor_args": {
        "partition": "cpu", "cpus_per_task": 4, "n_nodes": 2, "tasks_per_node": 3, "job_name": "x"}}})
    assert job.distributor == "slurm"
    assert job.distributor_args == {"sbatch_args": ["--partition=cpu", "--cpus-per-task=4"], "max_parallel": 6}
    assert any("job_name" in note for note in job.notes)
    assert job_from_dict({"distribution": {"distributor": "pyspark"}}).distributor == "spark"
    with pytest.raises(ValueError, match=r"distributor_args: \['workers'\] mean nothing to ray"):
        job_from_dict({"distribution": {"distributor": "ray", "distributor_args": {"workers": 3}}})


def test_slurm_to_s3_with_storage_options_given_in_python(tmp_path, job, reference, slurm_cluster, bucket,
                                                           monkeypatch):
    """``storage_options`` given in Python reach the array tasks (they read the job file and write the shards
    on the store with them): nothing in the environment or fsspec's config points at the S3 server."""
    import fsspec.config

    options = json.loads(os.environ["FSSPEC_S3"])
    monkeypatch.delenv("FSSPEC_S3")
    monkeypatch.delitem(fsspec.config.conf, "s3")
    out = f"{bucket}/slurm"
    result = sv.materialize(None, out, job, distributor="slurm", progress=False, storage_options=options,
                            tmp_dir=str(tmp_path / "scratch"))
    assert result.failed == [] and result.written == 3
    fs, root = fsspec.core.url_to_fs(out, **options)
    names = sorted(p[len(root) + 1:] for p in fs.find(root) if "/.streamv2d/" not in p)
    assert names == sorted(reference)
    assert fs.cat_file(f"{root}/00001.tar") == reference["00001.tar"]

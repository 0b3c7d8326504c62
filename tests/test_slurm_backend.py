"""The slurm backend through run_action on a real single-host Slurm cluster (scripts/slurm_cluster.sh), docker
runtime, the TAO 5.5 stand-in image: a 2-node train with the right verdict, per-node logs, a failing job,
cancel leaving no container, state after the job left scontrol, preflight and submit refusals."""

import json
import re
import subprocess
import time
from pathlib import Path

import docker
import pytest
from tao_bevfusion.backends.slurm.backend import SlurmBackend
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.jobs.context import app_context
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.service.jobs import cancel_job, get_job
from tao_bevfusion.service.run import run_action

from tests.conftest import copy_sample, finish
from tests.test_slurm_real import slurm  # noqa: F401 - the cluster fixture

pytestmark = pytest.mark.docker
OPTS = {"runtime": "docker", "container_gpus": False, "partition": "debug"}
SOURCE_TAG = re.compile(rb"\[node \d+\] |\[batch\] ")


@pytest.fixture
def cluster_ws(docker_ws: Path, slurm: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:  # noqa: F811
    monkeypatch.setenv("SLURM_CONF", slurm["SLURM_CONF"])
    root = copy_sample(docker_ws / "kitti")
    out = run_action(RunActionInput(action="dataset_convert", data_root=str(root), gpus=[]))
    assert out.job_id and finish(out.job_id).state == "succeeded"
    return root


def _train(root: Path, **kw: object):
    fields: dict[str, object] = dict(action="train", data_root=str(root), backend="slurm", num_nodes=2, num_gpus=2,
                                     automl_policy="off", overrides={"num_epochs": 2, "batch_size": 1},
                                     backend_options=OPTS)
    fields.update(kw)
    return run_action(RunActionInput.model_validate(fields))


def _by_source(log: bytes) -> dict[bytes, bytes]:
    """The job log split back into its sources by line prefix ([node N], [batch]; none for node 0)."""
    out: dict[bytes, bytes] = {}
    for line in log.splitlines(keepends=True):
        m = SOURCE_TAG.match(line)
        tag = m.group() if m else b""
        out[tag] = out.get(tag, b"") + line[len(tag):]
    return out


def _complete(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: max(data.rfind(b"\n"), data.rfind(b"\r")) + 1]


def _containers(engine: docker.DockerClient, job_id: str) -> list[str]:
    # The low-level list: containers.list() inspects each one and races with their removal.
    found = engine.api.containers(all=True, filters={"label": f"tao-bevfusion.job={job_id}"})  # as on docker
    return [c["Names"][0] for c in found]


def test_two_node_train_verdict_and_per_node_logs(cluster_ws: Path, engine: docker.DockerClient) -> None:
    t0 = time.monotonic()
    out = _train(cluster_ws)
    assert out.job_id and out.plan is not None
    assert out.state == "pending"  # sbatch only queued it; the first poll that sees it RUNNING says running
    script = out.plan.model_dump()["script"]
    assert "#SBATCH --nodes=2" in script and "#SBATCH --gres=gpu:2" in script and "--partition=debug" in script
    s = finish(out.job_id)
    print(f"\n[timing] 2-node slurm train {out.job_id}: run_action -> {s.state} in {time.monotonic() - t0:.1f} s")
    assert s.state == "succeeded" and s.verdict.outcome == "succeeded" and s.verdict.footer == "PASS", s
    assert s.artifacts["checkpoints"] == ["epoch_1.pth", "epoch_2.pth"] and s.progress.epoch == 2
    log_dir = Path(out.plan.model_dump()["log_dir"])
    nodes = sorted(p.name for p in log_dir.glob("*-node*.log"))
    assert len(nodes) == 2 and all("Execution status: PASS" in (log_dir / n).read_text() for n in nodes)
    job = app_context().store.get(out.job_id)
    text = job.files(app_context().settings.home).log.read_bytes()
    assert b"Execution status: PASS" in text and b"[node 1] " in text
    # What the sync promises: every complete line of each node and of the batch script, once and in its own
    # order; node 0's as they are, the others' prefixed. Sources interleave in the order the syncs found their
    # lines, so the log may start with node 1's (it does when node 1 printed first): no node order is promised.
    sources = _by_source(text)
    assert set(sources) <= {b"", b"[node 1] ", b"[batch] "}
    assert sources[b""] == _complete(log_dir / nodes[0]) and sources[b"[node 1] "] == _complete(log_dir / nodes[1])
    assert sources.get(b"[batch] ", b"") == _complete(log_dir / f"{nodes[0].rsplit('-node', 1)[0]}.batch.log")
    assert _containers(engine, out.job_id) == []
    spec = Path(job.spec_path).read_text()
    assert "num_nodes: 2" in spec and "num_gpus: 2" in spec


def test_failing_job_and_state_after_it_left_scontrol(cluster_ws: Path) -> None:
    out = _train(cluster_ws, env={"FAKE_TAO_FAULT": "fail_at_iter"})
    assert out.job_id
    s = finish(out.job_id)
    assert s.state == "failed" and s.verdict.outcome == "failed", s
    assert "out of memory" in (s.verdict.reason + json.dumps([e.model_dump() for e in s.errors])).lower()
    handle = app_context().store.get(out.job_id).handle
    assert handle and handle.startswith("slurm:")
    backend = SlurmBackend()
    slurm_id = handle.split(":")[1]
    # The same state from each fallback once scontrol forgets the job (MinJobAge): sacct -c, then the end record.
    from tao_bevfusion.backends.slurm import cli as slurm_cli
    assert slurm_cli.scontrol_job(slurm_id) is not None
    t0 = time.monotonic()
    via_sacct = slurm_cli.sacct_job(slurm_id)
    print(f"\n[timing] sacct -c state after the end: {time.monotonic() - t0:.3f} s")
    assert via_sacct is not None and via_sacct.state == "COMPLETED" and via_sacct.source == "sacct -c"
    end = json.loads((Path(handle.split(":", 3)[3]) / "end.json").read_text())
    assert end["state"] == "COMPLETED"   # the stand-in's launcher exits 0 on failure, as 5.5's does
    # A job id neither scontrol nor sacct knows (as after MinJobAge without a completion log): the end record.
    _, _, name, log_dir = handle.split(":", 3)
    assert backend.poll(f"slurm:999999:{name}:{log_dir}").state == "missing"  # another job's record: not trusted
    record = Path(log_dir) / "end.json"
    record.write_text(record.read_text().replace(f'"job_id": "{slurm_id}"', '"job_id": "999999"'))
    status = backend.poll(f"slurm:999999:{name}:{log_dir}")
    assert status.state == "exited" and status.exit_code == 0 and "end record" in str(status.error or "end record")
    empty = Path(log_dir).parent / "empty"
    empty.mkdir()
    assert backend.poll(f"slurm:999999:{name}:{empty}").state == "missing"


def test_cancel_leaves_no_container(cluster_ws: Path, engine: docker.DockerClient) -> None:
    out = _train(cluster_ws, overrides={"num_epochs": 50, "batch_size": 1}, env={"FAKE_TAO_ITER_SECONDS": "0.5"})
    assert out.job_id
    end = time.monotonic() + 60
    while len(_containers(engine, out.job_id)) < 2 and time.monotonic() < end:
        time.sleep(0.2)
    assert len(_containers(engine, out.job_id)) == 2
    assert SlurmBackend().find(out.job_id) == app_context().store.get(out.job_id).handle   # re-attach by job name
    assert get_job(out.job_id).state == "running"
    t0 = time.monotonic()
    res = cancel_job(out.job_id)
    while _containers(engine, out.job_id) and time.monotonic() - t0 < 30:
        time.sleep(0.1)
    print(f"\n[timing] cancel_job -> containers gone {time.monotonic() - t0:.2f} s")
    assert _containers(engine, out.job_id) == []
    assert res.state == "canceled" or finish(out.job_id).state == "canceled"


def test_preflight_refusals_name_the_fix(cluster_ws: Path) -> None:
    with pytest.raises(InputError) as bad_part:
        _train(cluster_ws, backend_options={**OPTS, "partition": "nosuch"})
    assert "partition 'nosuch' does not exist" in str(bad_part.value.problems[0].message)
    assert "debug" in bad_part.value.problems[0].fix
    with pytest.raises(InputError) as many:
        _train(cluster_ws, num_gpus=4)
    assert any("offer at most 2" in p.message for p in many.value.problems)
    with pytest.raises(InputError) as nodes:
        _train(cluster_ws, num_nodes=3)
    assert any("has 2" in p.message for p in nodes.value.problems)
    dry = _train(cluster_ws, dry_run=True)
    assert dry.state == "planned" and any(c.name == "shared_fs" for c in dry.plan.preflight)


def test_submit_refused_reports_slurm_message(cluster_ws: Path) -> None:
    # The preflight cannot see reservations; sbatch refuses an unknown one, and no Slurm job exists.
    before = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout
    with pytest.raises(InputError) as err:
        _train(cluster_ws, backend_options={**OPTS, "reservation": "nosuch"})
    message = err.value.problems[0].message
    assert message.startswith("sbatch refused the job:") and "reservation" in message.lower(), message
    # main discards the unstarted record ("no job was recorded"); before that merge it was kept as failed.
    assert "no job was recorded" in err.value.headline or "recorded as failed" in err.value.headline
    assert not [j for j in app_context().store.query(limit=50) if j.state in ("pending", "running")]
    assert subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout == before


def test_one_gpu_per_node_and_docker_refuse_several_nodes(cluster_ws: Path) -> None:
    with pytest.raises(InputError) as one:
        _train(cluster_ws, num_gpus=1)
    assert "separate, unrelated" in one.value.problems[0].message
    with pytest.raises(InputError) as dock:
        _train(cluster_ws, backend="docker", backend_options=None)
    assert "slurm" in dock.value.problems[0].fix and "kubernetes" in dock.value.problems[0].fix
    with pytest.raises(InputError) as env:
        _train(cluster_ws, env={"PET_NODE_RANK": "1"})
    assert "distributed" in env.value.problems[0].message


def test_job_queued_by_the_scheduler_is_pending(cluster_ws: Path) -> None:
    # A time limit beyond the partition's MaxTime: Slurm accepts the job and keeps it PENDING (PartitionTimeLimit).
    subprocess.run(["scontrol", "update", "PartitionName=debug", "MaxTime=1"], check=True, capture_output=True)
    try:
        out = _train(cluster_ws, backend_options={**OPTS, "time_limit": "10:00:00"})
        assert out.job_id
        time.sleep(0.5)
        assert get_job(out.job_id).state == "pending"
        assert cancel_job(out.job_id).state == "canceled"
    finally:
        subprocess.run(["scontrol", "update", "PartitionName=debug", "MaxTime=INFINITE"], check=True)


def test_two_node_train_through_the_mcp_server(cluster_ws: Path) -> None:
    import anyio
    from mcp import Client
    from tao_bevfusion.server import mcp

    async def go() -> dict[str, object]:
        async with Client(mcp) as c:
            dry = await c.call_tool("run_action", {"action": "train", "data_root": str(cluster_ws), "backend": "slurm",
                                                   "num_nodes": 2, "num_gpus": 2, "automl_policy": "off",
                                                   "backend_options": OPTS, "dry_run": True})
            assert "#SBATCH --nodes=2" in dry.structured_content["plan"]["script"]
            r = await c.call_tool("run_action", {"action": "train", "data_root": str(cluster_ws), "backend": "slurm",
                                                 "num_nodes": 2, "num_gpus": 2, "automl_policy": "off",
                                                 "overrides": {"num_epochs": 1, "batch_size": 1},
                                                 "backend_options": OPTS, "wait_seconds": 30})
            assert not r.is_error, r
            summary: dict[str, object] = r.structured_content["summary"]
            return summary

    summary = anyio.run(go)
    assert summary["state"] == "succeeded", summary


def test_log_dir_is_confined_and_a_shared_one_is_untrusted(cluster_ws: Path, tmp_path: Path) -> None:
    """Issue 17, Medium 9: log_dir outside the roots (or in the state dir) is refused before anything is written;
    a shared one gets a private subfolder per job, a 0600 script, and planted files there are not believed."""
    outside = tmp_path / "elsewhere" / "logs"
    home = app_context().settings.home
    for bad in (str(outside), str(home / "jobs"), str(home)):
        with pytest.raises(InputError, match=r"backend_options\.log_dir"):
            _train(cluster_ws, backend_options={**OPTS, "log_dir": bad})
    assert not outside.parent.exists()
    shared = cluster_ws.parent / "shared-logs"
    shared.mkdir()
    planted = shared / "end.json"
    planted.write_text('{"job_id": "1", "state": "COMPLETED", "srun_rc": 0, "end": 0}')
    out = _train(cluster_ws, backend_options={**OPTS, "log_dir": str(shared)})
    assert out.job_id and finish(out.job_id).state == "succeeded"
    own = Path(out.plan.model_dump()["log_dir"])
    assert own.parent == shared and own.name == f"tao-{out.job_id}" and oct(own.stat().st_mode & 0o777) == "0o700"
    script = Path(out.plan.model_dump()["script_path"])
    assert script.parent == own and oct(script.stat().st_mode & 0o777) == "0o600"
    assert planted.read_text().startswith('{"job_id": "1"')  # not deleted, not read as this job's
    handle = app_context().store.get(out.job_id).handle
    assert handle and handle.endswith(str(own))
    name = f"tao-{out.job_id}"
    foreign = shared / "foreign"
    foreign.mkdir()
    (foreign / "end.json").symlink_to(own / "end.json")
    assert SlurmBackend().poll(f"slurm:999999:{name}:{foreign}").state == "missing"  # a link is not a record

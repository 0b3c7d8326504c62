"""Issue 17, Medium 15: build_spec never overwrites a file, and a job's spec is only read back when its hash is
still the one recorded at launch (a resume never uses a replaced spec)."""

from pathlib import Path

import pytest
from tao_bevfusion.jobs.context import app_context

from tests.attacks.helpers import FAST, cli, finish, launch, mcp_call, mcp_resource, refused

pytestmark = pytest.mark.attack


def test_output_path_never_overwrites(raw_root: Path, workspace: Path):
    out = workspace / "specs-of-mine" / "train.yaml"
    rc, _, err = cli("build-spec", "--action", "train", "--data-root", str(raw_root), "--output-path", str(out))
    assert rc == 0, err
    first = out.read_bytes()
    rc, _, err = cli("build-spec", "--action", "train", "--data-root", str(raw_root), "--output-path", str(out),
                     "--overrides", '{"num_epochs": 7}')
    assert rc == 2 and "already exists" in err and "output_path" in err
    assert out.read_bytes() == first
    planted = workspace / "specs-of-mine" / "linked.yaml"
    planted.symlink_to(out)  # a link to an existing spec is no way around it
    assert "already exists" in refused("build_spec", action="train", data_root=str(raw_root),
                                       output_path=str(planted))
    assert out.read_bytes() == first


@pytest.mark.docker
def test_another_jobs_recorded_spec_is_not_overwritten_and_a_replaced_one_is_not_used(converted: Path):
    job = launch("train", converted, overrides=FAST)
    assert finish(job.job_id).state == "succeeded"
    spec_path = app_context().store.get(job.job_id).spec_path
    recorded = Path(spec_path).read_bytes()
    r = mcp_call("build_spec", {"action": "train", "data_root": str(converted), "output_path": spec_path,
                                "overrides": {"num_epochs": 9}})
    assert r.is_error and "already exists" in r.content[0].text
    assert Path(spec_path).read_bytes() == recorded
    Path(spec_path).write_text(recorded.decode().replace("num_epochs: 2", "num_epochs: 9"))  # replaced by hand
    text = refused("build_spec", action="train", data_root=str(converted), parent_job_id=job.job_id, resume=True)
    assert "changed after the job was launched" in text
    with pytest.raises(Exception) as failed:  # the SDK wraps the server's error in a group
        mcp_resource(f"tao-bevfusion://jobs/{job.job_id}/spec")
    assert "changed after the job was launched" in _messages(failed.value)


def _messages(exc: BaseException) -> str:
    inner = getattr(exc, "exceptions", None)
    return " ".join(_messages(e) for e in inner) if inner else str(exc)

"""Issue 17 item 16: a key of letters only is masked as a whole word (a key that is part of an ordinary word
must not eat the evidence; a key with digits or symbols is masked everywhere, see test_small_gaps), and a
key too short to be a key is refused."""

from pathlib import Path

import pytest

from tests.attacks.helpers import finish, launch, mcp_call

pytestmark = [pytest.mark.attack]


def test_a_three_character_key_is_refused_and_not_echoed(raw_root: Path):
    r = mcp_call("build_spec", {"action": "train", "data_root": str(raw_root), "encryption_key": "PAS"})
    text = r.content[0].text
    assert r.is_error and "encryption_key" in text and "8" in text and "'PAS'" not in text, text


@pytest.mark.docker
def test_a_key_inside_ordinary_words_leaves_the_evidence_whole(converted: Path, workspace: Path):
    """Key 'successf' is inside 'finished successfully' (status.json) and the log: the train still succeeds
    (old code masked it inside the word, lost the finished line and called the success a failure)."""
    job = launch("train", converted, overrides={"num_epochs": 1, "batch_size": 1}, encryption_key="successf")
    s = finish(job.job_id, timeout=180)
    assert s.state == "succeeded", s.verdict
    log = mcp_call("get_job_logs", {"job_id": job.job_id, "grep": "Execution status"})
    assert "Execution status: PASS" in log.content[0].text

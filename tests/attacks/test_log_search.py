"""Issue 17 item 7: grep's search (jobs/logsearch.py) against a plain reference, with tiny CHUNK and PIECE so
every boundary (a line across chunks, a line longer than a piece, \\r and \\n runs) is crossed; and the
child process killed at the budget on a pattern no engine finishes, keeping what it found before."""

import itertools
import re
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tao_bevfusion.jobs import logsearch
from tao_bevfusion.jobs.logsearch import Request

pytestmark = [pytest.mark.attack]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PIECE, CHUNK = 5, 7


def _reference(data: bytes, pattern: bytes, want: int, backward: bool) -> list[bytes]:
    """Every line cut at each file offset that is a multiple of PIECE; blank slices skipped."""
    hits = []
    for m in re.finditer(rb"[^\r\n]+", data):
        cuts = sorted({m.start(), m.end(), *range((m.start() // PIECE + 1) * PIECE, m.end(), PIECE)})
        pieces = [data[a:b] for a, b in itertools.pairwise(cuts)]
        hits += [p for p in pieces if p.strip() and re.search(pattern, p)]
    return hits[-want:] if backward else hits[:want]


def _search(path: Path, pattern: bytes, want: int, backward: bool) -> tuple[list[bytes], list[int]]:
    req = Request(str(path), pattern.decode(), 0, path.stat().st_size, backward, want)
    found, ats = [], []
    for batch in logsearch.batches(req):
        found.append([h.encode("latin-1") for h in batch.hits])
        ats.append(batch.at)
    ordered = reversed(found) if backward else found
    return [h for hits in ordered for h in hits], ats


text = st.lists(st.sampled_from([b"a", b"b", b"x", b" ", b"\n", b"\r", b"ab", b"\r\n"]), max_size=60).map(b"".join)


@FUZZ
@given(data=text, pattern=st.sampled_from([b"a", b"ab", b"b$", b"^x", b"x|b"]), want=st.integers(1, 6),
       backward=st.booleans())
def test_search_finds_what_a_plain_scan_finds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes,
                                              pattern: bytes, want: int, backward: bool):
    monkeypatch.setattr(logsearch, "PIECE", PIECE)
    monkeypatch.setattr(logsearch, "CHUNK", CHUNK)
    path = tmp_path / "job.log"
    path.write_bytes(data)
    found, ats = _search(path, pattern, want, backward)
    assert found == _reference(data, pattern, want, backward)
    assert ats == sorted(ats, reverse=backward)  # progress only ever moves one way
    if len(_reference(data, pattern, 10**6, backward)) < want and data:
        assert ats[-1] == (0 if backward else len(data))  # nothing left unsearched


def test_a_pattern_no_engine_finishes_is_killed_at_the_budget_keeping_newer_matches(tmp_path: Path):
    """'(a+)+$' on 60 a's and a '!' (2^60 steps for Python's re): the child is killed at GREP_SECONDS; the
    matching lines newer than that line were sent before and are on the page, and the hint says where the
    search stopped and why."""
    from tao_bevfusion.jobs.logs import GREP_SECONDS, _search

    path = tmp_path / "job.log"
    path.write_bytes(b"aaa first\n" + b"a" * 60 + b"!\n" + b"aa\n" + b"aaaa\n")
    started = time.monotonic()
    found, at, stopped = _search(Request(str(path), "(a+)+$", 0, path.stat().st_size, True, 50))
    took = time.monotonic() - started
    assert found == [b"aa", b"aaaa"] and stopped and "budget ran out" in stopped
    assert at == len(b"aaa first\n" + b"a" * 60 + b"!\n")  # down to the start of the oldest line it matched
    assert took < GREP_SECONDS + 5, took  # a hang guard: without the kill this never returns

"""Fold what a job wrote since the last look into its typed findings, progress and metrics.

Readers are incremental: they start at the stored byte offsets, stop before a partial last line, and on a
first look at a huge log read only its last MAX_SCAN bytes. A log or status file that shrank (truncated,
rotated) is read again from its start and the reset is counted, never raised.
"""

import re
from collections.abc import Sequence
from pathlib import Path

from tao_bevfusion.core.redact import redact_bytes
from tao_bevfusion.evidence.divergence import observe_all
from tao_bevfusion.evidence.models import (
    Cursor,
    EpochAP,
    Findings,
    RunMetrics,
    RunProgress,
    StatusEvidence,
)
from tao_bevfusion.evidence.patterns import match_errors
from tao_bevfusion.evidence.safeio import read_regular
from tao_bevfusion.evidence.status import StatusChunk, StatusRecord, read_status

MAX_SCAN = (
    2 * 1024 * 1024
)  # first look at a big log: its last 2 MB (tail -n 2000 sees a few hundred KB)
FOOTER = re.compile(rb"Execution status: (PASS|FAIL)")
EPOCH_TRAIN = re.compile(rb"Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]")
METRIC = re.compile(
    rb"TAO3D metric/pred_instances_3d/TAO3D/(\w+?)_(3D|BEV|2D)_AP(11|40)_(easy|moderate|hard)"
    rb"(?:_(strict|loose))?:\s*([-0-9.eE]+|nan)"
)
MARKERS = {
    "sigsegv": (b"Signal 11 (SIGSEGV)", b"Segmentation fault", b"cuMemRetainAllocationHandle"),
    "sigkill": (b"Signal 9 (SIGKILL)",),
    "traceback": (b"Traceback (most recent call last)",),
}
ERROR_LINE = re.compile(
    rb"(?m)^\s*(?:[\w.]+(?:Error|Exception|Interrupt)|omegaconf\.errors\.\w+)(?::[^\r\n]*)?$"
)
HISTORY_LIMIT = 100


def _complete(data: bytes, final: bool) -> int:
    """Length of the prefix that ends on a record boundary (\\n or \\r); everything when final."""
    if final:
        return len(data)
    return max(data.rfind(b"\n"), data.rfind(b"\r")) + 1


def _read_new(path: Path, cursor: Cursor, findings: Findings, final: bool) -> bytes:
    probe = read_regular(path, 0, 0)
    if probe is None:
        return b""
    size, offset = probe[0], cursor.log_offset
    if size < offset:  # truncated or rotated under us: start again
        offset = 0
    if size - offset > MAX_SCAN:
        findings.skipped_bytes += size - MAX_SCAN - offset
        offset = size - MAX_SCAN
    got = read_regular(path, offset, size - offset)
    if got is None:
        return b""
    data = got[1]
    usable = _complete(data, final)
    cursor.log_offset = offset + usable
    return data[:usable]


def scan_log(
    path: Path,
    cursor: Cursor,
    findings: Findings,
    progress: RunProgress,
    final: bool = False,
    secrets: Sequence[str] = (),
) -> None:
    """Scan bytes appended to the job log since cursor.log_offset (secrets redacted before any evidence)."""
    chunk = redact_bytes(_read_new(path, cursor, findings, final), secrets)
    if not chunk:
        return
    footers = FOOTER.findall(chunk)
    if footers:
        findings.footer = footers[-1].decode()
    for name, needles in MARKERS.items():
        if any(n in chunk for n in needles):
            setattr(findings, name, True)
    tb = chunk.rfind(b"Traceback (most recent call last)")
    errors = ERROR_LINE.findall(chunk[tb:] if tb >= 0 else chunk[-262144:])
    if errors:
        findings.last_error_line = errors[-1].decode(errors="replace").strip()[:300]
    match_errors(chunk, findings.matches)
    epochs = EPOCH_TRAIN.findall(chunk[-65536:])
    if epochs:
        epoch, iteration, per_epoch = (int(x) for x in epochs[-1])
        progress.epoch, progress.epoch_iteration, progress.iters_per_epoch = (
            epoch,
            iteration,
            per_epoch,
        )
    for m in METRIC.finditer(chunk):
        key = "_".join(x.decode() for x in (m[2], b"AP" + m[3], m[4]) + ((m[5],) if m[5] else ()))
        try:
            findings.log_metrics[f"{m[1].decode()}_{key}"] = float(m[6])
        except ValueError:
            continue


def scan_status(
    path: Path,
    cursor: Cursor,
    findings: Findings,
    progress: RunProgress,
    metrics: RunMetrics,
    secrets: Sequence[str] = (),
    final: bool = False,
) -> None:
    """Fold status.json records appended since cursor.status_offset (secrets redacted before parsing); the
    final look (the verdict needs every record) reads on to the end."""
    chunk = read_status(path, cursor.status_offset, secrets=secrets, to_end=final)
    cursor.status_offset = chunk.offset
    fold_status(chunk, findings, progress, metrics)


def fold_status(
    chunk: StatusChunk, findings: Findings, progress: RunProgress, metrics: RunMetrics
) -> None:
    st = findings.status
    if chunk.reset:
        st.resets += 1
    st.records += chunk.lines
    st.unparsed += chunk.unparsed
    st.overlong += chunk.overlong
    observe_all(findings.loss_watch, chunk.losses)
    for rec in chunk.records:
        if rec.status == "FAILURE":
            match_errors((rec.message or "").encode(), findings.matches)
        _fold_record(rec, st, metrics)
    last = chunk.last_train
    if last is not None:
        st.started = True
        for key in ("cur_iter", "loss", "lr", "eta", "time_per_iter"):
            value = getattr(last, key)
            if value is not None:
                setattr(progress, key, value)


def _fold_record(rec: StatusRecord, st: StatusEvidence, metrics: RunMetrics) -> None:
    message = rec.message
    if rec.status == "STARTED":
        st.started = True
    elif rec.status == "FAILURE":
        st.failures = [*st.failures, str(message)[:300]][-5:]
        if message and message.endswith("was interrupted"):
            st.interrupted = True
    elif rec.status in ("SUCCESS", "RUNNING") and message and "finished successfully" in message:
        st.finished = message
    if rec.is_validation:
        metrics.history = [
            *metrics.history,
            EpochAP(epoch=rec.epoch, AP11=rec.AP11, AP40=rec.AP40),
        ][-HISTORY_LIMIT:]
        metrics.AP11, metrics.AP40, metrics.epoch = rec.AP11, rec.AP40, rec.epoch
        ap11 = rec.AP11
        if (
            ap11 is not None
            and ap11 == ap11
            and (metrics.best_AP11 is None or ap11 >= metrics.best_AP11)
        ):
            metrics.best_AP11, metrics.best_epoch = ap11, rec.epoch

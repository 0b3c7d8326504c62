"""What the container left behind -> progress, metrics, matched errors and a verdict (contract §4-§7).

Readers are incremental: they start at a stored byte offset, stop before a partial last line, and on a
first look at a huge log read only its last MAX_SCAN bytes. The verdict never trusts the exit code
alone: 5.5 exits 0 on failure, never writes SUCCESS, and can segfault after a good evaluation.
"""

import functools
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tools.settings import skill_dir
from tools.yamlio import fast_yaml

MAX_SCAN = 2 * 1024 * 1024  # first look at a big log: its last 2 MB (tail -n 2000 sees a few hundred KB)
FOOTER = re.compile(rb"Execution status: (PASS|FAIL)")
EPOCH_TRAIN = re.compile(rb"Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]")
METRIC = re.compile(rb"TAO3D metric/pred_instances_3d/TAO3D/(\w+?)_(3D|BEV|2D)_AP(11|40)_(easy|moderate|hard)"
                    rb"(?:_(strict|loose))?:\s*([-0-9.eE]+|nan)")
MARKERS = {"sigsegv": (b"Signal 11 (SIGSEGV)", b"Segmentation fault", b"cuMemRetainAllocationHandle"),
           "sigkill": (b"Signal 9 (SIGKILL)",),
           "traceback": (b"Traceback (most recent call last)",)}
ERROR_LINE = re.compile(rb"(?m)^\s*(?:[\w.]+(?:Error|Exception|Interrupt)|omegaconf\.errors\.\w+)(?::[^\r\n]*)?$")
FINISHED = {"dataset_convert": "Dataset convert finished successfully", "train": "Train finished successfully.",
            "evaluate": "Evaluate finished successfully.", "inference": "Inference finished successfully."}
SUMMARY_METRICS = ("3D_AP11_moderate_strict", "3D_AP40_moderate_strict", "BEV_AP11_moderate_strict",
                   "BEV_AP40_moderate_strict")
Outcome = Literal["succeeded", "succeeded_with_teardown_crash", "failed", "killed", "canceled", "lost"]


class Pattern(BaseModel):
    id: str
    regex: str
    hints: list[str] = Field(description="Literal substrings; a matching line contains at least one.")
    actions: list[str] | None = Field(default=None, description="Only meaningful for these actions.")
    severity: Literal["error", "warning", "harmless"]
    cause: str
    remedy: str
    next_call: str | None = None


class ErrorMatch(BaseModel):
    pattern: str = Field(description="Knowledge-base id of the matched signature.")
    severity: str
    evidence: str = Field(description="The log or status line that matched (trimmed).")
    cause: str
    remedy: str
    next_call: str | None = None


class Verdict(BaseModel):
    outcome: Outcome
    reason: str
    usable_artifacts: list[str] = Field(default_factory=list)
    missing_artifacts: list[str] = Field(default_factory=list)
    exit_code: int | None = None
    footer: str | None = None


@functools.lru_cache(maxsize=1)
def patterns() -> list[tuple[Pattern, re.Pattern[bytes], list[bytes]]]:
    data = fast_yaml((skill_dir() / "references" / "error_patterns.yaml").read_text())
    items = [Pattern.model_validate(p) for p in data["patterns"]]
    return [(p, re.compile(p.regex.encode()), [h.encode() for h in p.hints]) for p in items]


def _line_at(chunk: bytes, pos: int) -> tuple[int, int]:
    start = max(chunk.rfind(b"\n", 0, pos), chunk.rfind(b"\r", 0, pos)) + 1
    ends = [e for e in (chunk.find(b"\n", pos), chunk.find(b"\r", pos)) if e >= 0]
    return start, min(ends) if ends else len(chunk)


def match_errors(chunk: bytes, found: dict[str, Any], per_hint: int = 20) -> None:
    """Record the first evidence (and a capped count) of each known pattern in `chunk`.

    Each pattern's literal hints are located with bytes.find; only the lines around them meet the regex,
    so a multi-megabyte log costs a few C-speed scans instead of a regex pass per pattern.
    """
    for pat, rx, hints in patterns():
        for hint in hints:
            pos, seen = 0, 0
            while seen < per_hint:
                hit = chunk.find(hint, pos)
                if hit < 0:
                    break
                start, end = _line_at(chunk, hit)
                line = chunk[start:end]
                pos = end + 1
                if rx.search(line):
                    seen += 1
                    entry = found.setdefault(pat.id, {"count": 0})
                    entry["count"] += 1
                    entry.setdefault("evidence", line.decode(errors="replace").strip()[:300])


def _complete(data: bytes, final: bool) -> int:
    """Length of the prefix that ends on a record boundary (\\n or \\r); everything when final."""
    if final:
        return len(data)
    return max(data.rfind(b"\n"), data.rfind(b"\r")) + 1


def scan_log(path: Path, cursor: dict[str, Any], findings: dict[str, Any], progress: dict[str, Any],
             final: bool = False) -> None:
    """Scan bytes appended to the job log since cursor['log_offset'] and fold them into findings/progress."""
    offset = int(cursor.get("log_offset", 0))
    try:
        size = path.stat().st_size
    except OSError:
        return
    if size - offset > MAX_SCAN:
        findings["skipped_bytes"] = findings.get("skipped_bytes", 0) + (size - MAX_SCAN - offset)
        offset = size - MAX_SCAN
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read(size - offset)
    usable = _complete(data, final)
    chunk = data[:usable]
    cursor["log_offset"] = offset + usable
    if not chunk:
        return
    footers = FOOTER.findall(chunk)
    if footers:
        findings["footer"] = footers[-1].decode()
    for name, needles in MARKERS.items():
        if any(n in chunk for n in needles):
            findings[name] = True
    tb = chunk.rfind(b"Traceback (most recent call last)")
    errors = ERROR_LINE.findall(chunk[tb:] if tb >= 0 else chunk[-262144:])
    if errors:
        findings["last_error_line"] = errors[-1].decode(errors="replace").strip()[:300]
    match_errors(chunk, findings.setdefault("matches", {}))
    tail = chunk[-65536:]
    epochs = EPOCH_TRAIN.findall(tail)
    if epochs:
        last_epoch = epochs[-1]
        progress.update(epoch=int(last_epoch[0]), epoch_iteration=int(last_epoch[1]),
                        iters_per_epoch=int(last_epoch[2]))
    metrics = findings.setdefault("log_metrics", {})
    for m in METRIC.finditer(chunk):
        key = "_".join(x.decode() for x in (m[2], b"AP" + m[3], m[4]) + ((m[5],) if m[5] else ()))
        try:
            metrics[f"{m[1].decode()}_{key}"] = float(m[6])
        except ValueError:
            continue


STATUS_RARE = (b'"mode": "val"', b'"FAILURE"', b'"STARTED"', b"finished successfully")


def _rare_lines(data: bytes) -> list[bytes]:
    """The few status.json lines that matter besides the newest train line, in file order."""
    spans: set[tuple[int, int]] = set()
    for marker in STATUS_RARE:
        pos = 0
        while (hit := data.find(marker, pos)) >= 0:
            start = data.rfind(b"\n", 0, hit) + 1
            end = data.find(b"\n", hit)
            end = len(data) if end < 0 else end
            spans.add((start, end))
            pos = end + 1
    return [data[a:b] for a, b in sorted(spans)]


def scan_status(path: Path, cursor: dict[str, Any], findings: dict[str, Any], progress: dict[str, Any],
                metrics: dict[str, Any]) -> None:
    """Fold status.json records appended since cursor['status_offset'] (partial last line left for later).

    Train iteration lines are the bulk; only the newest one is parsed. Validation, failure, start and
    finished lines are located with bytes.find and parsed in order.
    """
    offset = int(cursor.get("status_offset", 0))
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return
    usable = data.rfind(b"\n") + 1
    data = data[:usable]
    cursor["status_offset"] = offset + usable
    st = findings.setdefault("status", {"records": 0, "failures": [], "started": False, "finished": None})
    st["records"] += data.count(b"\n")
    for line in _rare_lines(data):
        try:
            rec = json.loads(line)
        except ValueError:
            st["unparsed"] = st.get("unparsed", 0) + 1
            continue
        if rec.get("status") == "FAILURE":
            match_errors(str(rec.get("message", "")).encode(), findings.setdefault("matches", {}))
        _fold_record(rec, st, metrics)
    last_train = data.rfind(b'"mode": "train"')
    if last_train >= 0:
        start = data.rfind(b"\n", 0, last_train) + 1
        try:
            rec = json.loads(data[start:data.find(b"\n", last_train)])
        except ValueError:
            return
        st["started"] = True
        progress.update({k: rec.get(k) for k in ("cur_iter", "loss", "lr", "eta", "time_per_iter") if k in rec})


def _fold_record(rec: dict[str, Any], st: dict[str, Any], metrics: dict[str, Any]) -> None:
    status, message = rec.get("status"), rec.get("message")
    if status == "STARTED":
        st["started"] = True
    elif status == "FAILURE":
        st["failures"] = (st["failures"] + [str(message)[:300]])[-5:]
        if message and str(message).endswith("was interrupted"):
            st["interrupted"] = True
    elif status in ("SUCCESS", "RUNNING") and message and "finished successfully" in str(message):
        st["finished"] = message
    if rec.get("mode") == "val":
        epoch, ap11, ap40 = rec.get("epoch"), rec.get("AP11"), rec.get("AP40")
        history = metrics.setdefault("history", [])
        history.append({"epoch": epoch, "AP11": ap11, "AP40": ap40})
        del history[:-100]
        metrics.update(AP11=ap11, AP40=ap40, epoch=epoch)
        best = metrics.get("best_AP11")
        if isinstance(ap11, (int, float)) and ap11 == ap11 and (best is None or ap11 >= best):
            metrics.update(best_AP11=ap11, best_epoch=epoch)


def status_path(action: str, results_dir: Path, data_root: Path) -> Path:
    return data_root / "status.json" if action == "dataset_convert" else results_dir / action / "status.json"


def check_artifacts(action: str, results_dir: Path, data_root: Path, launched_at: float, num_epochs: int | None,
                    findings: dict[str, Any], convert_mode: str = "training") -> tuple[list[str], list[str]]:
    """(present, missing) evidence of completion per action (contract §5.3)."""
    present: list[str] = []
    missing: list[str] = []

    def need(path: Path, fresh: bool = False) -> None:
        ok = path.exists() and (not fresh or path.stat().st_mtime >= launched_at - 1)
        (present if ok else missing).append(str(path))

    if action == "dataset_convert":
        splits = {"training": ["train", "val", "trainval"], "validation": ["val"], "testing": ["test"]}[convert_mode]
        for split in splits:
            need(data_root / f"kitti_person_infos_{split}.pkl", fresh=True)
        reduced = data_root / ("testing" if convert_mode == "testing" else "training") / "velodyne_reduced"
        (present if reduced.is_dir() and any(reduced.iterdir()) else missing).append(str(reduced))
    elif action == "train":
        work = results_dir / "train"
        epochs = sorted(work.glob("epoch_*.pth"), key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
        present += [str(p) for p in epochs]
        if num_epochs:
            final = work / f"epoch_{num_epochs}.pth"
            if not final.exists():
                missing.append(str(final))
        pointer = work / "last_checkpoint"
        if pointer.exists():
            named = Path(pointer.read_text().strip()).name
            if num_epochs and named != f"epoch_{num_epochs}.pth":
                missing.append(f"{pointer} names {named}, expected epoch_{num_epochs}.pth")
            else:
                present.append(str(pointer))
        else:
            missing.append(str(pointer))
    elif action == "evaluate":
        if any(k.endswith("3D_AP11_moderate_strict") for k in findings.get("log_metrics", {})):
            present.append("evaluation metrics in the log (3D_AP11_moderate_strict)")
        else:
            missing.append("evaluation metrics in the log (…_3D_AP11_moderate_strict)")
    elif action == "inference":
        preds = results_dir / "inference" / "preds"
        files = sorted(preds.glob("*.json")) if preds.is_dir() else []
        if files:
            present.append(f"{preds} ({len(files)} prediction files)")
        else:
            missing.append(str(preds))
    return present, missing


def decide(exit_code: int | None, oom_killed: bool, cancel_requested: bool, container_missing: bool,
           findings: dict[str, Any], present: list[str], missing: list[str]) -> Verdict:
    """The verdict table of contract §6, in order of precedence."""
    st = findings.get("status", {})
    footer = findings.get("footer")

    def verdict(outcome: Outcome, reason: str) -> Verdict:
        return Verdict(outcome=outcome, reason=reason, usable_artifacts=present, missing_artifacts=missing,
                       exit_code=exit_code, footer=footer)

    failures = st.get("failures", [])
    finished = st.get("finished")
    crashed = bool(findings.get("sigsegv") or findings.get("sigkill"))
    if container_missing and exit_code is None:
        if cancel_requested:
            return verdict("canceled", "canceled; the process is gone")
        return verdict("lost", "the container/process is gone and left no exit code; outcome "
                       "unknown (check the results folder)")
    if exit_code in (125, 126, 127) and not st.get("records"):
        return verdict("failed", f"the container could not start (exit {exit_code})")
    killed = exit_code == 137 or (exit_code is not None and exit_code > 128 and not finished)
    if killed or (oom_killed and not finished):
        if cancel_requested:
            return verdict("canceled", f"canceled on request (exit {exit_code})")
        if oom_killed:
            return verdict("killed", "killed by the out-of-memory killer (OOMKilled): lower "
                           "batch_size/num_workers or raise the memory limit")
        return verdict("killed", f"killed by a signal from outside (exit {exit_code})")
    if exit_code == 1 and not st.get("records"):
        return verdict("failed", "the launcher refused to start (spec path or -e missing)")
    if st.get("interrupted"):
        if cancel_requested:
            return verdict("canceled", "canceled on request")
        return verdict("failed", "the action was interrupted (the PASS footer is misleading)")
    if failures:
        return verdict("failed", f"FAILURE in status.json: {failures[-1]}")
    if finished:
        if missing:
            return verdict("failed", "the action says it finished but expected artifacts are "
                           f"missing: {', '.join(missing[:3])}")
        if footer == "FAIL" and findings.get("sigsegv"):
            return verdict("succeeded_with_teardown_crash", "artifacts complete, then the process "
                           "crashed at teardown (SIGSEGV, cuMemRetainAllocationHandle): results usable, process "
                           "FAIL")
        if footer == "FAIL":
            return verdict("failed", "finished line present but the launcher reported FAIL")
        return verdict("succeeded", f"{finished} (status.json) with the expected artifacts")
    if crashed:
        kind = "SIGKILL (often the OOM killer)" if findings.get("sigkill") else "SIGSEGV"
        return verdict("failed", f"a worker crashed ({kind}) before the action finished")
    if not st.get("records"):
        err = findings.get("last_error_line") or "no status.json records"
        return verdict("failed", f"failed before the action started: {err}")
    return verdict("failed", "the process ended without a finished line (it died without a "
                   f"Python exception); exit {exit_code}, footer {footer}")


def error_matches(findings: dict[str, Any], action: str | None = None, limit: int = 6) -> list[ErrorMatch]:
    """Matched knowledge-base entries for `action`, errors first, each with its evidence line."""
    by_id = {p.id: p for p, _, _ in patterns() if action is None or p.actions is None or action in p.actions}
    found = findings.get("matches", {})
    order = {"error": 0, "warning": 1, "harmless": 2}
    out = [ErrorMatch(pattern=pid, severity=by_id[pid].severity, evidence=entry.get("evidence", ""),
                      cause=by_id[pid].cause, remedy=by_id[pid].remedy, next_call=by_id[pid].next_call)
           for pid, entry in found.items() if pid in by_id]
    out.sort(key=lambda e: order[e.severity])
    return out[:limit]

"""A study's webhook events (jobs/notify.py): a new best trial, half the budget done, the end (a stop after
consecutive failures named as such). Remembered in <study folder>/milestones.json, so a restarted driver
does not repeat them."""

import json
from pathlib import Path
from typing import Any

from tao_bevfusion.core.fsio import atomic_write
from tao_bevfusion.core.layout import StudyFiles
from tao_bevfusion.jobs import notify

FILE = StudyFiles.MILESTONES


def _load(folder: Path) -> dict[str, Any]:
    try:
        data = json.loads((folder / FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def after_snapshot(study_id: str, folder: Path, snapshot: dict[str, Any], total: int) -> None:
    """Called by the driver after each trials.json: post what is new since the last call."""
    seen = _load(folder)
    best = snapshot.get("best") or {}
    done = sum(
        1 for t in snapshot.get("trials", []) if t.get("state") in ("complete", "pruned", "fail")
    )
    events = []
    if best and best.get("trial") != seen.get("best"):
        events.append(
            {
                "event": "study.new_best",
                "trial": best.get("trial"),
                "trial_job_id": best.get("job_id"),
                "best_AP11": best.get("value"),
                "best_epoch": best.get("epoch"),
                "params": best.get("params"),
            }
        )
        seen["best"] = best.get("trial")
    if total and done * 2 >= total and not seen.get("half"):
        events.append({"event": "study.half_done", "trials_done": done, "trials_total": total})
        seen["half"] = True
    if not events:
        return
    atomic_write(folder / FILE, json.dumps(seen))
    for event in events:
        notify.post({**event, "job_id": study_id, "kind": "study"})


def ended(study_id: str, state: str, reason: str, stopped: str | None) -> None:
    kind = "study.stopped.failures" if stopped else "study.ended"
    notify.post(
        {
            "event": kind,
            "job_id": study_id,
            "kind": "study",
            "state": state,
            "reason": notify.clean(reason, []),
        }
    )

"""Dry runs you can submit: run_action(dry_run=true) saves its plan under a plan_id and records no job;
run_action(plan_id=...) submits exactly that plan, once.

A plan is refused when its spec file changed since (sha256), when it is older than PLAN_TTL, or when it was
already submitted (the same job is returned). Saved plans are private files under <state dir>/plans/.
"""

import json
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tao_bevfusion.backends.base import LaunchRequest
from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.fsio import atomic_write
from tao_bevfusion.core.settings import Settings

PLAN_TTL = 24 * 3600
PLAN_ID = r"^p[0-9a-f]{16}$"


class SavedPlan(BaseModel):
    plan_id: str
    created_at: float
    inputs: dict[str, Any] = Field(
        description="run_action's inputs (no secrets) that produced the plan."
    )
    spec_path: str
    spec_sha256: str
    built_spec: bool = Field(
        description="The dry run wrote the spec itself (removed with an unused plan)."
    )
    request: LaunchRequest
    plan: dict[str, Any] = Field(description="The backend's plan, exactly as shown.")
    submitted_job_id: str | None = None


def new_plan_id() -> str:
    return "p" + secrets.token_hex(8)


def save(settings: Settings, saved: SavedPlan) -> None:
    folder = layout.private_dirs(settings.home / layout.PLANS_DIR)
    _sweep(settings, folder)
    atomic_write(layout.plan_record(settings.home, saved.plan_id), saved.model_dump_json())


def _not_found(plan_id: str, why: str) -> InputError:
    return InputError(
        problem(
            "plan_id",
            f"plan {plan_id} {why}",
            "make a new dry run: run_action(..., dry_run=true), then submit its plan_id",
        )
    )


def load(settings: Settings, plan_id: str) -> SavedPlan:
    """The saved plan, checked: not expired, spec unchanged."""
    import re

    if not re.match(PLAN_ID, plan_id):
        raise InputError(problem("plan_id", "not a plan id", "pass the plan_id a dry run returned"))
    path = layout.plan_record(settings.home, plan_id)
    try:
        saved = SavedPlan.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise _not_found(plan_id, "does not exist (never made, or expired and removed)") from None
    except (OSError, ValueError) as exc:
        raise _not_found(plan_id, f"cannot be read ({exc.__class__.__name__})") from exc
    if saved.submitted_job_id:
        return saved
    if time.time() - saved.created_at > PLAN_TTL:
        raise _not_found(
            plan_id, f"is older than {PLAN_TTL // 3600} h (what it checked may have changed)"
        )
    if _sha256(Path(saved.spec_path)) != saved.spec_sha256:
        raise InputError(
            problem(
                "plan_id",
                f"the spec {saved.spec_path} changed since plan {plan_id} was made",
                "make a new dry run of the spec as it is now, and submit that plan_id",
            )
        )
    return saved


def mark_submitted(settings: Settings, saved: SavedPlan, job_id: str) -> None:
    done = saved.model_copy(update={"submitted_job_id": job_id})
    atomic_write(layout.plan_record(settings.home, saved.plan_id), done.model_dump_json())


def _sha256(path: Path) -> str | None:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _sweep(settings: Settings, folder: Path) -> None:
    """Expired, unsubmitted plans go, with the spec folder their dry run wrote (nothing else used it)."""
    now = time.time()
    for path in folder.glob("p*.json"):
        try:
            saved = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if now - float(saved.get("created_at", now)) <= PLAN_TTL:
            continue
        spec_dir = Path(saved.get("spec_path", "")).parent
        specs = settings.home / layout.SPECS_DIR
        if (
            saved.get("built_spec")
            and not saved.get("submitted_job_id")
            and spec_dir.parent == specs
        ):
            shutil.rmtree(spec_dir, ignore_errors=True)
        path.unlink(missing_ok=True)

"""The launch record build_spec writes beside a spec: which mounts, results folder and backend the spec
was built for, and the spec's hash.

It is an internal record, so it is authenticated: an HMAC over its content with a key private to the state
dir. A sidecar written or edited by anyone else (say, to mount /etc into a job) is refused, never trusted.
"""

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.layout import launch_sidecar
from tao_bevfusion.core.paths import Mount

KEY_FILE = layout.SIDECAR_KEY


LATER_FIELDS = ("overrides", "lineage", "warnings")


class LaunchSidecar(BaseModel):
    action: str
    backend: str
    data_root: str
    results_dir: str
    mounts: list[Mount]
    spec_sha256: str
    spec_container_path: str | None
    checkpoint_choice: dict[str, Any] | None = None
    num_epochs: int | None = None
    parent_job_id: str | None = None
    # Added later; left out of the signed body while unset, so records written before still verify.
    overrides: list[dict[str, Any]] | None = None
    lineage: str | None = None
    warnings: list[str] | None = None
    signature: str = Field(
        default="", description="HMAC-SHA256 of the other fields (state-dir key)."
    )


def _key(home: Path) -> bytes:
    path = home / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()  # another process made it first
    with os.fdopen(fd, "wb") as fh:
        fh.write(secrets.token_bytes(32))
    return path.read_bytes()


def _mac(record: LaunchSidecar, home: Path) -> str:
    unset = {k for k in LATER_FIELDS if getattr(record, k) is None}
    body = json.dumps(
        record.model_dump(mode="json", exclude={"signature", *unset}), sort_keys=True
    ).encode()
    return hmac.new(_key(home), body, hashlib.sha256).hexdigest()


def sign(record: LaunchSidecar, home: Path) -> LaunchSidecar:
    return record.model_copy(update={"signature": _mac(record, home)})


def read_sidecar(spec_path: Path, home: Path) -> LaunchSidecar:
    """The verified launch record of `spec_path`, or an InputError saying how to get a valid one."""
    side = launch_sidecar(spec_path)
    rebuild = f"rebuild the spec: build_spec with base_spec={json.dumps(str(spec_path))} and your other arguments"
    if not side.is_file() or side.stat().st_size > 1_000_000:
        raise InputError(
            problem(
                "spec_path",
                f"{spec_path} has no launch record ({side.name})",
                "write specs with build_spec (it records the mounts the launch needs)",
            )
        )
    try:
        record = LaunchSidecar.model_validate_json(side.read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(
            problem("spec_path", f"the launch record {side.name} is unreadable", rebuild)
        ) from exc
    if not hmac.compare_digest(record.signature, _mac(record, home)):
        raise InputError(
            problem(
                "spec_path",
                f"the launch record {side.name} was not written by build_spec in "
                "this state dir (or was edited)",
                rebuild,
                code="SIDECAR_UNTRUSTED",
            )
        )
    try:
        digest = hashlib.sha256(spec_path.read_bytes()).hexdigest()
    except OSError as exc:
        raise InputError(
            problem("spec_path", f"cannot read {spec_path}", "give an existing spec")
        ) from exc
    if digest != record.spec_sha256:
        raise InputError(
            problem("spec_path", "the spec changed after build_spec validated it", rebuild)
        )
    return record

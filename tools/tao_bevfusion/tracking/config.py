"""Where a job is tracked: the `tracking` argument of run_action, else TAO_BEVFUSION_MLFLOW_URI.

Resolved once, at launch, and kept in the job's private folder (`jobs/<id>/mlflow/config.json`), so every
process that later polls the job (the MCP server, the CLI, a study's driver) exports to the same place
whatever its own environment. Bad settings never stop a launch: they come back as warnings naming the
setting, and the job runs untracked. Credentials never enter a URI we keep or show: MLflow reads them from
its own variables (MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN) in the process that sends.
"""

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from tao_bevfusion.core.layout import JobFiles, private_dirs
from tao_bevfusion.core.settings import Settings

URI_ENV = "TAO_BEVFUSION_MLFLOW_URI"
EXPERIMENT_ENV = "TAO_BEVFUSION_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "tao-bevfusion"
KEYS = ("mlflow", "experiment", "register_best", "model_name")
REMOTE = ("http", "https")
LOCAL = ("file", "sqlite", "postgresql", "mysql", "mssql", "databricks")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TrackingConfig(BaseModel):
    uri: str = Field(description="The MLflow tracking URI (never with credentials).")
    experiment: str = DEFAULT_EXPERIMENT
    register_best: bool = False
    model_name: str | None = None
    setting: str = Field(
        default="tracking.mlflow", description="Where the URI came from (named in warnings)."
    )
    parent_job_id: str | None = Field(
        default=None, description="The study whose run this one nests under."
    )


def export_dir(home: Path, job_id: str) -> Path:
    return JobFiles(home, job_id).dir / "mlflow"


def load(home: Path, job_id: str) -> TrackingConfig | None:
    try:
        return TrackingConfig.model_validate_json(
            (export_dir(home, job_id) / "config.json").read_bytes()
        )
    except (OSError, ValueError):
        return None


def save(home: Path, job_id: str, cfg: TrackingConfig) -> None:
    folder = export_dir(home, job_id)
    private_dirs(folder)
    tmp = folder / "config.json.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(cfg.model_dump_json())
    os.replace(tmp, folder / "config.json")


def _uri_problem(uri: str) -> str | None:
    if not uri or CONTROL.search(uri) or len(uri) > 2048:
        return "empty, too long or holds control characters"
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in REMOTE:
        if not parts.hostname:
            return "has no host"
        if parts.username or parts.password:
            return (
                "carries credentials; they are never kept: set MLFLOW_TRACKING_USERNAME/"
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) for the server instead"
            )
        try:
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            return "has a malformed port"
        return None
    if scheme in LOCAL or (scheme.split("+")[0] in LOCAL):
        return None
    return f"scheme {scheme or '(none)'!r} is not an MLflow tracking URI"


def _experiment_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "must be a non-empty string"
    if len(name) > 500 or CONTROL.search(name):
        return "must be at most 500 characters without control characters"
    return None


def resolve(
    tracking: dict[str, Any] | None, settings: Settings
) -> tuple[TrackingConfig | None, list[str]]:
    """The job's tracking config (None = untracked) and warnings naming each bad setting."""
    env_uri = settings.mlflow_uri
    if tracking is None and not env_uri:
        return None, []
    if tracking is not None and not tracking:
        return None, []  # {} = explicitly off
    given = dict(tracking or {})
    warnings = [
        f"tracking.{k}: unknown setting, ignored (known: {', '.join(KEYS)})"
        for k in given
        if k not in KEYS
    ]
    setting = "tracking.mlflow" if given.get("mlflow") else URI_ENV
    uri = str(given.get("mlflow") or env_uri).strip()
    if not uri:
        return None, [
            *warnings,
            f"tracking.mlflow: no tracking URI given (nor {URI_ENV}); the job runs untracked",
        ]
    bad = _uri_problem(uri)
    if bad:
        return None, [
            *warnings,
            f"{setting}: the MLflow URI {redacted_uri(uri)} {bad}; the job runs untracked "
            "(fix: e.g. http://mlflow.example:5000)",
        ]
    exp_setting = "tracking.experiment" if "experiment" in given else EXPERIMENT_ENV
    experiment = given.get("experiment", settings.mlflow_experiment or DEFAULT_EXPERIMENT)
    bad = _experiment_problem(experiment)
    if bad:
        return None, [
            *warnings,
            f"{exp_setting}: the MLflow experiment name {bad}; the job runs untracked",
        ]
    model = given.get("model_name")
    cfg = TrackingConfig(
        uri=uri.rstrip("/"),
        experiment=str(experiment).strip(),
        setting=setting,
        register_best=bool(given.get("register_best", False)),
        model_name=str(model)[:200] if model else None,
    )
    return cfg, warnings


def redacted_uri(uri: str) -> str:
    """The URI with any user:password@ removed (for messages)."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if _port(parts) else "")
        return json.dumps(parts._replace(netloc=netloc).geturl())[1:-1][:200]
    return json.dumps(uri)[1:-1][:200]


def _port(parts: Any) -> int | None:
    try:
        return int(parts.port) if parts.port else None
    except ValueError:
        return None


def run_url(uri: str, experiment_id: str | None, run_id: str | None) -> str | None:
    if not (experiment_id and run_id) or urlsplit(uri).scheme.lower() not in REMOTE:
        return None
    return f"{uri}/#/experiments/{experiment_id}/runs/{run_id}"

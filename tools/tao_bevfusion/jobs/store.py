"""Job records in SQLite (WAL) under the state dir, shared by every server and CLI process.

States: pending -> running -> succeeded | failed | canceled | unknown. Terminal states never change:
every state write is guarded in SQL, so two processes racing to finish a job cannot overwrite each other.
The schema evolves only through the named MIGRATIONS below, each applied once and recorded, so a
database written by an older release opens with everything in it.
"""

import json
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tao_bevfusion.core.errors import EngineError, InputError, problem
from tao_bevfusion.core.layout import JOBS_DB, JobFiles, secure_state_dir
from tao_bevfusion.core.states import ACTIVE_STATES, TERMINAL_STATES, JobState
from tao_bevfusion.evidence.models import Cursor, Findings, RunMetrics, RunProgress, Tolerant

JobKind = Literal["run", "study"]
TERMINAL = tuple(sorted(TERMINAL_STATES))
JOB_ID = re.compile(r"^j[0-9a-f]{16}\Z")
JSON_FIELDS = ("plan", "verdict", "progress", "metrics", "errors", "cursor", "findings", "meta")

MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_jobs",
        """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, action TEXT NOT NULL, backend TEXT NOT NULL, state TEXT NOT NULL,
    spec_path TEXT NOT NULL, spec_sha256 TEXT NOT NULL, results_dir TEXT NOT NULL, data_root TEXT NOT NULL,
    parent_job_id TEXT, handle TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0,
    plan TEXT, verdict TEXT, progress TEXT, metrics TEXT, errors TEXT, cursor TEXT, findings TEXT, meta TEXT,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
CREATE INDEX IF NOT EXISTS jobs_results ON jobs(results_dir);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_active_per_results
    ON jobs(results_dir) WHERE state IN ('pending', 'running');
""",
    ),
    (
        "0002_job_kind_and_owner",
        """
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'run';
ALTER TABLE jobs ADD COLUMN owner_id TEXT;
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner_id);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
""",
    ),
]


class JobMeta(Tolerant):
    num_epochs: int | None = None
    checkpoint_choice: dict[str, Any] | None = None
    convert_mode: str = "training"
    image: str | None = None
    has_secret: bool = False
    pruned: bool = False  # an AutoML trial its study stopped early: it ends as outcome pruned
    hyper: dict[str, Any] | None = (
        None  # key hyperparameters of the spec launched (list_jobs, comparisons)
    )
    overrides: list[dict[str, Any]] | None = None
    lineage: str | None = None
    warnings: list[str] | None = None
    secrets: list[str] = Field(
        default_factory=list, description="Values to redact (recorded at launch)."
    )
    submitter: str | None = Field(
        default=None, description="host:pid:start of the process that submits it."
    )
    safety: dict[str, Any] | None = (
        None  # core/safety.RunSafety: limits, divergence, retries, retention
    )
    request: dict[str, Any] | None = (
        None  # the LaunchRequest, so an infrastructure retry can launch it again
    )
    attempts: list[dict[str, Any]] = Field(
        default_factory=list, description="Earlier attempts and their causes."
    )
    stop_reason: str | None = None  # diverged | limit_reached: why the plugin stopped the run
    stopped_at: float | None = None
    freed_bytes: int | None = None  # checkpoint retention
    waiting: str | None = (
        None  # why a pending job waits (Slurm reason, Kueue admission, pod events)
    )


class Job(BaseModel):
    id: str
    kind: JobKind = "run"
    owner_id: str | None = Field(
        default=None, description="The job this one belongs to (a study's trials)."
    )
    action: str
    backend: str
    state: JobState
    spec_path: str
    spec_sha256: str
    results_dir: str
    data_root: str
    parent_job_id: str | None = Field(
        default=None, description="The train job whose checkpoint it used."
    )
    handle: str | None = None
    cancel_requested: bool = False
    plan: dict[str, Any] = Field(default_factory=dict)
    verdict: dict[str, Any] = Field(default_factory=dict)
    progress: RunProgress = Field(default_factory=RunProgress)
    metrics: RunMetrics = Field(default_factory=RunMetrics)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    cursor: Cursor = Field(default_factory=Cursor)
    findings: Findings = Field(default_factory=Findings)
    meta: JobMeta = Field(default_factory=JobMeta)
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float

    @property
    def terminal(self) -> bool:
        return JobState(self.state).is_terminal

    def files(self, home: Path) -> JobFiles:
        return JobFiles(home, self.id)


def new_job_id() -> str:
    return "j" + secrets.token_hex(8)


def check_job_id(job_id: str, field: str = "job_id") -> str:
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise InputError(
            problem(
                field,
                "not a job id (they look like j0123456789abcdef)",
                "call list_jobs to see the ids",
                value=str(job_id)[:40],
            )
        )
    return job_id


def _encode(value: Any) -> Any:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, allow_nan=True)


class JobStore:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / JOBS_DB
        try:
            secure_state_dir(home)
            with self._conn() as conn:
                self._migrate(conn)
            os.chmod(self.path, 0o600)  # the WAL and shm files sqlite makes take this mode
        except OSError as exc:
            raise self._trouble(exc) from exc

    def _trouble(self, exc: Exception) -> EngineError:
        """An actionable error for store trouble; nothing recorded is touched."""
        text = str(exc)
        low = text.lower()
        if "readonly" in low or "read-only" in low:
            fix = f"the state dir {self.home} is read-only: make it writable or set TAO_BEVFUSION_HOME elsewhere"
        elif "full" in low or "no space" in low or "disk i/o" in low:
            fix = (
                f"the disk holding {self.home} is full (or failing): free space and repeat the call"
            )
        elif "malformed" in low or "not a database" in low or "no such table" in low:
            fix = (
                f"jobs.db is damaged: move it aside (mv {self.path} {self.path}.damaged) and restore a backup "
                "if you have one; the job folders under jobs/ and results dirs are untouched"
            )
        else:
            fix = "check that TAO_BEVFUSION_HOME is a writable folder with free space, then repeat the call"
        return EngineError(
            problem(
                str(self.path), f"the job store failed: {text[:200]}", fix, code="STORE_UNAVAILABLE"
            )
        )

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at REAL)"
        )
        conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then find it done
        try:
            done = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
            for name, script in MIGRATIONS:
                if name in done:
                    continue
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def applied_migrations(self) -> list[str]:
        with self._conn() as conn:
            return [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]

    def _check_not_emptied(self) -> None:
        """An empty jobs.db beside job folders was truncated: sqlite would read it as a new, empty store (every
        recorded job gone without a word) and write a fresh schema over it. Refuse, and touch nothing."""
        try:
            if self.path.stat().st_size > 0:
                return
            folders = sum(1 for p in (self.home / "jobs").iterdir() if JOB_ID.match(p.name))
        except OSError:
            return
        if folders:
            raise EngineError(
                problem(
                    str(self.path),
                    f"jobs.db is empty (0 bytes) but {folders} job folders exist under "
                    f"{self.home / 'jobs'}: the store was truncated, so the recorded jobs cannot be read",
                    f"move it aside for recovery (mv {self.path} {self.path}.truncated) and restore a backup of "
                    "jobs.db if you have one; the job folders and results dirs are untouched",
                    code="STORE_TRUNCATED",
                )
            )

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        """A connection; any sqlite trouble but a constraint violation becomes an actionable EngineError."""
        self._check_not_emptied()
        try:
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._trouble(exc) from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.row_factory = sqlite3.Row
            yield conn
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise self._trouble(exc) from exc
        finally:
            conn.close()

    @staticmethod
    def _to_job(row: sqlite3.Row) -> Job:
        data = dict(row)
        for key in JSON_FIELDS:
            raw = data[key]
            data[key] = json.loads(raw) if raw else ([] if key == "errors" else {})
        data["cancel_requested"] = bool(data["cancel_requested"])
        return Job.model_validate(data)

    def create(self, job_id: str | None = None, **fields: Any) -> Job:
        now = time.time()
        job = Job(
            id=check_job_id(job_id) if job_id else new_job_id(),
            state=JobState.PENDING,
            created_at=now,
            updated_at=now,
            **fields,
        )
        row = job.model_dump(mode="json")
        for key in JSON_FIELDS:
            row[key] = _encode(row[key])
        cols = ", ".join(row)
        try:
            with self._conn() as conn:
                conn.execute(
                    f"INSERT INTO jobs ({cols}) VALUES ({', '.join('?' for _ in row)})",
                    list(row.values()),
                )
        except sqlite3.IntegrityError as exc:
            raise InputError(
                problem(
                    "results_dir",
                    f"{job.results_dir} is in use by another pending or running job",
                    "wait for it, cancel it, or use a fresh results_dir",
                    code="RESULTS_DIR_BUSY",
                )
            ) from exc
        return job

    def get(self, job_id: str) -> Job:
        check_job_id(job_id)
        with self._conn() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise InputError(
                problem(
                    "job_id",
                    f"no job {job_id} in {self.path}",
                    "call list_jobs; jobs live in TAO_BEVFUSION_HOME",
                    code="JOB_NOT_FOUND",
                )
            )
        return self._to_job(row)

    def update(self, job_id: str, **fields: Any) -> bool:
        """Write fields. A state change (or any write) to a terminal job is refused: returns False."""
        if not fields:
            return True
        row = dict(fields)
        for key in JSON_FIELDS:
            if key in row:
                row[key] = _encode(row[key])
        if "cancel_requested" in row:
            row["cancel_requested"] = int(bool(row["cancel_requested"]))
        row["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in row)
        placeholders = ", ".join("?" for _ in TERMINAL)
        with self._conn() as conn:
            cur = conn.execute(
                f"UPDATE jobs SET {sets} WHERE id = ? AND state NOT IN ({placeholders})",
                [*row.values(), job_id, *TERMINAL],
            )
        return cur.rowcount == 1

    def set_meta(self, job_id: str, meta: JobMeta) -> None:
        """Bookkeeping on a job in any state (e.g. bytes freed after it ended); its state is never touched."""
        with self._conn() as conn:
            conn.execute(
                "UPDATE jobs SET meta = ?, updated_at = ? WHERE id = ?",
                (_encode(meta), time.time(), job_id),
            )

    def query(
        self,
        state: str | None = None,
        action: str | None = None,
        limit: int = 20,
        kind: str | None = None,
        owner_id: str | None = None,
    ) -> list[Job]:
        clauses, args = [], []
        for column, value in (
            ("state", state),
            ("action", action),
            ("kind", kind),
            ("owner_id", owner_id),
        ):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        where = " AND ".join(clauses) or "1=1"
        args.append(str(max(1, min(limit, 1000))))
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT * FROM jobs WHERE {where} ORDER BY created_at DESC LIMIT ?", args
            ).fetchall()
        return [self._to_job(r) for r in rows]

    def discard_unstarted(self, job_id: str) -> bool:
        """Drop a record whose launch the engine refused (nothing ran, no id was ever returned)."""
        with self._conn() as conn:
            cur = conn.execute(
                "DELETE FROM jobs WHERE id = ? AND handle IS NULL AND started_at IS NULL", (job_id,)
            )
        return cur.rowcount == 1

    def active_for_results(self, results_dir: str) -> list[Job]:
        with self._conn() as conn:
            active = ", ".join("?" for _ in ACTIVE_STATES)
            rows = conn.execute(
                f"SELECT * FROM jobs WHERE results_dir = ? AND state IN ({active})",
                (results_dir, *sorted(ACTIVE_STATES)),
            ).fetchall()
        return [self._to_job(r) for r in rows]

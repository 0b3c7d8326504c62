"""The sending side: drain each tracked job's outbox to MLflow, off the caller's thread.

A poll only appends to the outbox and kicks `Sender` - one daemon thread per process - which delivers ops
in order under the job's send lock, with MLflow's own client (imported here, on first use). Every request has
a short timeout and no client-side retries; a failure backs the job off (1 s doubling to 60 s) and is kept
as the job's warning; an op the tracker refuses three times is dropped with a warning (a refused start
stops that job's export: the setting it names must be fixed). At process exit the queue gets a few seconds.
"""

import atexit
import os
import threading
import time
from pathlib import Path
from typing import Any

from tao_bevfusion.core.settings import Settings
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.tracking import config as C
from tao_bevfusion.tracking.ops import Deferred, Refused, apply
from tao_bevfusion.tracking.outbox import Outbox, SendState

MAX_BACKOFF = 60.0
MAX_REFUSALS = 3
MAX_FAILURES = 2000  # about 33 h of a tracker that stays down at the capped back-off
EXIT_FLUSH_SECONDS = 3.0
REQUEST_TIMEOUT = "5"
_clients: dict[str, Any] = {}


def client_for(uri: str) -> Any:
    if uri not in _clients:
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", REQUEST_TIMEOUT)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = (
            "true"  # stdout is the MCP stdio channel
        )
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as exc:
            raise Refused(
                "tracking",
                "the MLflow client is not installed here: pip install "
                "'tao-bevfusion[mlflow]' (mlflow-skinny) where the server runs",
            ) from exc
        _clients[uri] = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return _clients[uri]


def _refused(exc: Exception) -> bool:
    """True when the tracker itself answered with an error (4xx-like), False for an outage."""
    code = str(getattr(exc, "error_code", ""))
    status = getattr(exc, "get_http_status_code", lambda: 500)()
    return (
        bool(code)
        and code not in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE")
        and int(status) < 500
    )


def describe(exc: Exception, cfg: C.TrackingConfig) -> str:
    text = str(exc).replace("\n", " ")
    for secret in (
        os.environ.get("MLFLOW_TRACKING_PASSWORD"),
        os.environ.get("MLFLOW_TRACKING_TOKEN"),
    ):
        if secret:
            text = text.replace(secret, "***")
    return f"{exc.__class__.__name__}: {text[:300]}"


def drain(home: Path, job_id: str, ctx: AppContext | None = None) -> bool:
    """Deliver what is queued for one job. True when nothing is left to send (or it never will be)."""
    cfg = C.load(home, job_id)
    if cfg is None:
        return True
    box = Outbox(C.export_dir(home, job_id))
    with box.lock("send") as mine:
        if not mine:
            return False
        state = box.state()
        if state.gave_up:
            return True
        if time.time() < state.next_try:
            return False
        _deliver(box, state, cfg, ctx or AppContext(Settings.from_env()), home, job_id)
        return state.gave_up is not None or state.offset >= box.size()


def _deliver(
    box: Outbox, state: SendState, cfg: C.TrackingConfig, ctx: AppContext, home: Path, job_id: str
) -> None:
    try:
        client = client_for(cfg.uri)
        while batch := box.pending(state.offset):
            for end, op in batch:
                apply(client, op, state, cfg, ctx, home, drain)
                state.offset, state.sent_ops, state.failures = end, state.sent_ops + 1, 0
                box.save_state(state)
        state.last_error = None
    except Deferred:
        state.next_try = time.time() + 2
    except Exception as exc:
        _failed(state, exc, cfg, box)
    box.save_state(state)


def _outage(exc: Exception) -> bool:
    """The tracker could not be reached or failed on its side (as opposed to refusing, or a local bug)."""
    if isinstance(exc, OSError):  # requests' ConnectionError and Timeout are OSErrors too
        return True
    return _from_mlflow(exc) and not _refused(exc)


def _from_mlflow(exc: Exception) -> bool:
    return any(c.__name__ == "MlflowException" for c in type(exc).__mro__)


def _failed(state: SendState, exc: Exception, cfg: C.TrackingConfig, box: Outbox) -> None:
    setting = exc.setting if isinstance(exc, Refused) else cfg.setting
    where = f"MLflow {C.redacted_uri(cfg.uri)}"
    refused = not _outage(exc)
    if refused and not isinstance(exc, Refused) and not _from_mlflow(exc):
        message = f"{setting}: could not prepare a write for {where}: {describe(exc, cfg)}"
    elif refused:
        message = f"{setting}: {where} refused: {describe(exc, cfg)}"
    else:
        message = (
            f"{setting}: {where} unreachable: {describe(exc, cfg)}; writes are queued and retried"
        )
    state.failures += 1
    state.first_error = state.first_error or message
    state.last_error = message
    state.next_try = time.time() + min(MAX_BACKOFF, 2.0 ** min(state.failures - 1, 6))
    if refused and state.failures >= MAX_REFUSALS:
        batch = box.pending(state.offset)
        if batch and batch[0][1].get("op") != "start" and state.run_id:
            state.offset, state.failures = batch[0][0], 0  # this op is dropped; the rest goes on
            state.last_error = f"{message} (that write was dropped)"
        else:
            state.gave_up = message
    elif state.failures >= MAX_FAILURES:
        state.gave_up = f"{message} (gave up after {state.failures} attempts)"


def _backing_off(home: Path, job_id: str) -> bool:
    return Outbox(C.export_dir(home, job_id)).state().next_try > time.time()


class Sender:
    """One background thread per process draining every job it was told about."""

    def __init__(self) -> None:
        self.pending: dict[str, Path] = {}
        self.wake = threading.Event()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def kick(self, home: Path, job_id: str) -> None:
        with self.lock:
            self.pending[job_id] = home
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(
                    target=self._run, name="tao-bevfusion-mlflow", daemon=True
                )
                self.thread.start()
                atexit.register(self.flush, EXIT_FLUSH_SECONDS, None, True)
        self.wake.set()

    def _run(self) -> None:
        while True:
            self.wake.wait(1.0)
            self.wake.clear()
            self._pass()

    def _pass(self) -> None:
        with self.lock:
            todo = list(self.pending.items())
        studies_first = sorted(
            todo, key=lambda item: not (C.export_dir(item[1], item[0]) / "study").exists()
        )
        for job_id, home in studies_first:
            try:
                done = drain(home, job_id)
            except Exception:  # never let the thread die
                done = False
            if done:
                with self.lock:
                    if self.pending.get(job_id) == home:
                        del self.pending[job_id]

    def flush(
        self, seconds: float, only: set[str] | None = None, skip_backoff: bool = False
    ) -> bool:
        """Drain for at most `seconds` (tests, benchmarks, process exit). True when all was sent (of the
        jobs `only` names, when given). With skip_backoff (process exit), a job waiting out a tracker
        outage is left to the next process instead of being waited for."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self._pass()
            with self.lock:
                left = {k: v for k, v in self.pending.items() if only is None or k in only}
            if skip_backoff:
                left = {k: v for k, v in left.items() if not _backing_off(v, k)}
            if not left:
                return True
            time.sleep(0.05)
        return False


SENDER = Sender()

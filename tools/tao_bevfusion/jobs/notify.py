"""The optional webhook (TAO_BEVFUSION_NOTIFY_URL): a JSON POST when a job ends (divergence and limit
stops named as such) and at study milestones, so a person hears of it with no client connected.

Never blocking: each POST runs on a daemon thread (a bounded number of tries with back-off); a process
that exits waits for pending posts at most EXIT_WAIT seconds. Never carrying secrets: ids, states, numbers
and a capped, control-stripped reason with the job's recorded secrets redacted; no spec, env or log. Only
http(s) URLs; a bad URL or a failing receiver is reported once per process (log) and never stops a job.
"""

import atexit
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from tao_bevfusion.jobs.store import Job

URL_ENV = "TAO_BEVFUSION_NOTIFY_URL"
TRIES, TIMEOUT, BACKOFF, EXIT_WAIT = 3, 5.0, 0.5, 10.0
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
log = logging.getLogger("tao_bevfusion.notify")
_reported: set[str] = set()
_pending: list[threading.Thread] = []


def _once(key: str, text: str) -> None:
    if key not in _reported:
        _reported.add(key)
        log.warning(text)


def notify_url() -> str | None:
    """The webhook URL, or None (unset, or not http(s): reported once)."""
    raw = os.environ.get(URL_ENV, "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _once(
            f"bad:{raw}",
            f"{URL_ENV} is not an http(s) URL ({parts.scheme or 'no scheme'}); webhook off",
        )
        return None
    return raw


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}"  # never the userinfo


def _deliver(url: str, body: bytes) -> None:
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "tao-bevfusion"},
    )
    for attempt in range(TRIES):
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
                if reply.status < 300:
                    return
        except (OSError, urllib.error.URLError, ValueError) as exc:
            error = exc.__class__.__name__
        else:
            error = "a non-2xx answer"
        time.sleep(BACKOFF * 2**attempt)
    _once(
        f"fail:{url}", f"webhook {_where(url)} failed {TRIES} times ({error}); jobs are unaffected"
    )


def post(event: dict[str, Any]) -> None:
    """Send `event` in the background (no-op without a valid URL)."""
    url = notify_url()
    if url is None:
        return
    body = json.dumps({**event, "source": "tao-bevfusion", "time": time.time()}).encode()
    thread = threading.Thread(
        target=_deliver, args=(url, body), name="tao-bevfusion-webhook", daemon=True
    )
    _pending.append(thread)
    thread.start()


@atexit.register
def _drain() -> None:
    deadline = time.monotonic() + EXIT_WAIT
    for thread in _pending:
        thread.join(max(0.0, deadline - time.monotonic()))


def clean(text: Any, secrets: list[str], limit: int = 300) -> str:
    out = CONTROL.sub(" ", str(text or ""))
    for value in secrets:
        if value:
            out = out.replace(value, "***")
    return out[:limit]


def stop_kind(outcome: str, reason: str) -> str | None:
    """'divergence' or 'limit' when the run was stopped for one of them, else None."""
    text = f"{outcome} {reason}".lower()
    if re.search(r"diverg|\bnan\b|non-finite|\binf\b", text):
        return "divergence"
    if re.search(r"limit|max_hours|max_gpu_hours|time ?out|deadline", text):
        return "limit"
    return None


def job_ended(job: Job) -> None:
    """A run reached a terminal state (called by the process that recorded the end). Trials are left to
    their study's milestones."""
    if job.owner_id:
        return
    outcome = str(job.verdict.get("outcome", job.state))
    reason = clean(job.verdict.get("reason"), job.meta.secrets)
    stop = stop_kind(outcome, reason)
    post(
        {
            "event": f"job.stopped.{stop}" if stop else "job.ended",
            "job_id": job.id,
            "action": job.action,
            "state": job.state,
            "outcome": outcome,
            "reason": reason,
            "epoch": job.progress.epoch,
            "best_AP11": job.metrics.best_AP11,
            "best_epoch": job.metrics.best_epoch,
        }
    )

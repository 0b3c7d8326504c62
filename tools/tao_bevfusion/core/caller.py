"""Work whose caller went away stops at its next checkpoint (issue 17, item 6).

The MCP layer runs a tool's plain function in a worker thread. When the request ends without waiting for
the answer (the client sent notifications/cancelled, or an HTTP request's stream was closed), the SDK cancels
the handler, but a thread cannot be interrupted: the handler sets the request's `gone` event, and long work
(each frame of a picture, each PNG encode) calls `check_caller()` between steps and stops there.
Outside a request (CLI, Python API, tests) `check_caller()` never stops anything.
"""

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("tao_bevfusion.caller")
_GONE: ContextVar[threading.Event | None] = ContextVar("tao_bevfusion_caller_gone", default=None)


class CallerGone(Exception):
    """The caller went away: the work stopped at a checkpoint, and nobody is waiting for an answer."""


def check_caller() -> None:
    """Raise CallerGone when the request this thread works for was cancelled."""
    gone = _GONE.get()
    if gone is not None and gone.is_set():
        raise CallerGone("the caller went away")


def watched(fn: Callable[[], T], gone: threading.Event) -> T:
    """Run fn (in the worker thread) with `gone` as the request's cancel signal."""
    token = _GONE.set(gone)
    try:
        return fn()
    except CallerGone:
        log.info("stopped %s: the caller went away", getattr(fn, "__name__", "work"))
        raise
    finally:
        _GONE.reset(token)

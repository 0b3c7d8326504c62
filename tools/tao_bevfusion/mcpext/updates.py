"""Pushed status updates: `tao-bevfusion://jobs/{id}/status` (a run's or a study's) can be subscribed to,
with `subscriptions/listen` on 2026-07-28 connections and `resources/subscribe` on 2025-era ones.

One watcher per server polls only what someone subscribed to (nothing at all when nobody did): a run is
refreshed (poll, scan, verdict), a study read from its snapshot. When its state, epoch, best trial or
verdict changes, `notifications/resources/updated` goes out, at most once per resource every GAP seconds
(later changes in the gap are coalesced into one). A client's subscriptions end with its stream or its
session. With TAO_BEVFUSION_NOTIFY_URL set the watcher is also the job poller: it refreshes running jobs
so the webhook hears of an end while no client asks.
"""

import logging
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ListenHandler, ResourceUpdated, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INVALID_PARAMS,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    SubscriptionsListenResult,
    UnsubscribeRequestParams,
)

from tao_bevfusion.core.errors import ToolError as ToolFailure
from tao_bevfusion.jobs.context import AppContext, app_context

log = logging.getLogger("tao_bevfusion.mcpext.updates")
STATUS_URI = re.compile(r"^tao-bevfusion://jobs/(j[0-9a-f]{16})/status\Z")
TICK_ENV, GAP_ENV, POLL_ENV = (
    "TAO_BEVFUSION_WATCH_SECONDS",
    "TAO_BEVFUSION_UPDATE_GAP_SECONDS",
    "TAO_BEVFUSION_POLL_SECONDS",
)


def _seconds(name: str, default: float) -> float:
    try:
        return max(0.05, float(os.environ.get(name, "") or default))
    except ValueError:
        return default


def status_job(uri: str) -> str:
    """The job id of a subscribable status URI; a clear protocol error otherwise."""
    found = STATUS_URI.match(uri)
    if not found:
        raise MCPError(
            INVALID_PARAMS,
            f"cannot subscribe to {uri[:200]!r}: only "
            "tao-bevfusion://jobs/<job id>/status can be subscribed (job ids look like "
            "j0123456789abcdef; list_jobs shows them)",
        )
    try:
        app_context().store.get(found.group(1))
    except ToolFailure as exc:
        raise MCPError(INVALID_PARAMS, f"cannot subscribe to {uri}: {exc.render()}") from exc
    return found.group(1)


def fingerprint(job_id: str, ctx: AppContext) -> tuple[Any, ...]:
    """What a subscriber hears about: state, epoch (runs), trial counts and best trial (studies), verdict."""
    job = ctx.store.get(job_id)
    if job.kind == "study":
        from tao_bevfusion.studies.status import study_status

        st = study_status(job, ctx)
        p = st.progress
        best = (st.best.trial, st.best.value) if st.best else None
        return job.state, p.completed, p.pruned, p.failed, best, job.verdict.get("outcome")
    from tao_bevfusion.service.kinds import kind_of

    job = kind_of(job).refresh(job, ctx)
    return job.state, job.progress.epoch, job.verdict.get("outcome")


def study_status_lines(job: Any) -> str | None:
    """A study's status resource: its trials as JSON lines (None for a run: that is its status.json)."""
    if job.kind != "study":
        return None
    import json

    from tao_bevfusion.studies.status import snapshot

    trials = snapshot(Path(job.results_dir)).get("trials", [])
    return "".join(json.dumps(t) + "\n" for t in trials) or "\n"


def poll_active(ctx: AppContext) -> None:
    """The job poller (webhook set): refresh running runs (trials are their study driver's) and studies."""
    from tao_bevfusion.service.kinds import kind_of

    for state in ("pending", "running"):
        for job in ctx.store.query(state=state, limit=200):
            if job.owner_id:
                continue
            try:
                kind_of(job).refresh(job, ctx)
            except (ToolFailure, OSError, ValueError) as exc:
                log.warning("poller could not refresh %s: %s", job.id, str(exc)[:200])


class StatusWatcher:
    """Watches the subscribed status URIs of one server and publishes coalesced updates."""

    def __init__(self, bus: SubscriptionBus) -> None:
        self.bus = bus
        self.listens: Counter[str] = Counter()
        self.legacy: dict[str, set[Connection]] = {}
        self.seen: dict[str, tuple[Any, ...]] = {}
        self.sent_at: dict[str, float] = {}
        self.due: set[str] = set()
        self.wake = anyio.Event()
        self.tick, self.gap = _seconds(TICK_ENV, 2.0), _seconds(GAP_ENV, 3.0)
        self.poll_every, self.polled_at = _seconds(POLL_ENV, 15.0), 0.0

    def watched(self) -> set[str]:
        return {u for u, n in self.listens.items() if n > 0} | {
            u for u, c in self.legacy.items() if c
        }

    def add(self, uris: list[str]) -> None:
        self.listens.update(uris)
        self.wake.set()

    def remove(self, uris: list[str]) -> None:
        self.listens.subtract(uris)
        self._forget()

    def add_legacy(self, uri: str, conn: Connection) -> None:
        self.legacy.setdefault(uri, set()).add(conn)
        self.wake.set()

    def remove_legacy(self, uri: str, conn: Connection) -> None:
        self.legacy.get(uri, set()).discard(conn)
        self._forget()

    def _forget(self) -> None:
        live = self.watched()
        for uri in [u for u in self.seen if u not in live]:
            self.seen.pop(uri, None)
            self.due.discard(uri)

    async def run(self) -> None:
        from tao_bevfusion.jobs.notify import notify_url

        while True:
            if not self.watched() and notify_url() is None:
                self.wake = anyio.Event()
                await self.wake.wait()  # nobody subscribed: no polling at all
            await self.step()
            await anyio.sleep(self.tick)

    async def step(self) -> None:
        from tao_bevfusion.jobs.notify import notify_url

        ctx = app_context()
        if notify_url() is not None and time.monotonic() - self.polled_at >= self.poll_every:
            self.polled_at = time.monotonic()
            await anyio.to_thread.run_sync(poll_active, ctx)
        for uri in sorted(self.watched()):
            await self._look(uri, ctx)
        await self.flush()

    async def baseline(self, uri: str) -> None:
        """What the subscriber saw when it subscribed: any later change is news (even before the next tick)."""
        if uri not in self.seen:
            await self._look(uri, app_context())

    async def _look(self, uri: str, ctx: AppContext) -> None:
        old = self.seen.get(uri)
        if old is not None and old[0] in ("succeeded", "failed", "canceled", "unknown"):
            return  # ended: it will not change again
        try:
            now = await anyio.to_thread.run_sync(fingerprint, STATUS_URI.match(uri).group(1), ctx)  # type: ignore[union-attr]
        except (ToolFailure, OSError, ValueError) as exc:
            log.warning("could not look at %s: %s", uri, str(exc)[:200])
            return
        if old is not None and now != old:
            self.due.add(uri)
        self.seen[uri] = now

    async def flush(self) -> None:
        clock = time.monotonic()
        for uri in sorted(self.due):
            if clock - self.sent_at.get(uri, -1e9) < self.gap:
                continue  # coalesced: sent when the gap has passed
            self.due.discard(uri)
            self.sent_at[uri] = clock
            await self.bus.publish(ResourceUpdated(uri=uri))
            for conn in list(self.legacy.get(uri, ())):
                await conn.send_resource_updated(uri)


def _watcher(ctx: ServerRequestContext[Any, Any]) -> StatusWatcher:
    found = (ctx.lifespan_context or {}).get("status_watcher")
    if not isinstance(found, StatusWatcher):
        raise MCPError(INVALID_PARAMS, "status subscriptions are not running on this server")
    return found


def listen_handler(bus: SubscriptionBus) -> Callable[..., Any]:
    """subscriptions/listen (2026-07-28): check the URIs, watch them for the life of the stream."""
    inner = ListenHandler(bus)

    async def listen(
        ctx: ServerRequestContext[Any, Any], params: SubscriptionsListenRequestParams
    ) -> SubscriptionsListenResult:
        uris = list(params.notifications.resource_subscriptions or [])
        for uri in uris:
            status_job(uri)
        watcher = _watcher(ctx)
        for uri in uris:
            await watcher.baseline(uri)
        watcher.add(uris)
        try:
            return await inner(ctx, params)
        finally:
            watcher.remove(uris)

    return listen


async def subscribe(
    ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams
) -> EmptyResult:
    """resources/subscribe (2025-era): until unsubscribe or the end of the client's session."""
    uri = str(params.uri)
    status_job(uri)
    conn: Connection = (
        ctx.session._connection
    )  # the per-client connection; its exit stack runs at session end
    watcher = _watcher(ctx)
    await watcher.baseline(uri)
    if conn not in watcher.legacy.get(uri, set()):
        watcher.add_legacy(uri, conn)
        conn.exit_stack.callback(watcher.remove_legacy, uri, conn)
    return EmptyResult()


async def unsubscribe(
    ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams
) -> EmptyResult:
    _watcher(ctx).remove_legacy(str(params.uri), ctx.session._connection)
    return EmptyResult()


def install(server: Any) -> None:
    """Register the three handlers on an MCPServer (its lowlevel server) and its watcher lifespan."""
    low = server._lowlevel_server
    low.add_request_handler(
        "subscriptions/listen",
        SubscriptionsListenRequestParams,
        listen_handler(server._subscriptions),
    )
    low.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


def lifespan(bus_of: Callable[[], SubscriptionBus]) -> Callable[[Any], Any]:
    @asynccontextmanager
    async def run(_: Any) -> AsyncIterator[dict[str, Any]]:
        watcher = StatusWatcher(bus_of())
        async with anyio.create_task_group() as tg:
            tg.start_soon(watcher.run)
            yield {"status_watcher": watcher}
            tg.cancel_scope.cancel()

    return run

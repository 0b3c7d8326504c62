"""Hooks a higher layer hangs on the job engine, so jobs/ never imports it (an exporter to a tracker).

Three points: `on_launch` (a job or study was just recorded, with the caller's `tracking` argument),
`after_refresh` (a poll has folded new output into the job record) and `decorate` (get_job's summary,
before it is returned). Plugins register through the `tao_bevfusion.hooks` entry-point group
("name = package.module:function"; the function is called once per process with this module); the
group is read on first use, so every process that polls jobs - the MCP server, the CLI, a study's
detached driver - runs the same hooks. A hook that raises is logged and never fails the caller.
"""

import logging
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tao_bevfusion.jobs.context import AppContext
    from tao_bevfusion.jobs.store import Job

ENTRY_POINT_GROUP = "tao_bevfusion.hooks"
OnLaunch = Callable[["Job", "dict[str, Any] | None", "AppContext"], list[str]]
AfterRefresh = Callable[["Job", "AppContext"], None]
Decorate = Callable[
    [Any, "Job", "AppContext"], Any
]  # (summary, job, ctx) -> summary (present/ sits above)

_on_launch: list[OnLaunch] = []
_after_refresh: list[AfterRefresh] = []
_decorate: list[Decorate] = []
_loaded = False
log = logging.getLogger(__name__)


def register(
    *,
    on_launch: OnLaunch | None = None,
    after_refresh: AfterRefresh | None = None,
    decorate: Decorate | None = None,
) -> None:
    """Add hooks (each at most once)."""
    for hook, table in (
        (on_launch, _on_launch),
        (after_refresh, _after_refresh),
        (decorate, _decorate),
    ):
        if hook is not None and hook not in table:
            table.append(hook)  # type: ignore[arg-type]


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()()
        except Exception as exc:  # a broken plugin never breaks a poll
            log.warning("hook plugin %s failed to load: %s", ep.name, exc)


def launched(job: "Job", tracking: dict[str, Any] | None, ctx: "AppContext") -> list[str]:
    """Run the on_launch hooks; returns their warnings (shown with the launch result)."""
    _load()
    warnings: list[str] = []
    for hook in _on_launch:
        try:
            warnings += hook(job, tracking, ctx)
        except Exception as exc:
            log.warning("on_launch hook failed: %s", exc)
    return warnings


def refreshed(job: "Job", ctx: "AppContext") -> None:
    """Run the after_refresh hooks (they must return quickly: queue work, never wait on a network)."""
    _load()
    for hook in _after_refresh:
        try:
            hook(job, ctx)
        except Exception as exc:
            log.warning("after_refresh hook failed for %s: %s", job.id, exc)


def decorated(summary: Any, job: "Job", ctx: "AppContext") -> Any:
    _load()
    for hook in _decorate:
        try:
            summary = hook(summary, job, ctx)
        except Exception as exc:
            log.warning("decorate hook failed for %s: %s", job.id, exc)
    return summary

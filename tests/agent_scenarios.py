"""Issue 16: an agent's first try, as scripted agent policies driven through the real MCP client.

Each scenario is one user request. Its policy acts as a careful agent that knows only what the server tells
it: the server instructions ("route_request first ... poll get_job"), the tool descriptions (e.g. "the same
call with confirm=true starts the study") and the calls the server suggests (route_request's suggested_calls,
get_job's next_steps, the review's confirm_call), which it parses with core.calls.parse_call and makes as
written. What the user said that the server cannot know (the KITTI root, that this host has no GPU, a budget)
is the scenario's `user` dict, added by the policy like an agent answering from the conversation.

A scenario succeeds at the first try when its goal predicate holds and no call returned an error the policy
did not expect. `calls` counts every tool call made for the goal. The suite runs against the TAO 5.5
stand-in on the real Docker engine; faults come from the stand-in's FAKE_TAO_FAULT (the container's own
failure, passed as the job's env like a site's launcher would), never from changing the server.
"""

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from tao_bevfusion.core.calls import parse_call

POLL_SECONDS = 0.5
POLL_LIMIT = 240  # polls (x POLL_SECONDS): a stand-in job ends in seconds


@dataclass
class Agent:
    client: Client
    user: dict[str, Any] = field(default_factory=dict)
    calls: int = 0
    errors: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    async def call(self, tool: str, args: dict[str, Any], expect_error: bool = False) -> dict[str, Any]:
        self.calls += 1
        r = await self.client.call_tool(tool, args)
        text = r.content[0].text if r.content and hasattr(r.content[0], "text") else ""
        self.log.append(f"{tool}({json.dumps(args)[:200]}) -> {text[:300]}")
        if r.is_error and not expect_error:
            self.errors.append(f"{tool}: {text[:300]}")
        out = dict(r.structured_content or {})
        out["_text"], out["_error"], out["_images"] = text, bool(r.is_error), sum(
            1 for c in r.content if getattr(c, "type", "") == "image")
        return out

    async def make(self, suggestion: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Make a suggested call as written, adding only what the user said (and the server cannot know)."""
        tool, args = parse_call(suggestion)
        if tool == "run_action":
            args.setdefault("data_root", self.user.get("data_root"))
            for key in ("gpus", "env"):
                if key in self.user and key not in args:
                    args[key] = self.user[key]
        return await self.call(tool, {**args, **(extra or {})})

    async def route(self, request: str, last_job_id: str | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"request": request, "data_root": self.user.get("data_root")}
        if last_job_id:
            args["last_job_id"] = last_job_id
        return await self.call("route_request", {k: v for k, v in args.items() if v is not None})

    async def until_done(self, result: dict[str, Any]) -> dict[str, Any]:
        """Poll with the get_job call the server suggests until the job ends."""
        job = result.get("summary") or result
        for _ in range(POLL_LIMIT):
            if job.get("state") not in ("pending", "running"):
                return job
            poll = next((s for s in job.get("next_steps", []) if s.startswith("get_job(")), None)
            if poll is None:
                return job
            await anyio.sleep(POLL_SECONDS)
            job = await self.make(poll)
        return job

    async def pursue(self, request: str, last_job_id: str | None = None, confirm: bool = True,
                     extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """route_request -> each suggested call (a review confirmed with its confirm_call) -> poll to the end."""
        routed = await self.route(request, last_job_id)
        last: dict[str, Any] = routed
        for suggestion in routed.get("suggested_calls", []):
            last = await self.make(suggestion, extra)
            if last.get("state") == "review" and confirm:
                confirm_call = last["review"]["confirm_call"]
                last = await self.call(confirm_call["tool"], {**confirm_call["arguments"], **(extra or {})})
            if last.get("job_id") and not last.get("_error"):
                last = await self.until_done(last)
        return last


Goal = Callable[[Agent, dict[str, Any], "World"], Awaitable[bool]]


@dataclass
class Scenario:
    name: str
    request: str
    goal: Goal
    user: dict[str, Any] = field(default_factory=dict)
    after: str | None = None  # the scenario whose job this one follows up ("that run")
    quick: bool = False  # part of the benchmark's --quick subset


@dataclass
class World:
    """Shared state: KITTI copies and the jobs earlier scenarios made (their 'that run')."""

    base: Path
    roots: dict[str, Path] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Outcome:
    name: str
    ok: bool
    calls: int
    seconds: float
    errors: list[str]
    log: list[str]


async def run_one(client: Client, sc: Scenario, world: World,
                  policy: Callable[[Agent, Scenario, World], Awaitable[dict[str, Any]]]) -> Outcome:
    agent = Agent(client, user=dict(sc.user))
    t0 = time.perf_counter()
    try:
        result = await policy(agent, sc, world)
        world.results[sc.name] = result
        job = (result.get("summary") or {}).get("job_id") or result.get("job_id")
        if job:
            world.jobs[sc.name] = job
        ok = await sc.goal(agent, result, world) and not agent.errors
    except Exception as exc:  # a policy that cannot go on is a failed first try
        agent.errors.append(f"{type(exc).__name__}: {exc}")
        ok = False
    return Outcome(sc.name, ok, agent.calls, time.perf_counter() - t0, agent.errors, agent.log)

"""Errors every tool raises: each names what is wrong, where, and the fix (the model reads them).

Two kinds, because the agent must act differently on them:
- InputError: the input is wrong; nothing was launched or written. Fix the argument and call again.
- EngineError: the engine, scheduler or disk is in trouble; job records are kept as they were, so the
  same call (or get_job) can be repeated once the cause is fixed.
"""

from typing import Any

from pydantic import BaseModel, Field

from tao_bevfusion.core.limits import TEXT_LIMIT

MAX_LISTED = 20  # an error lists the first problems and counts the rest: results stay small
MAX_TEXT = (
    TEXT_LIMIT  # and stops listing before its text passes this (the 8 KB result promise, with room)
)


class Problem(BaseModel):
    """One thing wrong with an input, and how to fix it."""

    path: str = Field(description="The spec key, argument or file path at fault.")
    message: str = Field(description="What is wrong.")
    fix: str = Field(description="What to change, or the next call to make.")
    value: Any = Field(default=None, description="The offending value, when short and not secret.")
    code: str | None = Field(default=None, description="Stable problem code, where one exists.")


class ToolError(Exception):
    """Base of the errors a tool reports to its caller: a headline plus every problem found."""

    default_headline = "error"

    def __init__(self, problems: list[Problem] | Problem, headline: str | None = None) -> None:
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        self.headline = headline or self.default_headline
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        lines = [f"{self.headline} ({count} problem{'s' if count != 1 else ''}):"]
        used = len(lines[0])
        listed = 0
        for p in self.problems[:MAX_LISTED]:
            shown = "" if p.value is None else f" (got {str(p.value)[:80]!r})"
            line = f"- {p.path[:200]}: {p.message[:600]}{shown}. Fix: {p.fix[:400]}"
            if listed and used + len(line) > MAX_TEXT:
                break
            lines.append(line)
            used += len(line) + 1
            listed += 1
        if count > listed:
            lines.append(f"- … and {count - listed} more; fix these first")
        return "\n".join(lines)


class InputError(ToolError, ValueError):
    """Bad input: nothing was launched or written."""

    default_headline = "invalid input"


class EngineError(ToolError, RuntimeError):
    """The engine, scheduler or filesystem failed; records are kept and the call can be repeated."""

    default_headline = "engine error (job records kept)"


def problem(
    path: str, message: str, fix: str, value: Any = None, code: str | None = None
) -> Problem:
    return Problem(path=path, message=message, fix=fix, value=value, code=code)

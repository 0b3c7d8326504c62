"""Errors every tool raises: each names what is wrong, where, and the fix (the model reads them)."""

from typing import Any

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """One thing wrong with an input, and how to fix it."""

    path: str = Field(description="The spec key, argument or file path at fault.")
    message: str = Field(description="What is wrong.")
    fix: str = Field(description="What to change, or the next call to make.")
    value: Any = Field(default=None, description="The offending value, when short and not secret.")
    code: str | None = Field(default=None, description="Stable problem code, where one exists.")


class ToolInputError(ValueError):
    """Bad input: nothing was launched or written. Carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem] | Problem, headline: str = "invalid input") -> None:
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        self.headline = headline
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.headline} ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}):"]
        for p in self.problems:
            shown = "" if p.value is None else f" (got {str(p.value)[:80]!r})"
            lines.append(f"- {p.path}: {p.message}{shown}. Fix: {p.fix}")
        return "\n".join(lines)


def problem(path: str, message: str, fix: str, value: Any = None, code: str | None = None) -> Problem:
    return Problem(path=path, message=message, fix=fix, value=value, code=code)

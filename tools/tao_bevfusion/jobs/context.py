"""The context of one tool call: Settings, the job store of its state dir, and the backends it uses."""

import functools
from dataclasses import dataclass, field
from pathlib import Path

from tao_bevfusion.backends.base import Backend
from tao_bevfusion.backends.registry import load_backend
from tao_bevfusion.core.settings import Settings
from tao_bevfusion.jobs.store import JobStore


@dataclass(frozen=True)
class AppContext:
    """What a tool call needs besides its input: settings, the job store, and the backends."""

    settings: Settings
    _backends: dict[str, Backend] = field(default_factory=dict, compare=False, repr=False)

    @property
    def store(self) -> JobStore:
        return _store_for(self.settings.home)

    def backend(self, name: str) -> Backend:
        if name not in self._backends:
            self._backends[name] = load_backend(name)
        return self._backends[name]


def app_context() -> AppContext:
    """The context of one tool call, from the current environment (tests change it between calls)."""
    return AppContext(Settings.from_env())


@functools.lru_cache(maxsize=8)
def _store_for(home: Path) -> JobStore:
    """One store per state dir per process: the migrations run once, not on every poll."""
    return JobStore(home)

"""Environment -> Settings (documented in the README): every variable the plugin reads, read here.

The AppContext a tool call passes down (settings + job store + backends) is built on this, in jobs/context.py."""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from tao_bevfusion.core.errors import InputError, problem

DEFAULT_IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"
DEFAULT_STALL_SECONDS = 900


def with_package_on_pythonpath(env: dict[str, str]) -> dict[str, str]:
    """`env` with the folder holding this package first on PYTHONPATH, for our own child processes
    (the study driver, the local runner) when the package is not installed in their interpreter."""
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    return env


def skill_dir() -> Path:
    """The skill-bank directory (SKILL.md lives in skill/, schemas/ and references/ beside it): the checkout
    for an editable install, else the copy a wheel installs under <prefix>/share/tao-bevfusion."""
    env = os.environ.get("TAO_BEVFUSION_SKILL_DIR")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "references" / "skill_info.yaml").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "tao-bevfusion"


def _memlock(raw: str) -> int:
    value = raw.strip().lower()
    if value in ("", "-1", "unlimited"):
        return -1
    if value.isdigit():
        return int(value)
    raise InputError(
        problem(
            "TAO_BEVFUSION_MEMLOCK",
            f"not a byte count: {raw[:40]!r}",
            "set a whole number of bytes, -1 or 'unlimited' (or unset it)",
        )
    )


def _roots(raw: str, home: Path) -> tuple[Path, ...]:
    roots = [Path(p).expanduser().resolve() for p in raw.split(":") if p.strip()]
    if any(r == Path("/") for r in roots):
        raise InputError(
            problem(
                "TAO_BEVFUSION_ROOTS",
                "'/' would allow every path on the host",
                "list the folders that hold datasets and results, e.g. /srv/kitti:/srv/runs",
            )
        )
    if not roots and Path.cwd().resolve() != Path("/"):
        roots = [
            Path.cwd().resolve()
        ]  # MCP hosts often start servers in "/": that never becomes a root
    roots.append(home)
    return tuple(roots)


def _positive(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise InputError(
            problem(name, f"not a positive whole number: {raw[:40]!r}", f"set e.g. {default}")
        )
    return int(raw)


# Site defaults of backend options: option -> variable, per backend (an explicit backend_options value wins).
BACKEND_DEFAULT_ENV = {
    "slurm": {
        "partition": "TAO_BEVFUSION_SLURM_PARTITION",
        "account": "TAO_BEVFUSION_SLURM_ACCOUNT",
        "qos": "TAO_BEVFUSION_SLURM_QOS",
        "reservation": "TAO_BEVFUSION_SLURM_RESERVATION",
        "runtime": "TAO_BEVFUSION_SLURM_RUNTIME",
        "log_dir": "TAO_BEVFUSION_SLURM_LOG_DIR",
    },
    "kubernetes": {
        "namespace": "TAO_BEVFUSION_K8S_NAMESPACE",
        "context": "TAO_BEVFUSION_K8S_CONTEXT",
    },
}


def _backend_defaults() -> dict[str, dict[str, str]]:
    return {
        backend: {opt: os.environ[var] for opt, var in names.items() if os.environ.get(var)}
        for backend, names in BACKEND_DEFAULT_ENV.items()
    }


def _seed(raw: str) -> int | None:
    return int(raw) if raw.strip().isdigit() else None


def _tick(raw: str) -> float:
    try:
        return max(0.1, float(raw)) if raw.strip() else 2.0
    except ValueError:
        return 2.0


@dataclass(frozen=True)
class Settings:
    home: Path
    image: str
    roots: tuple[Path, ...]
    memlock: int = -1
    stall_seconds: int = DEFAULT_STALL_SECONDS
    backend_defaults: dict[str, dict[str, str]] = field(default_factory=dict)
    local_cli: str = "bevfusion"  # TAO_BEVFUSION_LOCAL_CLI: a command, or a JSON list
    automl_seed: int | None = (
        None  # TAO_BEVFUSION_AUTOML_SEED: reproducible proposals (tests, benchmarks)
    )
    automl_tick: float = 2.0  # TAO_BEVFUSION_AUTOML_TICK: seconds between a study driver's rounds
    mlflow_uri: str = (
        ""  # TAO_BEVFUSION_MLFLOW_URI: track every job there (tracking/config.py checks it)
    )
    mlflow_experiment: str = (
        ""  # TAO_BEVFUSION_MLFLOW_EXPERIMENT: the MLflow experiment (default tao-bevfusion)
    )

    @classmethod
    def from_env(cls) -> "Settings":
        home_env = os.environ.get("TAO_BEVFUSION_HOME")
        if home_env:
            home = Path(home_env)
        else:
            base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
            home = Path(base) / "tao-bevfusion"
        home = home.expanduser().resolve()
        return cls(
            home=home,
            image=os.environ.get("TAO_BEVFUSION_IMAGE", DEFAULT_IMAGE),
            roots=_roots(os.environ.get("TAO_BEVFUSION_ROOTS", ""), home),
            memlock=_memlock(os.environ.get("TAO_BEVFUSION_MEMLOCK", "")),
            stall_seconds=_positive("TAO_BEVFUSION_STALL_SECONDS", DEFAULT_STALL_SECONDS),
            backend_defaults=_backend_defaults(),
            local_cli=os.environ.get("TAO_BEVFUSION_LOCAL_CLI", "bevfusion"),
            automl_seed=_seed(os.environ.get("TAO_BEVFUSION_AUTOML_SEED", "")),
            automl_tick=_tick(os.environ.get("TAO_BEVFUSION_AUTOML_TICK", "")),
            mlflow_uri=os.environ.get("TAO_BEVFUSION_MLFLOW_URI", "").strip(),
            mlflow_experiment=os.environ.get("TAO_BEVFUSION_MLFLOW_EXPERIMENT", ""),
        )


class HasSettings(Protocol):
    """Anything that carries Settings (an AppContext does): what the lower layers take from a tool call."""

    @property
    def settings(self) -> Settings: ...


def settings_of(ctx: HasSettings | None) -> Settings:
    """The call's settings, or the environment's when no context was passed."""
    return ctx.settings if ctx is not None else Settings.from_env()

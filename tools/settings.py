"""Process-wide settings read from the environment (documented in the README)."""

import os
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_IMAGE = "nvcr.io/nvidia/tao/tao-toolkit:5.5.0-pyt"


def skill_dir() -> Path:
    """The skill-bank directory (SKILL.md lives in skill/, schemas/ and references/ beside it): the checkout
    for an editable install, else the copy a wheel installs under <prefix>/share/tao-bevfusion."""
    env = os.environ.get("TAO_BEVFUSION_SKILL_DIR")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[1]
    if (checkout / "references" / "skill_info.yaml").is_file():
        return checkout
    return Path(sys.prefix) / "share" / "tao-bevfusion"


@dataclass(frozen=True)
class Settings:
    home: Path
    image: str
    roots: tuple[Path, ...]
    memlock: int = -1

    @classmethod
    def from_env(cls) -> "Settings":
        home_env = os.environ.get("TAO_BEVFUSION_HOME")
        if home_env:
            home = Path(home_env)
        else:
            base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
            home = Path(base) / "tao-bevfusion"
        home = home.expanduser().resolve()
        raw = os.environ.get("TAO_BEVFUSION_ROOTS", "")
        roots = [Path(p).expanduser().resolve() for p in raw.split(":") if p.strip()]
        if not roots and Path.cwd().resolve() != Path("/"):
            roots = [Path.cwd().resolve()]  # MCP hosts often start servers in "/": that never becomes a root
        roots.append(home)
        memlock = int(os.environ.get("TAO_BEVFUSION_MEMLOCK", "-1") or -1)
        return cls(home=home, image=os.environ.get("TAO_BEVFUSION_IMAGE", DEFAULT_IMAGE), roots=tuple(roots),
                   memlock=memlock)

"""Host paths: allowed roots, escape checks, and the host -> container mount layout.

Container layout (backends that map paths into a container): dataset at /data, the job's results at
/results/<name>, the spec folder at /specs (read-only), checkpoints and Swin weights under /inputs/*
(read-only). Backends that run on the host use host paths unchanged.
"""

import os
import re
from pathlib import Path

from pydantic import BaseModel, Field

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.settings import Settings


class Mount(BaseModel):
    host: str = Field(description="Absolute host path.")
    container: str = Field(description="Path inside the container.")
    mode: str = Field(description="'ro' or 'rw'.")


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def host_path(raw: str | None, field: str, settings: Settings, *, kind: str = "dir",
              must_exist: bool = True) -> Path:
    """Validate a host path argument: absolute, no '..', no NUL, resolved inside an allowed root."""
    if not raw or not isinstance(raw, str):
        raise InputError(problem(field, "a path is required", "give an absolute host path"))
    if "\x00" in raw or len(raw) > 4096:
        raise InputError(problem(field, "path contains a NUL byte or is too long", "give a normal path"))
    try:
        given = Path(raw).expanduser()
    except RuntimeError as exc:  # "~name" of a user this host does not have
        raise InputError(problem(field, f"cannot expand {raw[:60]!r}: {exc}", "give an absolute host path",
                                 value=raw[:80])) from exc
    if not given.is_absolute():
        raise InputError(problem(field, "path must be absolute", f"use the absolute form, e.g. {Path.cwd()/raw}",
                                     value=raw))
    if ".." in given.parts:
        raise InputError(problem(field, "path contains '..'", "give the resolved absolute path", value=raw))
    resolved = Path(os.path.realpath(given))
    roots = settings.roots
    if not any(_under(resolved, r) for r in roots):
        raise InputError(problem(
            field, f"{resolved} is outside the allowed roots ({', '.join(map(str, roots))})",
            "move it under an allowed root or add its parent to TAO_BEVFUSION_ROOTS (':'-separated)",
            value=raw, code="PATH_NOT_ALLOWED"))
    if must_exist:
        if kind == "dir" and not resolved.is_dir():
            raise InputError(problem(field, f"{resolved} is not an existing directory",
                                         "create it or correct the path", value=raw, code="PATH_MISSING"))
        if kind == "file" and not resolved.is_file():
            raise InputError(problem(field, f"{resolved} is not an existing file",
                                         "correct the path (list the folder to see what exists)", value=raw,
                                         code="PATH_MISSING"))
    return resolved


def refuse_in_state_dir(path: Path, field: str, settings: Settings, allowed: str | None = None) -> Path:
    """The state dir holds jobs.db, the signing key and every spec (with keys): a folder that a job mounts
    may not be it or inside it, except a subfolder of the one part it hands out itself (runs/ or specs/)."""
    home = settings.home
    if path in home.parents:  # the folder holds the state dir: the signing key and jobs.db would be mounted
        raise InputError(problem(field, f"{path} contains the state dir {home} (jobs.db, the signing key and "
                                 "every spec would be mounted into the job)", f"use a folder that is neither "
                                 f"inside nor above {home}", code="PATH_IN_STATE_DIR"))
    if not _under(path, home):
        return path
    if allowed and home / allowed in path.parents:
        return path
    where = f"a subfolder of {home / allowed} or " if allowed else ""
    raise InputError(problem(field, f"{path} is inside the state dir {home} (jobs.db, keys and specs would be "
                             "mounted into the job)", f"use {where}a folder outside {home}",
                             code="PATH_IN_STATE_DIR"))


def _home_dir() -> Path | None:
    try:
        return Path(os.path.realpath(Path.home()))
    except (RuntimeError, KeyError):
        return None


def refuse_results_overlap(results: Path, data_root: Path, settings: Settings) -> Path:
    """A results folder is mounted read-write: it may not overlap the dataset in either direction, be the home
    directory or a folder above it, or lie in one of its dot-folders (~/.ssh, ~/.aws, ~/.config, ...), except
    the state dir's own runs/ that the plugin hands out."""
    fix = "pass a fresh results_dir of its own (or leave it out: a new folder under the state dir's runs/)"
    if _under(results, data_root) or _under(data_root, results):
        where = "is" if results == data_root else ("is inside" if _under(results, data_root) else "contains")
        raise InputError(problem("results_dir", f"{results} {where} the dataset root {data_root}: the job would "
                                 "write over (or next to) the data it reads", fix, code="RESULTS_OVERLAP"))
    home_dir = _home_dir()
    if home_dir is None or _under(results, settings.home):
        return results
    if _under(home_dir, results):
        raise InputError(problem("results_dir", f"{results} is the home directory {home_dir} or holds it (its "
                                 "credentials would be mounted read-write into the job)", fix,
                                 code="RESULTS_IN_HOME_DOTDIR"))
    first = results.relative_to(home_dir).parts[0] if _under(results, home_dir) else ""
    if first.startswith("."):
        raise InputError(problem("results_dir", f"{results} is inside {home_dir / first}"
                                 " (a dot-folder of the home directory: credentials and settings)", fix,
                                 code="RESULTS_IN_HOME_DOTDIR"))
    return results


def inside(path: Path, root: Path) -> bool:
    """True when `path` (symlinks resolved) stays inside `root`."""
    return _under(Path(os.path.realpath(path)), Path(os.path.realpath(root)))


def container_name(host: Path) -> str:
    """A container-safe folder name for a host directory (no spaces: the 5.5 launcher re-splits argv)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", host.name) or "job"


class MountLayout:
    """Maps host paths to container paths for one launch, collecting the mounts it needs."""

    def __init__(self, maps_paths_into_container: bool) -> None:
        self.identity = not maps_paths_into_container
        self.mounts: list[Mount] = []

    def add(self, host: Path, container: str, mode: str) -> str:
        if not self.identity and ":" in str(host):
            raise InputError(problem(str(host)[:200], "a host path with ':' cannot be mounted (the engine splits "
                                     "volume specs on ':')", "rename the folder or move the file",
                                     code="PATH_UNMOUNTABLE"))
        target = str(host) if self.identity else container
        if not any(m.host == str(host) and m.container == target for m in self.mounts):
            self.mounts.append(Mount(host=str(host), container=target, mode=mode))
        return target

    def file(self, host_file: Path, container_dir: str) -> str:
        """Mount a file's folder read-only and return the file's container path."""
        folder = self.add(host_file.parent, container_dir, "ro")
        return f"{folder}/{host_file.name}"

    def to_container(self, host: Path) -> str | None:
        """Translate a host path to its container path (longest mount prefix wins)."""
        best: Mount | None = None
        for m in self.mounts:
            if _under(host, Path(m.host)) and (best is None or len(m.host) > len(best.host)):
                best = m
        if best is None:
            return None
        rest = host.relative_to(best.host).as_posix()
        return best.container if rest == "." else f"{best.container.rstrip('/')}/{rest}"

    def to_host(self, container_path: str) -> Path | None:
        """Translate a container path back to the host (longest mount prefix wins)."""
        best: Mount | None = None
        for m in self.mounts:
            matches = container_path == m.container or container_path.startswith(m.container.rstrip("/") + "/")
            if matches and (best is None or len(m.container) > len(best.container)):
                best = m
        if best is None:
            return None
        rest = container_path[len(best.container):].lstrip("/")
        return Path(best.host) / rest if rest else Path(best.host)

"""A job's inputs come from a folder only the plugin writes, and every mount source is checked again at submit.

Why: Docker resolves a bind source when the container starts. A checkpoint's folder inside another job's
results (say a running train's `train/`) can be swapped for a link to `/` between build_spec and the launch,
and the new container would get host `/`. So the files a spec reads under `/inputs/*` (the chosen checkpoint,
the Swin weights) are linked (or copied) into `<state dir>/jobs/<id>/inputs/<name>/`, opened component by
component without following any link; that private folder is what gets mounted. Right before submit, every
mount source is resolved again and refused if it changed, passes through a link, left the roots, or would
expose the state dir (jobs.db, the signing key, other jobs' specs).
"""

import contextlib
import os
import shutil
import stat
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tao_bevfusion.core.errors import InputError, problem
from tao_bevfusion.core.layout import JobFiles, private_dirs
from tao_bevfusion.core.paths import Mount, inside
from tao_bevfusion.core.settings import Settings

INPUTS_PREFIX = "/inputs/"
NO_FOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# Parts of the state dir a job may have mounted: results under runs/, its spec folder, its own job folder.
HANDED_OUT = ("runs", "specs", "jobs")


class StagedInput(BaseModel):
    """One read-only input folder: where the files come from and the private folder that is mounted."""

    source: str
    private: str
    container: str
    names: list[str]


def _changed(field: str, message: str) -> InputError:
    return InputError(
        problem(
            field,
            message,
            "rebuild the spec with build_spec (nothing was launched); keep "
            "inputs out of folders another job writes",
            code="MOUNT_CHANGED",
        )
    )


def _referenced(spec: Any, container: str, out: set[str]) -> set[str]:
    """Names of the files directly under `container` that the spec refers to."""
    if isinstance(spec, dict):
        for value in spec.values():
            _referenced(value, container, out)
    elif isinstance(spec, list):
        for value in spec:
            _referenced(value, container, out)
    elif isinstance(spec, str) and spec.startswith(container + "/"):
        name = spec[len(container) + 1 :]
        if name and "/" not in name:
            out.add(name)
    return out


def private_mounts(mounts: list[Mount], files: JobFiles) -> list[Mount]:
    """The mounts with each `/inputs/*` folder replaced by the job's private one (nothing written yet)."""
    return [
        Mount(
            host=str(files.dir / "inputs" / Path(m.container).name),
            container=m.container,
            mode="ro",
        )
        if m.container.startswith(INPUTS_PREFIX)
        else m
        for m in mounts
    ]


def staging(planned: list[Mount], sources: list[Mount], spec: dict[str, Any]) -> list[StagedInput]:
    """What to put in each private input folder of a plan: the files the spec names, from the launch record's
    folder of the same container path."""
    by_container = {m.container: m.host for m in sources}
    return [
        StagedInput(
            source=by_container[m.container],
            private=m.host,
            container=m.container,
            names=sorted(_referenced(spec, m.container, set())),
        )
        for m in planned
        if m.container.startswith(INPUTS_PREFIX)
        and m.container in by_container
        and m.host != by_container[m.container]
    ]


def open_without_links(path: Path, field: str) -> int:
    """An fd of the regular file `path`, reached from `/` one component at a time with no link followed."""
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in path.parts[1:-1]:
            try:
                step = os.open(part, NO_FOLLOW_DIR, dir_fd=fd)
            except OSError as exc:
                raise _changed(
                    field,
                    f"{path}: '{part}' is no longer a plain folder (a link or gone: "
                    f"{exc.strerror})",
                ) from exc
            os.close(fd)
            fd = step
        try:
            leaf = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            raise _changed(field, f"{path} is no longer a plain file ({exc.strerror})") from exc
    finally:
        os.close(fd)
    if not stat.S_ISREG(os.fstat(leaf).st_mode):
        os.close(leaf)
        raise _changed(field, f"{path} is not a regular file")
    return leaf


def _place(fd: int, target: Path) -> None:
    """Hard-link the open file into place (same filesystem), else copy its bytes."""
    try:
        os.link(f"/proc/self/fd/{fd}", target, follow_symlinks=True)
        return
    except OSError:
        pass
    out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(out, "wb") as dst, os.fdopen(os.dup(fd), "rb") as src:
        shutil.copyfileobj(src, dst, 1 << 20)


def materialize(staged: list[StagedInput], settings: Settings) -> None:
    """Fill each private input folder afresh from its source, never following a link on the way."""
    for item in staged:
        private = Path(item.private)
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(private)
        private_dirs(private)
        for name in item.names:
            source = Path(item.source) / name
            if not any(inside(Path(item.source), root) for root in settings.roots):
                raise _changed(item.container, f"{item.source} is outside the allowed roots")
            fd = open_without_links(source, item.container)
            try:
                _place(fd, private / name)
            finally:
                os.close(fd)


def _exposes_state(path: Path, home: Path, job_dir: Path) -> bool:
    if path == home or path in home.parents:
        return True  # the state dir itself, or a folder that holds it
    if home not in path.parents:
        return False
    first = path.relative_to(home).parts[0]
    if first == "jobs":
        return not (path == job_dir or job_dir in path.parents)
    return first not in HANDED_OUT or len(path.relative_to(home).parts) < 2


def refuse_links(path: Path, field: str) -> None:
    """`path` (existing or not) is reached without passing through a link."""
    real = Path(os.path.realpath(path))
    if real != path:
        raise _changed(field, f"{path} now resolves to {real} (a link was put on its path)")


def verify_mounts(mounts: list[Mount], settings: Settings, job_dir: Path) -> None:
    """Right before submit: every mount source is still the folder it was (no link anywhere on its path),
    inside the roots, and shows nothing of the state dir but this job's own parts."""
    for m in mounts:
        host = Path(m.host)
        refuse_links(host, m.container)
        try:
            info = os.lstat(host)
        except OSError as exc:
            raise _changed(
                m.container, f"the mount source {host} is gone ({exc.strerror})"
            ) from exc
        if not stat.S_ISDIR(info.st_mode):
            raise _changed(m.container, f"the mount source {host} is no longer a folder")
        if not any(host == r or r in host.parents for r in settings.roots):
            raise _changed(m.container, f"{host} is outside the allowed roots")
        if _exposes_state(host, settings.home, job_dir):
            raise _changed(
                m.container,
                f"{host} would expose the state dir {settings.home} (jobs.db, the "
                "signing key, other jobs' specs) to the job",
            )


def discard(job_dir: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(job_dir / "inputs")

"""Build the TAO 5.5 stand-in image from local files only (no registry): this host's Python, its stdlib,
the shared libraries ldd lists, PyYAML, busybox (when installed) and bevfusion_standin.py as `bevfusion`.

    python -m tests.standin.image      # prints the image tag (builds it when missing)
"""

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
from pathlib import Path

import docker
import yaml

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "bevfusion_standin.py"
REPO_NAME = "tao-bevfusion-standin"
SKIP_STDLIB = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages", "__pycache__",
               "pydoc_data", "config-3.11-x86_64-linux-gnu"}


def content_tag(repo: str, *sources: Path) -> str:
    """An image tag that changes whenever a file it is built from, or this host's Python, changes."""
    h = hashlib.sha256()
    for source in sources:
        h.update(source.read_bytes())
    h.update(os.path.realpath(sys.executable).encode())
    return f"{repo}:{h.hexdigest()[:12]}"


def tag() -> str:
    return content_tag(REPO_NAME, STANDIN, Path(__file__))


def _libs(paths: list[Path]) -> set[Path]:
    found: set[Path] = set()
    for path in paths:
        out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
        for m in re.finditer(r"(/\S+\.so[^\s]*)", out):
            found.add(Path(m.group(1)))
    return found


def _add(tar: tarfile.TarFile, src: Path, arcname: str) -> None:
    tar.add(str(src), arcname=arcname, recursive=False)


def _rootfs() -> bytes:
    exe = Path(os.path.realpath(sys.executable))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    dynload = stdlib / "lib-dynload"
    libs = _libs([exe, *dynload.glob("*.so")])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "usr/bin", "usr/local/bin", "tmp", "etc", "data", "results", "specs"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        _add(tar, exe, str(exe).lstrip("/"))
        for lib in sorted(libs):
            real = Path(os.path.realpath(lib))
            tar.add(str(real), arcname=str(lib).lstrip("/"))
        for root, dirs, files in os.walk(stdlib):
            dirs[:] = [d for d in dirs if d not in SKIP_STDLIB]
            for name in files:
                if not name.endswith((".pyc",)):
                    full = Path(root) / name
                    tar.add(str(full), arcname=str(full).lstrip("/"), recursive=False)
        # PyYAML goes beside the stdlib, which every interpreter searches: the running interpreter's own
        # site-packages may be a venv's (or Debian's dist-packages), which the image's Python never searches
        yaml_pkg = Path(yaml.__file__).parent
        for full in yaml_pkg.rglob("*.py"):
            tar.add(str(full), arcname=str(stdlib / full.relative_to(yaml_pkg.parent)).lstrip("/"))
        for link, target in (("usr/bin/python3", str(exe)),):
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        busybox = shutil.which("busybox")
        if busybox:
            _add(tar, Path(busybox), "bin/busybox")
            for applet in ("sh", "ls", "cat", "sleep", "env"):
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "/bin/busybox"
                tar.addfile(info)
        script = b"#!/usr/bin/python3\n" + STANDIN.read_bytes()
        info = tarfile.TarInfo("usr/local/bin/bevfusion")
        info.size, info.mode = len(script), 0o755
        tar.addfile(info, io.BytesIO(script))
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


def ensure_image(client: docker.DockerClient | None = None) -> str:
    """Return the stand-in's tag, importing it into the engine when it is not there yet."""
    client = client or docker.from_env()
    name = tag()
    try:
        client.images.get(name)
        return name
    except docker.errors.ImageNotFound:
        pass
    repo, version = name.split(":")
    client.api.import_image_from_data(
        _rootfs(), repository=repo, tag=version,
        changes=["ENV PATH=/usr/local/bin:/usr/bin:/bin", "ENV PYTHONDONTWRITEBYTECODE=1",
                 "LABEL tao-bevfusion.standin=true"])
    return name


if __name__ == "__main__":
    print(ensure_image())

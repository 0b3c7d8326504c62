"""Build the rendezvous test image from local files only (no registry): this host's Python and stdlib,
the shared libraries ldd lists, torch 2.13.0 CPU (pip takes the wheel from this machine's disk) with the
few modules `import torch` needs, a `torchrun` entry point and rdzv_check.py at /opt/rdzv/.

    python -m tests.rendezvous.image      # prints the image tag (builds it when missing)
"""

import io
import os
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

import docker

from tests.standin.image import SKIP_STDLIB, _libs, content_tag

HERE = Path(__file__).resolve().parent
CHECK = HERE / "rdzv_check.py"
REPO_NAME = "tao-bevfusion-rdzv"
TORCH = "torch==2.13.0"
# `import torch` and torch.distributed.run need only these besides torch itself (measured: sympy,
# networkx and jinja2 are imported lazily, by the compiler stack this check never touches).
TORCH_DEPS = ("typing_extensions", "filelock", "fsspec")
KEEP_TOP = {"torch", "torchgen", "typing_extensions.py", *TORCH_DEPS}
SKIP_TORCH = ("torch/include/", "torch/test/", "torch/bin/", "torch/share/", "torch/testing/_internal/data/")
CHECK_IN_IMAGE = "/opt/rdzv/rdzv_check.py"
TORCHRUN = b"#!/usr/bin/python3\nimport sys\nfrom torch.distributed.run import main\nsys.exit(main())\n"


def tag() -> str:
    return content_tag(REPO_NAME, CHECK, Path(__file__))


def torch_dir() -> Path:
    """torch and its import-time deps installed into a cache directory (once; about 20 s)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tao-bevfusion" / "rdzv-torch-2.13.0"
    if not (cache / "torch" / "__init__.py").exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(cache),
                        TORCH, *TORCH_DEPS], check=True)
    return cache


def _skip(rel: str) -> bool:
    if rel == "torch/bin/torch_shm_manager":   # `import torch` checks that it exists
        return False
    return (rel.startswith(SKIP_TORCH) or "/__pycache__/" in rel or rel.endswith((".pyc", ".a", ".h", ".hpp"))
            or (rel.startswith("torch/lib/") and "test" in rel))


def _add_file(tar: tarfile.TarFile, arcname: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(arcname)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _add_python(tar: tarfile.TarFile, extra_so: list[Path]) -> None:
    exe = Path(os.path.realpath(sys.executable))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    tar.add(str(exe), arcname=str(exe).lstrip("/"))
    for lib in sorted(_libs([exe, *(stdlib / "lib-dynload").glob("*.so"), *extra_so])):
        if "/torch/" not in str(lib):
            tar.add(os.path.realpath(lib), arcname=str(lib).lstrip("/"))
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in SKIP_STDLIB]
        for name in files:
            if not name.endswith(".pyc"):
                full = Path(root) / name
                tar.add(str(full), arcname=str(full).lstrip("/"), recursive=False)
    info = tarfile.TarInfo("usr/bin/python3")
    info.type, info.linkname = tarfile.SYMTYPE, str(exe)
    tar.addfile(info)


def _add_torch(tar: tarfile.TarFile, src: Path) -> None:
    # beside the stdlib, which the image's interpreter always searches (a venv's site-packages it never does)
    site = Path(sysconfig.get_paths()["stdlib"]).relative_to("/")
    for top in sorted(os.listdir(src)):
        if top not in KEEP_TOP:
            continue
        base = src / top
        paths = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in paths:
            rel = str(path.relative_to(src))
            if not _skip(rel):
                tar.add(str(path), arcname=str(site / rel), recursive=False)


def _write_rootfs(out: Path) -> None:
    src = torch_dir()
    with tarfile.open(out, mode="w") as tar:
        for d in ("tmp", "etc", "opt/rdzv", "usr/local/bin", "bin"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        _add_python(tar, [*(src / "torch" / "lib").glob("*.so*"), *(src / "torch").glob("_C*.so")])
        _add_torch(tar, src)
        _add_file(tar, "usr/local/bin/torchrun", TORCHRUN, 0o755)
        _add_file(tar, CHECK_IN_IMAGE.lstrip("/"), CHECK.read_bytes())
        _add_file(tar, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n")
        _add_file(tar, "etc/hosts", b"127.0.0.1 localhost\n")


def ensure_image(client: docker.DockerClient | None = None) -> str:
    """Return the image's tag, importing it into the engine when it is not there yet."""
    client = client or docker.from_env(timeout=600)
    name = tag()
    try:
        client.images.get(name)
        return name
    except docker.errors.ImageNotFound:
        pass
    repo, version = name.split(":")
    with tempfile.TemporaryDirectory(prefix="rdzv-image.") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        _write_rootfs(rootfs)
        client.api.import_image_from_file(
            str(rootfs), repository=repo, tag=version,
            changes=["ENV PATH=/usr/local/bin:/usr/bin:/bin", "ENV PYTHONDONTWRITEBYTECODE=1",
                     "LABEL tao-bevfusion.rdzv=true"])
    return name


if __name__ == "__main__":
    print(ensure_image())

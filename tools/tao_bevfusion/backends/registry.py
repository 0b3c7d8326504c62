"""Backends by name. Built-ins register here exactly as a third-party package would through the
`tao_bevfusion.backends` entry-point group ("name = package.module:Class"); modules load on first use,
so planning needs neither the Docker SDK nor an engine until a docker launch is planned."""

import functools
import importlib
from importlib.metadata import entry_points

from tao_bevfusion.backends.base import Backend
from tao_bevfusion.core.errors import InputError, problem

ENTRY_POINT_GROUP = "tao_bevfusion.backends"
_REGISTERED: dict[str, str] = {}
# Multi-node backends named in refusals until they are registered (docs/container-contract.md §9).
PLANNED_MULTI_NODE = ("slurm", "kubernetes")


def register(name: str, target: str) -> None:
    """Register `target` ("module:Class") under `name`; a later registration of the same name wins."""
    _REGISTERED[name] = target


register("docker", "tao_bevfusion.backends.docker:DockerBackend")
register("local", "tao_bevfusion.backends.local:LocalBackend")
register("slurm", "tao_bevfusion.backends.slurm.backend:SlurmBackend")
register("kubernetes", "tao_bevfusion.backends.kubernetes.backend:KubernetesBackend")


@functools.cache
def _discover() -> None:
    """Entry points are read once per process: scanning the installed distributions costs ~8 ms, and every
    tool call (each poll of get_job) looks a backend up."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        _REGISTERED.setdefault(ep.name, ep.value)


def names() -> list[str]:
    _discover()
    return sorted(_REGISTERED)


def backend_class(name: str) -> type[Backend]:
    _discover()
    if name not in _REGISTERED:
        raise InputError(problem("backend", f"unknown backend {name!r}", f"use one of {names()}"))
    module, cls = _REGISTERED[name].split(":")
    found: type[Backend] = getattr(importlib.import_module(module), cls)
    return found


def load_backend(name: str) -> Backend:
    return backend_class(name)()


def multi_node_backends() -> list[str]:
    """Registered backends that run one job on several nodes (loads each backend class to ask it)."""
    return [n for n in names() if backend_class(n).capabilities.multi_node]

"""Backends by name. Built-ins register here exactly as a third-party package would through the
`tao_bevfusion.backends` entry-point group ("name = package.module:Class"); modules load on first use,
so planning needs neither the Docker SDK nor an engine until a docker launch is planned."""

import functools
import importlib
from importlib.metadata import entry_points
from typing import Any

from tao_bevfusion.backends.base import Backend, BackendOptions
from tao_bevfusion.core.errors import InputError, problem

ENTRY_POINT_GROUP = "tao_bevfusion.backends"
_REGISTERED: dict[str, str] = {}
_OPTIONS: dict[
    str, str
] = {}  # name -> "module:OptionsModel", where it can load without the backend


def register(name: str, target: str, options: str | None = None) -> None:
    """Register `target` ("module:Class") under `name`; a later registration of the same name wins.
    `options` ("module:Model"): the backend's options model, when it loads faster than the backend."""
    _REGISTERED[name] = target
    if options:
        _OPTIONS[name] = options
    else:
        _OPTIONS.pop(name, None)


register(
    "docker",
    "tao_bevfusion.backends.docker:DockerBackend",
    options="tao_bevfusion.backends.docker_options:DockerOptions",
)
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


def _load(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(module), attr)


def options_models() -> dict[str, type[BackendOptions]]:
    """Each registered backend's options model, by name (what run_action's schema publishes)."""
    return {
        n: _load(_OPTIONS[n]) if n in _OPTIONS else backend_class(n).options_model for n in names()
    }


class PublishedOptions:
    """Annotation of run_action's `backend_options`: its JSON Schema is one object per registered backend,
    generated from the options models that validate it (the launch validates the chosen backend's)."""

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        variants = [
            {**handler(model.__pydantic_core_schema__), "title": f"{name} options"}
            for name, model in options_models().items()
        ]
        return {
            "anyOf": [*variants, {"type": "null"}],
            "default": None,
            "description": (
                "Options of the chosen backend only: the object for that backend below (unknown keys are errors; "
                "a backend without options takes none)."
            ),
        }


def load_backend(name: str) -> Backend:
    return backend_class(name)()


def multi_node_backends() -> list[str]:
    """Registered backends that run one job on several nodes (loads each backend class to ask it)."""
    return [n for n in names() if backend_class(n).capabilities.multi_node]

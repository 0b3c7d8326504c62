"""Fuzz (Hypothesis) of host-path validation (build_spec / check_dataset arguments) and env validation
(run_action dry_run env=...): a path outside the roots is never accepted, and nothing crashes with a raw
exception (only InputError / a pydantic ValidationError naming the field). Budget: MAX_EXAMPLES."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from tao_bevfusion import api
from tao_bevfusion.core.errors import InputError

from tests.conftest import copy_sample

pytestmark = [pytest.mark.attack, pytest.mark.heavy]
MAX_EXAMPLES = 120
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

SEGMENTS = st.one_of(st.sampled_from(["..", ".", "", "etc", "passwd", "kitti", "home", "ws", "~", "link", "a:b",
                                      "\x00", " ", "%2e%2e", "\n"]), st.text(max_size=12))


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    """Roots with a KITTI copy, links that escape (to / and /etc), and a sibling outside the roots."""
    base = tmp_path_factory.mktemp("fuzz")
    ws = base / "ws"
    (ws / "home").mkdir(parents=True)
    copy_sample(ws / "kitti")
    (ws / "link").symlink_to("/etc")
    (ws / "kitti" / "link").symlink_to(base)
    (base / "outside").mkdir()
    return ws


def _resolved_inside(raw: str, ws: Path) -> bool:
    try:
        real = Path(os.path.realpath(raw))
    except (ValueError, OSError):
        return False
    return real == ws or ws in real.parents


def _attempt(name: str, args: dict) -> object | None:
    try:
        return api.call(name, args)[0]
    except (InputError, ValidationError):
        return None


@FUZZ
@given(parts=st.lists(SEGMENTS, max_size=6), absolute=st.booleans(), prefix=st.sampled_from(["ws", "root", "none"]))
def test_host_paths_never_escape_and_never_crash(arena: Path, monkeypatch, parts, absolute, prefix):
    monkeypatch.setenv("TAO_BEVFUSION_HOME", str(arena / "home"))
    monkeypatch.setenv("TAO_BEVFUSION_ROOTS", str(arena))
    head = {"ws": str(arena), "root": "/", "none": ""}[prefix]
    raw = "/".join([head, *parts]) if absolute else "/".join(parts)
    report = _attempt("check_dataset", {"data_root": raw, "action": "dataset_convert"})
    if report is not None:
        assert _resolved_inside(raw, arena), raw
    built = _attempt("build_spec", {"action": "train", "data_root": str(arena / "kitti"), "results_dir": raw,
                                    "overrides": {"num_epochs": 1}})
    if built is not None:
        assert _resolved_inside(built.results_dir, arena), (raw, built.results_dir)
        assert not _resolved_inside(built.results_dir, arena / "home") or "runs" in built.results_dir


ENV_NAMES = st.one_of(st.text(max_size=20), st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,20}\Z"),
                      st.sampled_from(["LD_PRELOAD", "LD_AUDIT", "PATH", "HOME", "ld_preload", "BASH_ENV",
                                       "PYTHONPATH", "CUDA_VISIBLE_DEVICES", "RANK", "NVIDIA_VISIBLE_DEVICES"]))
ENV_VALUES = st.one_of(st.text(max_size=50), st.just("\x00"), st.just("x" * 5000))
DENY = {"LD_PRELOAD", "LD_AUDIT", "PATH", "HOME", "BASH_ENV", "PYTHONPATH", "CUDA_VISIBLE_DEVICES", "RANK",
        "NVIDIA_VISIBLE_DEVICES"}


@FUZZ
@given(env=st.dictionaries(ENV_NAMES, ENV_VALUES, max_size=4))
def test_env_validation_never_crashes_and_denies_the_loader(arena: Path, monkeypatch, env):
    monkeypatch.setenv("TAO_BEVFUSION_HOME", str(arena / "home"))
    monkeypatch.setenv("TAO_BEVFUSION_ROOTS", str(arena))
    r = _attempt("run_action", {"action": "dataset_convert", "data_root": str(arena / "kitti"), "dry_run": True,
                                "backend": "local", "gpus": [], "env": env})
    if r is not None:
        passed = r.plan.env  # type: ignore[attr-defined]
        assert not {k.upper() for k in env} & DENY or not any(passed.get(k) == v for k, v in env.items()
                                                               if k.upper() in DENY)
        for k, _v in env.items():
            assert "\x00" not in passed.get(k, "")

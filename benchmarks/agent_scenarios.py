#!/usr/bin/env python3
"""An agent's first try (issue 16): the scenario suite of tests/agent_policies.py (34 user requests as scripted
agent policies, through the real MCP client, against the TAO 5.5 stand-in on the real Docker engine, faults
included). Reports the first-try success rate and the tool calls per goal, as JSON.

    python3 benchmarks/agent_scenarios.py            # every scenario
    python3 benchmarks/agent_scenarios.py --quick    # the quick subset (and the scenarios it follows up)

Needs a reachable Docker engine (DOCKER_HOST; .ci/run starts one); builds the stand-in image when missing.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.agent_policies import run_suite
from tests.agent_scenarios import World


def _environment(base: Path) -> None:
    import docker

    from tests.standin.image import ensure_image

    (base / "home").mkdir(parents=True)
    os.environ["TAO_BEVFUSION_HOME"] = str(base / "home")
    os.environ["TAO_BEVFUSION_ROOTS"] = str(base)
    os.environ["TAO_BEVFUSION_IMAGE"] = ensure_image(docker.from_env())
    hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)[1]
    os.environ.setdefault("TAO_BEVFUSION_MEMLOCK", str(hard))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tao-agent-bench.") as tmp:
        base = Path(tmp) / "ws"
        _environment(base)
        t0 = time.perf_counter()
        outcomes = anyio.run(run_suite, World(base=base), args.quick)
        wall = time.perf_counter() - t0
    ok = [o for o in outcomes if o.ok]
    report = {
        "scenarios": len(outcomes), "first_try_success": len(ok),
        "first_try_success_rate": round(len(ok) / len(outcomes), 4) if outcomes else None,
        "calls_per_goal_mean": round(statistics.mean(o.calls for o in outcomes), 2) if outcomes else None,
        "calls_per_goal_median": statistics.median(o.calls for o in outcomes) if outcomes else None,
        "wall_seconds": round(wall, 1),
        "failed": {o.name: o.errors[:2] for o in outcomes if not o.ok},
        "per_scenario": {o.name: {"ok": o.ok, "calls": o.calls, "seconds": round(o.seconds, 1)} for o in outcomes},
    }
    text = json.dumps(report, indent=1)
    print(text)
    out = args.out or Path(__file__).with_name("agent_results.quick.json" if args.quick else "agent_results.json")
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()

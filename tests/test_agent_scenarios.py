"""Issue 16: the agent-scenario suite (tests/agent_policies.py) on the real Docker engine with the stand-in:
every request reaches the user's goal at the first try (benchmarks/agent_scenarios.py reports the rate)."""

from pathlib import Path

import anyio
import pytest

from tests.agent_policies import run_suite
from tests.agent_scenarios import World

pytestmark = pytest.mark.docker


def test_every_scenario_reaches_its_goal_at_the_first_try(docker_ws: Path):
    outcomes = anyio.run(run_suite, World(base=docker_ws))
    assert len(outcomes) >= 30
    failed = [f"{o.name}: {o.errors}\n  " + "\n  ".join(o.log[-6:]) for o in outcomes if not o.ok]
    if failed:
        pytest.fail("\n".join(failed), pytrace=False)

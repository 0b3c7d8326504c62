"""run_action publishes each backend's options as typed properties, generated from the models that
validate them; a wrong option is an error naming backend_options.<field>."""

from pathlib import Path

import anyio
import pytest
from mcp import Client
from tao_bevfusion.backends import registry
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.jobs.launch import RunActionInput
from tao_bevfusion.server import mcp
from tao_bevfusion.service.run import run_action

from tests.conftest import copy_sample


def _published() -> dict[str, dict]:
    async def go() -> dict:
        async with Client(mcp) as client:
            tools = await client.list_tools()
            return next(t for t in tools.tools if t.name == "run_action").input_schema

    schema = anyio.run(go)
    variants = schema["properties"]["backend_options"]["anyOf"]
    defs = schema.get("$defs", {})
    out = {}
    for v in variants:
        if v.get("type") == "null":
            continue
        body = defs[v["$ref"].split("/")[-1]] if "$ref" in v else v
        out[v["title"].removesuffix(" options")] = body
    return out


def test_every_backend_publishes_exactly_its_options_model():
    published = _published()
    models = registry.options_models()
    assert sorted(published) == sorted(models) == sorted(registry.names())
    for name, model in models.items():
        assert set(published[name].get("properties", {})) == set(model.model_fields), name
        assert published[name].get("additionalProperties") is False
    # the fields that the hand-written list used to miss are there now
    assert {"master_port", "shm_size", "container_gpus"} <= set(published["slurm"]["properties"])
    assert {"image_pull_secret", "master_port"} <= set(published["kubernetes"]["properties"])


def test_a_wrong_option_names_its_field(workspace: Path):
    root = copy_sample(workspace / "kitti")
    with pytest.raises(InputError) as err:
        run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="docker",
                                  backend_options={"network": "moon"}, dry_run=True))
    assert err.value.problems[0].path == "backend_options.network"
    with pytest.raises(InputError) as err:
        run_action(RunActionInput(action="dataset_convert", data_root=str(root), backend="docker",
                                  backend_options={"partition": "gpu"}, dry_run=True))
    assert err.value.problems[0].path.startswith("backend_options") and "network" in err.value.problems[0].fix

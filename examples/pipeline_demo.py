"""The whole BEVFusion pipeline driven through the MCP server, as an agent would drive it.

Starts `tao-bevfusion serve` over stdio with the real MCP SDK client and calls:
"Train BEVFusion on my KITTI data": check_dataset -> run_action(dataset_convert) -> run_action(train) = the
AutoML study review -> the same call with confirm=true -> get_job(study) until it finishes ->
resolve_parent_checkpoint(study) -> run_action(evaluate) and run_action(inference) from the study's best,
printing each call and the text the agent would read. The study is small (4 trials x 2 epochs, 2 at a time)
so the stand-in finishes it in well under a minute; then a follow-up route_request,
the detections and their pictures, and list_jobs sorted by best AP11.

    python examples/pipeline_demo.py --data-root /abs/kitti [--backend docker|local] [--record walkthrough.md]
        [--pictures DIR]   # write the BEV, camera and contact-sheet pictures get_job returned into DIR
"""

import argparse
import json
import os
import sys
import time

import anyio
from mcp import Client, StdioServerParameters

LINES: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    LINES.append(text)


PICTURES: list[tuple[str, bytes]] = []


async def call(client: Client, name: str, args: dict, quiet: bool = False) -> dict:
    async def progress(value: float, total: float | None, message: str | None) -> None:
        say(f"    progress {value:g}/{total:g}: {message}")

    if not quiet:
        say(f"\n>>> {name}({json.dumps(args)})")
    result = await client.call_tool(name, args, progress_callback=progress)
    text = result.content[0].text if result.content else ""
    if not quiet:
        say("\n".join("    " + ln for ln in text.splitlines()))
    for i, block in enumerate(b for b in result.content if b.type == "image"):
        import base64

        PICTURES.append((f"{name}_{len(PICTURES)}_{i}.png", base64.b64decode(block.data)))
        if not quiet:
            say(f"    [image/png, {len(PICTURES[-1][1]) // 1024} KB]")
    if result.is_error:
        raise SystemExit(f"tool {name} failed: {text}")
    return result.structured_content or {}


async def wait(client: Client, job_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = await call(client, "get_job", {"job_id": job_id}, quiet=True)
        if job["state"] not in ("pending", "running") or time.monotonic() > deadline:
            await call(client, "get_job", {"job_id": job_id})
            return job
        await anyio.sleep(1)


async def main(args: argparse.Namespace) -> int:
    env = {k: v for k, v in os.environ.items() if k.startswith(("TAO_BEVFUSION_", "DOCKER_", "PATH", "HOME"))}
    server = StdioServerParameters(command=sys.executable, args=["-m", "tao_bevfusion.cli", "serve"], env=env)
    common = {"data_root": args.data_root, "backend": args.backend}
    gpus = {"gpus": []}  # the stand-in needs no GPU; on a GPU host drop this to get the first num_gpus GPUs
    pace = {"env": {"FAKE_TAO_ITER_SECONDS": "1"}}  # stand-in only (slows it so progress shows); TAO ignores it
    async with Client(server) as client:
        tools = await client.list_tools()
        say(f"server tools: {', '.join(t.name for t in tools.tools)}")
        request = "Train BEVFusion on my KITTI data"
        await call(client, "route_request", {"request": request})
        await call(client, "check_dataset", {"data_root": args.data_root, "action": "dataset_convert"})
        conv = await call(client, "run_action", {"action": "dataset_convert", **common, "wait_seconds": 20})
        if (await wait(client, conv["job_id"]))["state"] != "succeeded":
            return 1
        await call(client, "resolve_automl_policy", {"action": "train", "request": request})
        small = {"automl_max_recommendations": 4, "automl_max_concurrent": 2, "automl_max_epochs": 2,
                 "automl_hyperparameters": ["train.optimizer.lr", "train.optimizer.weight_decay"]}
        review = await call(client, "run_action", {"action": "train", **common, **gpus, **pace, "request": request,
                                                   "overrides": {"batch_size": 1}, "automl_settings": small})
        say("\n(the agent shows this review to the user, who says: go ahead)")
        train = await call(client, "run_action", review["review"]["confirm_call"]["arguments"])
        study = await wait(client, train["job_id"])
        if study["state"] != "succeeded":
            return 1
        await call(client, "resolve_parent_checkpoint", {"parent_job_id": train["job_id"]})
        ev = await call(client, "run_action", {"action": "evaluate", **common, **gpus,
                                               "parent_job_id": train["job_id"], "wait_seconds": 15})
        if (await wait(client, ev["job_id"]))["state"] != "succeeded":
            return 1
        route = await call(client, "route_request", {"request": "run inference with the best model and show me "
                                                     "what it detected", "last_job_id": ev["job_id"]})
        parent = route["steps"][0]["hints"].get("parent_job_id", train["job_id"])
        inf = await call(client, "run_action", {"action": "inference", **common, **gpus,
                                                "parent_job_id": parent, "choose": "best", "wait_seconds": 15})
        done = await wait(client, inf["job_id"])
        if done["state"] != "succeeded":
            return 1
        frame = done["detections"]["top"][0]["frame"] if done["detections"]["top"] else "000008"
        await call(client, "get_job", {"job_id": inf["job_id"], "frames": [frame]})
        await call(client, "get_job", {"job_id": inf["job_id"], "include_pictures": True})
        await call(client, "list_jobs", {"sort": "best_AP11"})
    say("\nPIPELINE OK: convert -> review -> confirm -> AutoML study -> evaluate/inference of its best, all "
        "through the MCP server.")
    if args.record:
        with open(args.record, "w") as fh:
            fh.write("\n".join(LINES) + "\n")
    if args.pictures:
        os.makedirs(args.pictures, exist_ok=True)
        for name, png in PICTURES:
            with open(os.path.join(args.pictures, name), "wb") as fh:
                fh.write(png)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--backend", choices=["docker", "local"], default="docker")
    parser.add_argument("--record", help="also write the transcript to this file")
    parser.add_argument("--pictures", help="write the pictures the tools returned into this folder")
    raise SystemExit(anyio.run(main, parser.parse_args()))

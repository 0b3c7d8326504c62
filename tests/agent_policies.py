"""The suite's user requests (issue 16): 35 scenarios, each a request, what the user told the agent, the
policy the agent follows and the goal the user had. Later scenarios follow up earlier ones ("that run")."""

import json
import shutil
from typing import Any

import anyio
from tao_bevfusion.core.calls import call_text as json_call
from tao_bevfusion.core.calls import parse_call

from tests.agent_scenarios import Agent, Scenario, World
from tests.conftest import copy_sample

FAST = {"FAKE_TAO_ITER_SECONDS": "0.01"}
SLOW = {"FAKE_TAO_ITER_SECONDS": "0.5"}
BUDGET = {"automl_settings": {"automl_max_recommendations": 2, "automl_max_concurrent": 2, "automl_max_epochs": 1,
                              "automl_hyperparameters": ["train.optimizer.lr"]}}


# ---- what the agent does -------------------------------------------------------------------------------------

async def follow(agent: Agent, sc: Scenario, world: World) -> dict[str, Any]:
    """The instructions' flow: route_request, then the suggested calls, polling get_job to the end."""
    return await agent.pursue(sc.request, world.jobs.get(sc.after or ""), extra=sc.user.get("extra"))


async def careful(agent: Agent, sc: Scenario, world: World) -> dict[str, Any]:
    """route_request -> check_dataset for the routed action (as the instructions say) -> launch only if ready."""
    routed = await agent.route(sc.request, world.jobs.get(sc.after or ""))
    action = routed.get("action")
    check = await agent.call("check_dataset", {"data_root": agent.user["data_root"], "action": action},
                             expect_error=bool(sc.user.get("expect_error")))
    if check.get("_error") or not check.get("ok"):
        return check
    return await follow(agent, sc, world)


async def launch_only(agent: Agent, sc: Scenario, world: World) -> dict[str, Any]:
    """Start it and report back at once (the user wants to keep talking while it runs)."""
    routed = await agent.route(sc.request, world.jobs.get(sc.after or ""))
    last = await agent.make(routed["suggested_calls"][0], sc.user.get("extra"))
    if last.get("state") == "review":
        confirm = last["review"]["confirm_call"]
        last = await agent.call(confirm["tool"], confirm["arguments"])
    return last


async def dry_run(agent: Agent, sc: Scenario, world: World) -> dict[str, Any]:
    routed = await agent.route(sc.request, world.jobs.get(sc.after or ""))
    return await agent.make(routed["suggested_calls"][0], {"dry_run": True})


async def refused(agent: Agent, sc: Scenario, world: World) -> dict[str, Any]:
    """A request the server should refuse before launching: the refusal is the expected answer."""
    routed = await agent.route(sc.request, world.jobs.get(sc.after or ""))
    tool, args = parse_call(routed["suggested_calls"][0])
    args.setdefault("data_root", agent.user.get("data_root"))
    args.setdefault("gpus", agent.user.get("gpus"))
    return await agent.call(tool, args, expect_error=True)


async def recover(agent: Agent, sc: Scenario, world: World) -> dict[str, Any]:
    """The container fails; the agent makes the server's first suggested launch-or-build call as written."""
    failed = await follow(agent, sc, world)
    world.results[sc.name + ":failed"] = failed
    agent.user["env"] = FAST  # the fault was the container's; the retry runs clean
    step = next(s for s in failed.get("next_steps", []) if s.startswith(("run_action(", "build_spec(")))
    fixed = await agent.make(step)
    if fixed.get("spec_path") and not fixed.get("_error"):  # run_action launches a build_spec spec_path
        fixed = await agent.make(json_call("run_action", {"action": fixed["action"], "spec_path": fixed["spec_path"],
                                                          "automl_policy": "off"}))
    if fixed.get("job_id"):
        fixed = await agent.until_done(fixed)
    return fixed


async def stop_once_validated(agent: Agent, sc: Scenario, world: World) -> dict[str, Any]:
    """'Start a search, and stop it once a trial has a validation score': poll the study, look at its trials
    (get_job on trials[].job_id), then route the user's stop request and make its call."""
    study = await launch_only(agent, sc, world)
    study_id = study["job_id"]
    for _ in range(120):
        await anyio.sleep(0.5)
        st = await agent.make(study["summary"]["next_steps"][0])
        trial_ids = [t["job_id"] for t in (st.get("study") or {}).get("trials", []) if t.get("job_id")]
        scored = [await agent.call("get_job", {"job_id": t}) for t in trial_ids[:1]]
        if any(r.get("metrics", {}).get("best_AP11") is not None and r.get("state") == "running" for r in scored):
            break
    routed = await agent.route("stop that BEVFusion study, keep what it found", study_id)
    stopped = await agent.make(routed["suggested_calls"][0])
    after = await agent.call("get_job", {"job_id": study_id})
    return {**after, "_cancel": stopped.get("_text", "")}


async def kept_best(agent: Agent, r: dict[str, Any], world: World) -> bool:
    return (r.get("state") == "canceled" and "best_rec.json written" in r["_cancel"]
            and bool((r.get("artifacts") or {}).get("best_rec")) and r["metrics"].get("best_AP11") is not None)


async def stop_or_read(agent: Agent, sc: Scenario, world: World) -> dict[str, Any]:
    """Reading and stopping: route_request's one suggested call, made as written."""
    routed = await agent.route(sc.request, world.jobs.get(sc.after or ""))
    if not routed.get("suggested_calls"):
        return routed
    return await agent.make(routed["suggested_calls"][0])


# ---- what the user wanted --------------------------------------------------------------------------------------

async def _hyper(agent: Agent, job_id: str) -> dict[str, Any]:
    listed = await agent.client.call_tool("list_jobs", {"limit": 100})
    return next(j for j in listed.structured_content["jobs"] if j["job_id"] == job_id).get("hyper") or {}


def succeeded(action: str, **want: Any):
    async def goal(agent: Agent, r: dict[str, Any], world: World) -> bool:
        if r.get("action") != action or r.get("state") != "succeeded":
            return False
        hyper = await _hyper(agent, r["job_id"]) if want else {}
        return all(hyper.get(k) == v for k, v in want.items())
    return goal


def not_ready(code: str):
    async def goal(agent: Agent, r: dict[str, Any], world: World) -> bool:
        return r.get("ok") is False and any(p["code"] == code for p in r["problems"]) and not await _launched(agent)
    return goal


async def _launched(agent: Agent) -> bool:
    return any("run_action" in line and '"job_id": "j' in line for line in agent.log)


def refusal(*words: str):
    async def goal(agent: Agent, r: dict[str, Any], world: World) -> bool:
        return bool(r.get("_error")) and all(w in r["_text"] for w in words)
    return goal


def planned(*needles: str):
    async def goal(agent: Agent, r: dict[str, Any], world: World) -> bool:
        blob = json.dumps(r) + r["_text"]
        return r.get("state") == "planned" and all(n in blob for n in needles) and "docker" in r["_text"]
    return goal


def state_is(state: str, kind: str | None = None):
    async def goal(agent: Agent, r: dict[str, Any], world: World) -> bool:
        return r.get("state") == state and (kind is None or r.get("kind", (r.get("summary") or {}).get("kind"))
                                            == kind)
    return goal


async def study_best(agent: Agent, r: dict[str, Any], world: World) -> bool:
    return r.get("kind") == "study" and r.get("state") == "succeeded" and r["metrics"].get("best_AP11") is not None


async def has_pictures(agent: Agent, r: dict[str, Any], world: World) -> bool:
    return r.get("_images", 0) > 0 and r.get("action") == "inference"


async def reads_map(agent: Agent, r: dict[str, Any], world: World) -> bool:
    return r.get("metrics", {}).get("AP11") is not None and r.get("action") == "evaluate"


async def best_listed(agent: Agent, r: dict[str, Any], world: World) -> bool:
    return bool(r.get("jobs")) and r["jobs"][0].get("best_AP11") is not None


async def running_with_progress(agent: Agent, r: dict[str, Any], world: World) -> bool:
    return r.get("state") == "running" and r.get("elapsed_seconds") is not None and "left" in r["_text"]


async def unsupported(agent: Agent, r: dict[str, Any], world: World) -> bool:
    return r.get("unsupported") is not None and not r.get("suggested_calls")


async def not_ours(agent: Agent, r: dict[str, Any], world: World) -> bool:
    return r.get("matched") is False


async def finetune_names_weights(agent: Agent, r: dict[str, Any], world: World) -> bool:
    lineage = " ".join(r.get("report", []))
    return r.get("state") == "succeeded" and "weights loaded from /" in lineage and "None" not in lineage


async def evaluated_epoch_1(agent: Agent, r: dict[str, Any], world: World) -> bool:
    return r.get("state") == "succeeded" and "epoch_1.pth" in json.dumps(r.get("evaluation") or r.get("artifacts"))


async def teardown_usable(agent: Agent, r: dict[str, Any], world: World) -> bool:
    verdict = r.get("verdict") or {}
    return r.get("state") == "succeeded" and verdict.get("outcome") == "succeeded_with_teardown_crash"


def failed_with(pattern: str):
    async def goal(agent: Agent, r: dict[str, Any], world: World) -> bool:
        steps_ok = all(parse_call(s) for s in r.get("next_steps", []))
        return r.get("state") == "failed" and any(e["pattern"] == pattern for e in r["errors"]) and steps_ok
    return goal


def recovered(pattern: str, action: str = "train"):
    async def goal(agent: Agent, r: dict[str, Any], world: World) -> bool:
        failed = world.results.get(agent_name(world, r) + ":failed", {})
        said = [e for e in failed.get("errors", []) if e["pattern"] == pattern]
        # batch size 1 already: the remedy must not be "lower the batch size to 1-2"
        in_figures = pattern != "cuda_oom" or all("already 1" in e["remedy"] for e in said)
        return r.get("state") == "succeeded" and r.get("action") == action and bool(said) and in_figures
    return goal


def agent_name(world: World, r: dict[str, Any]) -> str:
    return next(k for k, v in world.results.items() if v is r)


async def built(agent: Agent, r: dict[str, Any], world: World) -> bool:
    return bool(r.get("spec_path")) and not r.get("_error")


# ---- the requests ---------------------------------------------------------------------------------------------

def scenarios(world: World) -> list[Scenario]:
    k = {name: str(path) for name, path in world.roots.items()}
    base = {"data_root": k["kitti"], "gpus": [], "env": FAST}

    def u(**extra: Any) -> dict[str, Any]:
        return {**base, **extra}

    return [
        Scenario("convert", "Convert my KITTI dataset for BEVFusion", succeeded("dataset_convert"), u(), quick=True),
        Scenario("prepare", "Prepare my KITTI data for BEVFusion", succeeded("dataset_convert"), u(data_root=k["k2"])),
        Scenario("get_ready", "get my KITTI data ready for BEVFusion", succeeded("dataset_convert"),
                 u(data_root=k["k3"])),
        Scenario("empty_val", "Convert my KITTI dataset for BEVFusion", not_ready("SPLIT_EMPTY"),
                 u(data_root=k["empty_val"]), quick=True),
        Scenario("val_no_person", "plain train BEVFusion for 1 epoch", not_ready("VAL_NO_PERSONS"),
                 u(data_root=k["no_person"])),
        Scenario("bad_root", "Convert my KITTI dataset for BEVFusion", refusal("data_root"),
                 u(data_root=str(world.base / "nowhere"), expect_error=True)),
        Scenario("plain_values", "plain train BEVFusion, 2 epochs, batch size 1",
                 succeeded("train", epochs=2, batch_size=1), u(), quick=True),
        Scenario("lr_value", "train BEVFusion for 1 epoch with learning rate 0.0003, no HPO",
                 succeeded("train", epochs=1, lr=0.0003), u()),
        Scenario("gpu_plan", "plain train BEVFusion, 1 epoch, batch size 1, GPU 0",
                 planned('"devices": ["0"]', 'batch_size", "value": 1'), {"data_root": k["kitti"]}),
        Scenario("two_gpu_plan", "train BEVFusion on 2 GPUs for 1 epoch, no HPO",
                 planned('"devices": ["0", "1"]'), {"data_root": k["kitti"]}),
        Scenario("more_epochs", "continue that run for 2 more epochs", succeeded("train", epochs=4), u(),
                 after="plain_values", quick=True),
        Scenario("resume_too_few", "resume that BEVFusion run with 2 epochs",
                 refusal("num_epochs", "epoch 2"), u(), after="plain_values"),
        Scenario("finetune", "fine-tune BEVFusion from that run for 1 epoch, no HPO", finetune_names_weights, u(),
                 after="plain_values"),
        Scenario("evaluate", "evaluate that BEVFusion run", succeeded("evaluate"), u(), after="plain_values",
                 quick=True),
        Scenario("evaluate_epoch", "evaluate epoch 1 of that BEVFusion run", evaluated_epoch_1, u(),
                 after="plain_values"),
        Scenario("inference", "run BEVFusion inference with the best checkpoint of that run",
                 succeeded("inference"), u(), after="plain_values", quick=True),
        Scenario("show_detections", "show the detections of that BEVFusion inference", has_pictures, u(),
                 after="inference", quick=True),
        Scenario("read_map", "what's the mAP of my last BEVFusion run", reads_map, u(), after="evaluate",
                 quick=True),
        Scenario("which_best", "which BEVFusion run was best", best_listed, u()),
        Scenario("eval_after_eval", "evaluate epoch 2 of that BEVFusion run", succeeded("evaluate"), u(),
                 after="evaluate"),
        Scenario("train_after_convert", "now plain train BEVFusion for 1 epoch, batch size 1",
                 succeeded("train", epochs=1, batch_size=1), u(), after="convert"),
        Scenario("long_run", "plain train BEVFusion for 40 epochs, batch size 1", state_is("running"),
                 u(env=SLOW), quick=True),
        Scenario("how_going", "how is that BEVFusion training going", running_with_progress, u(),
                 after="long_run"),
        Scenario("stop_run", "stop that BEVFusion training", state_is("canceled"), u(), after="long_run",
                 quick=True),
        Scenario("study", "Train BEVFusion on my KITTI data", study_best, u(extra=BUDGET), quick=True),
        Scenario("eval_study", "evaluate the best of that BEVFusion study", succeeded("evaluate"), u(),
                 after="study"),
        Scenario("hpo_start", "start an HPO search for BEVFusion", state_is("running"),
                 u(env=SLOW, extra=BUDGET)),
        Scenario("stop_study", "stop the BEVFusion study", state_is("canceled"), u(), after="hpo_start"),
        Scenario("stop_keeps_best", "search BEVFusion hyperparameters with batch size 1", kept_best,
                 u(env=SLOW, extra={"automl_settings": {**BUDGET["automl_settings"], "automl_max_epochs": 8}}),
                 quick=True),
        Scenario("export", "export my BEVFusion model to TensorRT", unsupported, u()),
        Scenario("other_model", "train a YOLO detector on my images", not_ours, u()),
        Scenario("oom", "plain train BEVFusion for 2 epochs, batch size 1", recovered("cuda_oom"),
                 u(env={**FAST, "FAKE_TAO_FAULT": "fail_at_iter"}), quick=True),
        Scenario("sigkill", "plain train BEVFusion for 2 epochs", recovered("worker_sigkill"),
                 u(env={**FAST, "FAKE_TAO_FAULT": "worker_sigkill"})),
        Scenario("segv", "evaluate that BEVFusion run", teardown_usable,
                 u(env={**FAST, "FAKE_TAO_FAULT": "post_eval_segv"}), after="plain_values"),
        Scenario("wrong_image", "evaluate that BEVFusion run", failed_with("wrong_image_no_mmdet3d"),
                 u(env={**FAST, "FAKE_TAO_FAULT": "no_mmdet3d"}), after="plain_values"),
    ]


POLICIES = {"convert": careful, "prepare": careful, "get_ready": careful, "empty_val": careful,
            "val_no_person": careful, "bad_root": careful, "gpu_plan": dry_run, "two_gpu_plan": dry_run,
            "resume_too_few": refused, "show_detections": stop_or_read, "read_map": stop_or_read,
            "which_best": stop_or_read, "how_going": stop_or_read, "stop_run": stop_or_read,
            "stop_study": stop_or_read, "export": stop_or_read, "other_model": stop_or_read,
            "long_run": launch_only, "stop_keeps_best": stop_once_validated, "hpo_start": launch_only,
            "oom": recover, "sigkill": recover}


def policy_for(name: str):
    return POLICIES.get(name, follow)


def make_world(world: World) -> None:
    """KITTI copies: raw ones for convert, one with an empty val list, one whose val frame has no person."""
    for name in ("kitti", "k2", "k3", "empty_val", "no_person"):
        world.roots[name] = copy_sample(world.base / name)
    (world.roots["empty_val"] / "ImageSets" / "val.txt").write_text("")


def after_convert(world: World) -> None:
    """The no-person copy is the converted root with val.txt pointing at a frame of cars only."""
    dest = world.roots["no_person"]
    shutil.rmtree(dest)
    shutil.copytree(world.roots["kitti"], dest)
    (dest / "ImageSets" / "val.txt").write_text("000008\n")


async def run_suite(world: World, quick: bool = False, only: list[str] | None = None) -> list:
    """Every scenario in order (or the quick subset plus what it follows up), through the real MCP client."""
    from mcp import Client
    from tao_bevfusion.server import mcp

    from tests.agent_scenarios import run_one

    make_world(world)
    chosen = scenarios(world)
    if quick or only:
        keep = {sc.name for sc in chosen if (sc.quick if quick else sc.name in (only or []))}
        keep |= {sc.after for sc in chosen if sc.name in keep and sc.after}
        chosen = [sc for sc in chosen if sc.name in keep]
    outcomes = []
    async with Client(mcp) as client:
        for sc in chosen:
            outcomes.append(await run_one(client, sc, world, policy_for(sc.name)))
            if sc.name == "convert":
                after_convert(world)
    return outcomes

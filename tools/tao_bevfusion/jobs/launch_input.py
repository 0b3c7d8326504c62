"""run_action's input (one run: the spec or build_spec's inputs, where and how it runs, its safety limits) and
what a launch answers. The AutoML fields are plain data here; the tool layer acts on them."""

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, SerializeAsAny, StringConstraints

from tao_bevfusion.backends.base import Plan
from tao_bevfusion.backends.registry import PublishedOptions
from tao_bevfusion.core.safety import SafetyInput
from tao_bevfusion.jobs import plans
from tao_bevfusion.jobs.projection import CostProjection
from tao_bevfusion.jobs.wait import MAX_WAIT
from tao_bevfusion.specbuild.build import BuildSpecInput

GpuId = Annotated[
    str, StringConstraints(pattern=r"^(\d{1,3}|GPU-[0-9a-fA-F-]{8,64}|MIG-[0-9A-Za-z/-]{1,80})$")
]


def _each_once(gpus: list[str]) -> list[str]:
    if len(set(gpus)) != len(gpus):
        raise ValueError("gpus names a GPU more than once; list each host GPU once")
    return gpus


GpuList = Annotated[
    list[GpuId], AfterValidator(_each_once)
]  # in the type: the MCP argument model checks it too


class RunActionInput(BuildSpecInput, SafetyInput):
    """run_action: launch an action from a spec_path written by build_spec, or from build_spec's inputs."""

    data_root: str | None = Field(
        default=None,
        max_length=4096,
        description=(  # type: ignore[assignment]
            "Absolute host path of the KITTI root (needed unless spec_path is given)."
        ),
    )
    spec_path: str | None = Field(
        default=None, max_length=4096, description="A spec written by build_spec."
    )
    gpus: GpuList | None = Field(
        default=None,
        max_length=16,
        description=(
            "HOST GPU ids for the job, e.g. ['2','3'] (or GPU-/MIG- UUIDs); default the first num_gpus; "
            "[] = no GPU request."
        ),
    )
    env: dict[str, str] | None = Field(
        default=None,
        description=(
            "Extra non-secret job environment (at most 32 variables; loader, device, distributed and secret-looking "
            "names are refused)."
        ),
    )
    image: str | None = Field(
        default=None, max_length=512, description="Container image (default TAO 5.5)."
    )
    num_nodes: int = Field(
        default=1,
        ge=1,
        le=64,
        description=("Nodes for this job (multi-node needs a backend that supports it)."),
    )
    backend_options: Annotated[dict[str, Any] | None, PublishedOptions] = Field(
        default=None,
        description=("Options of the chosen backend only (the schema lists each backend's)."),
    )
    automl_policy: Literal["on", "off"] | None = Field(
        default=None,
        description=(
            "train only: 'on' (the default: a hyperparameter study, reviewed first) or 'off' (one plain train job)."
        ),
    )
    automl_settings: dict[str, Any] | None = Field(
        default=None,
        description=(
            "train with AutoML on: the study's settings, skill-bank names: automl_algorithm (bayesian|random|asha|"
            "hyperband), automl_max_recommendations (trials, baseline included), automl_max_concurrent, "
            "automl_max_epochs, automl_reduction_factor, automl_hyperparameters (dotted keys), custom_param_ranges "
            "({key: {min, max} | {choices}}). The review shows every default."
        ),
    )
    confirm: bool = Field(
        default=False,
        description=(
            "train with AutoML on: start the reviewed study (the same arguments as the review call, plus "
            "confirm=true). Without it, train returns state 'review' and launches nothing."
        ),
    )
    request: str | None = Field(
        default=None,
        max_length=2000,
        description="The user's words, for the AutoML policy (e.g. 'plain training, no HPO').",
    )
    dry_run: bool = Field(
        default=False,
        description=(
            "Return the exact launch plan and preflight and a plan_id; launch and record nothing."
        ),
    )
    plan_id: str | None = Field(
        default=None,
        pattern=plans.PLAN_ID,
        description=(
            "Submit a dry run's plan exactly as shown (the same spec and request), once. Pass nothing else "
            "(wait_seconds aside)."
        ),
    )
    wait_seconds: int = Field(
        default=0, ge=0, le=MAX_WAIT, description="Wait up to this long for progress."
    )
    tracking: dict[str, Any] | None = Field(
        default=None,
        description=(
            "Mirror this job (or study) to an experiment tracker: {'mlflow': '<tracking URI>', 'experiment': "
            "'<name>', 'register_best': false, 'model_name': '<registered model>'}. Default: the "
            "TAO_BEVFUSION_MLFLOW_URI environment (and TAO_BEVFUSION_MLFLOW_EXPERIMENT); {} turns it off. "
            "Credentials come only from MLflow's own environment variables. A tracker that is down or refuses "
            "never stops the job: get_job shows a warning."
        ),
    )


class LaunchResult(BaseModel):
    job_id: str | None = Field(
        description="Null when nothing was launched (dry run, AutoML review)."
    )
    plan_id: str | None = Field(
        default=None,
        description=(
            "Dry run: submit exactly this plan with run_action(plan_id=...) (within a day, once)."
        ),
    )
    state: str = Field(
        description="pending/running/succeeded/... or 'planned' (dry run) / 'review' (AutoML "
        "study waiting for confirm=true)."
    )
    plan: SerializeAsAny[Plan] | None = Field(
        default=None,
        description=(
            "The exact launch the backend makes (the dry run when dry_run=true), with its preflight checks; "
            "each backend adds its own request (docker: run_kwargs)."
        ),
    )
    message: str = Field(
        default="", description="What happened, and the next call when nothing launched."
    )
    warnings: list[str] = Field(
        default_factory=list, description="Build, dataset and preflight warnings (capped)."
    )
    overrides: list[dict[str, Any]] = Field(
        default_factory=list,
        description=("The user's overrides as they landed in the spec launched (path, value)."),
    )
    lineage: str | None = Field(
        default=None,
        description=(
            "train: resume (checkpoint, epoch, same run) or fine-tune (weights loaded, optimizer fresh)."
        ),
    )
    projection: CostProjection | None = Field(
        default=None,
        description=(
            "train: projected GPU-hours (measured epoch times of earlier runs of the same data and settings when "
            "there are any, else an estimate; `source` says which)."
        ),
    )

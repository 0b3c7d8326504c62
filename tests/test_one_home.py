"""Facts that had several homes, four of which disagreed, now read from their one home: which KITTI labels
count as a person, the label that finds a job's container, where a Kubernetes job is looked for, and the
environment read through Settings."""

from pathlib import Path

import pytest
from tao_bevfusion.backends.base import LaunchRequest
from tao_bevfusion.backends.docker import DockerBackend
from tao_bevfusion.backends.kubernetes import backend as k8s
from tao_bevfusion.backends.slurm.backend import SlurmBackend
from tao_bevfusion.core import layout
from tao_bevfusion.core.settings import Settings
from tao_bevfusion.core.states import ACTIVE_STATES, TERMINAL_STATES, JobState, Outcome
from tao_bevfusion.kitti import classes, frames, preflight
from tao_bevfusion.kitti.preflight import check_dataset

from tests.conftest import copy_sample
from tests.k8sfake import Cluster

JOB = "j0123456789abcdef"


def _request(tmp_path: Path) -> LaunchRequest:
    return LaunchRequest(job_id=JOB, action="train", subtask="train", spec_host_path=str(tmp_path / "s.yaml"),
                         spec_container_path="/specs/s.yaml", results_dir=str(tmp_path),
                         results_container_dir="/results/r", home_dir="/results/r/.home",
                         cache_dir="/results/r/.cache", mounts=[], image="img:1", gpus=[], gpus_per_node=1,
                         log_path=str(tmp_path / "job.log"))


def test_person_labels_are_the_same_for_the_preflight_and_the_pictures(workspace: Path):
    assert preflight.PERSON_CLASSES is classes.PERSON_CLASSES is frames.PERSON_CLASSES
    assert {"Pedestrian"} == classes.PERSON_CLASSES  # the 5.5 converter maps only Pedestrian to person
    root = copy_sample(workspace / "kitti")
    label_dir = root / "training" / "label_2"
    for label in label_dir.iterdir():  # spelled the way the converter drops it
        label.write_text(label.read_text().replace("Pedestrian ", "person "))
    report = check_dataset(str(root), "dataset_convert")
    codes = {p.code for p in report.problems}
    assert "LABEL_UNKNOWN_CLASS" in codes and "NO_PERSON_LABELS" in codes and not report.ok


def test_the_job_label_has_the_same_value_on_docker_and_slurm(tmp_path: Path):
    docker_plan = DockerBackend().plan(_request(tmp_path))
    assert docker_plan.run_kwargs["labels"][layout.LABEL_JOB] == JOB
    assert docker_plan.run_kwargs["name"] == layout.job_name(JOB)
    slurm_plan = SlurmBackend().plan(_request(tmp_path).model_copy(update={"options": {"runtime": "docker"}}))
    assert f"--label {layout.LABEL_JOB}={JOB} " in slurm_plan.script


def test_a_kubernetes_job_is_found_in_the_namespace_it_was_submitted_to(monkeypatch: pytest.MonkeyPatch):
    cluster = Cluster(namespaces={"default", "perception"}, claims={})
    monkeypatch.setattr(k8s, "API_FACTORY", cluster.api)
    cluster.create("Job", "perception", {"metadata": {"name": layout.job_name(JOB),
                                                      "labels": {layout.K8S_JOB_LABEL: layout.job_name(JOB)}}})
    backend = k8s.KubernetesBackend()
    assert backend.find(JOB) is None  # the site default namespace ("default") does not hold it
    found = backend.find(JOB, {"namespace": "perception", "context": None})
    assert found is not None and ":perception:" in found


def test_backend_site_defaults_and_other_variables_are_read_by_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TAO_BEVFUSION_K8S_NAMESPACE", "team-a")
    monkeypatch.setenv("TAO_BEVFUSION_SLURM_PARTITION", "gpu")
    monkeypatch.setenv("TAO_BEVFUSION_AUTOML_SEED", "7")
    s = Settings.from_env()
    assert s.backend_defaults["kubernetes"] == {"namespace": "team-a"}
    assert s.backend_defaults["slurm"] == {"partition": "gpu"} and s.automl_seed == 7
    assert k8s.KubernetesOptions.from_user({}, s).namespace == "team-a"
    assert k8s.KubernetesOptions.from_user({"namespace": "mine"}, s).namespace == "mine"


def test_states_know_what_is_terminal():
    assert {s for s in JobState if s.is_terminal} == TERMINAL_STATES
    assert {JobState.PENDING, JobState.RUNNING} == ACTIVE_STATES
    assert Outcome.PRUNED.job_state is JobState.CANCELED and Outcome.LOST.job_state is JobState.UNKNOWN
    assert Outcome.SUCCEEDED_WITH_TEARDOWN_CRASH.succeeded and not Outcome.KILLED.succeeded

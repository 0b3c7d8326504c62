"""Every on-disk name the plugin and the 5.5 container agree on, in one place.

Container side (docs/container-contract.md §3.4, §4.2, §5): convert writes `kitti_person_infos_<split>.pkl`
and `<split dir>/velodyne_reduced/` into the dataset root and its status.json there; the other actions
write `<results_dir>/<action>/status.json`; train writes `epoch_<N>.pth` and a `last_checkpoint` pointer.
Plugin side: `<state dir>/jobs/<job id>/` holds the job's combined log and backend bookkeeping.
"""

import os
import re
from pathlib import Path

from tao_bevfusion.core.actions import ACTION_SPECS

EPOCH_FILE = re.compile(
    r"^epoch_(\d+)\.pth$"
)  # 1-based, padded or not; nothing else counts (§10.1)
LAST_CHECKPOINT = "last_checkpoint"
STATUS_FILE = "status.json"
REDUCED_DIR = "velodyne_reduced"
INFO_SPLITS = {
    "training": ("train", "val", "trainval"),
    "validation": ("val",),
    "testing": ("test",),
}
SPEC_SPLIT_PICKLES = (("train_dataset", "train"), ("val_dataset", "val"), ("test_dataset", "val"))
PREDICTIONS_DIR = ("inference", "preds")

# Container mount points (backends that map paths into a container; docs/container-contract.md §8).
DATA_MOUNT = "/data"  # the dataset root
RESULTS_MOUNT = "/results"  # each results folder at /results/<name>
SPECS_MOUNT = "/specs"  # the spec's folder, read-only
INPUT_MOUNTS = {"model": "/inputs/model", "weights": "/inputs/weights", "swin": "/inputs/swin"}
SCRATCH_MOUNT = "/tao-scratch"  # convert's HOME and caches, outside the dataset root

# Names a backend gives a job: docker labels, the Slurm job and container, Kubernetes objects.
PLUGIN = "tao-bevfusion"
LABEL_PLUGIN = "tao-bevfusion.plugin"  # value: PLUGIN
LABEL_JOB = "tao-bevfusion.job"  # value: the job id, on every backend
LABEL_ACTION = "tao-bevfusion.action"
K8S_JOB_LABEL = "tao-bevfusion/job"  # value: job_name(job id)


def job_name(job_id: str) -> str:
    """The name of a job's container, Slurm job and Kubernetes objects."""
    return f"tao-{job_id}"


# The state dir (TAO_BEVFUSION_HOME): private to the user, 0700.
JOBS_DB = "jobs.db"
RUNS_DIR = "runs"  # default results folders (the one part of the state dir a job may write)
SPECS_DIR = "specs"  # specs build_spec writes (mounted read-only into their job)
PLANS_DIR = "plans"  # dry-run plans, submittable by plan_id for a day
SIDECAR_KEY = "sidecar.key"  # the HMAC key of launch records: never under runs/ or specs/


def info_pickle_name(split: str) -> str:
    return f"kitti_person_infos_{split}.pkl"


def info_pickle(root: Path, split: str) -> Path:
    return root / info_pickle_name(split)


def reduced_dir(root: Path, convert_mode: str = "training") -> Path:
    return root / ("testing" if convert_mode == "testing" else "training") / REDUCED_DIR


def epoch_number(name: str) -> int | None:
    """The epoch of a checkpoint file name, or None when the name is not exactly epoch_<N>.pth."""
    m = EPOCH_FILE.match(name)
    return int(m.group(1)) if m else None


TRAIN_DIR = "train"  # train's work dir under its results folder: checkpoints, status.json


def train_dir(results_dir: Path) -> Path:
    return results_dir / TRAIN_DIR


def epoch_checkpoints(work: Path) -> dict[int, Path]:
    """{epoch: file} of the regular epoch_<N>.pth files directly in `work`, by epoch."""
    found: dict[int, Path] = {}
    if not work.is_dir():
        return found
    for entry in work.iterdir():
        epoch = epoch_number(entry.name)
        if epoch is not None and entry.is_file():
            found[epoch] = entry
    return dict(sorted(found.items()))


def status_path(action: str, results_dir: Path, data_root: Path) -> Path:
    """Where the 5.5 action writes status.json (convert: the data root; the others: <results>/<action>/)."""
    if ACTION_SPECS[action].writes_data_root:
        return data_root / STATUS_FILE
    return results_dir / action / STATUS_FILE


def predictions_dir(results_dir: Path) -> Path:
    return results_dir.joinpath(*PREDICTIONS_DIR)


def log_lock(log: Path) -> Path:
    """The lock a backend holds while it appends to a job's log."""
    return log.with_suffix(".lock")


def log_sync_state(log: Path) -> Path:
    """Where the docker backend remembers how far it has copied the container's log."""
    return log.with_suffix(".ts")


def exit_record(log: Path) -> Path:
    """The local backend's end record of a job (beside its log)."""
    return log.with_name("exit.json")


class JobFiles:
    """The plugin's own files of one job under the state dir."""

    def __init__(self, home: Path, job_id: str) -> None:
        self.dir = home / "jobs" / job_id

    @property
    def log(self) -> Path:
        return self.dir / "job.log"

    @property
    def log_lock(self) -> Path:
        return log_lock(self.log)

    @property
    def log_sync_state(self) -> Path:
        return log_sync_state(self.log)

    @property
    def exit_record(self) -> Path:
        return exit_record(self.log)

    @property
    def scratch(self) -> Path:
        return self.dir / "scratch"


class StudyFiles:
    """The files of an AutoML study in its folder (<state dir>/runs/study-<id> by default)."""

    PLAN = "study.json"  # the study's plan (0600: it may carry the model key)
    SNAPSHOT = "trials.json"  # the driver's view of the trials, read by get_job(study)
    REVIEW = "review.json"
    BEST_REC = "best_rec.json"  # the skill bank's result record of the best trial
    OPTUNA_DB = "study.db"
    DRIVER_LOCK = "driver.lock"
    DRIVER_INFO = "driver.json"
    MILESTONES = "milestones.json"  # the webhook milestones already posted (best trial, half done)

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __truediv__(self, name: str) -> Path:
        return self.folder / name

    def trial_dir(self, number: int) -> Path:
        return self.folder / f"trial_{number:03d}"


def study_folder(home: Path, study_id: str) -> Path:
    return home / RUNS_DIR / f"study-{study_id}"


def epoch_file(epoch: int) -> str:
    return f"epoch_{epoch}.pth"


def plan_record(home: Path, plan_id: str) -> Path:
    return home / PLANS_DIR / f"{plan_id}.json"


def launch_sidecar(spec_path: Path) -> Path:
    """The launch record build_spec writes beside a spec (mounts, results dir, hash)."""
    return spec_path.with_name(spec_path.stem + ".launch.json")


def private_dirs(path: Path) -> Path:
    """Create `path` and its missing parents private to the user (0700): job folders and spec folders hold
    logs and keyed specs that other local users must not read."""
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        folder.mkdir(mode=0o700, exist_ok=True)
    return path


def secure_state_dir(home: Path) -> Path:
    """The state dir (jobs.db, the signing key, every spec) exists and is 0700; an existing one of ours that
    others can read or enter is tightened (it holds keys)."""
    private_dirs(home)
    info = home.stat()
    if info.st_mode & 0o077 and info.st_uid == os.geteuid():
        os.chmod(home, 0o700)
    return home

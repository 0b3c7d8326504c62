"""The Optuna study behind a built-in AutoML run: storage, sampler/pruner, ask/tell, pruning, best_rec.json.

One SQLite file per study folder (`<folder>/study.db`, WAL), its schema created once under an fcntl lock
(two processes opening a fresh file race on `create_all`). The study's configuration (settings, space,
budget, seed) is stored in the study's user attrs, so any process rebuilds the same sampler and pruner
(Optuna stores neither). Trials are driven by ask/tell only: heartbeats do not work with ask/tell, so
whether a trial is alive is decided by the job engine (its container), not by Optuna.
"""

import fcntl
import json
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.pruners import (
    BasePruner,
    HyperbandPruner,
    MedianPruner,
    NopPruner,
    SuccessiveHalvingPruner,
)
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import FrozenTrial, TrialState
from pydantic import BaseModel, Field

from tao_bevfusion.core.fsio import atomic_write
from tao_bevfusion.core.layout import StudyFiles
from tao_bevfusion.studies import sampler_choice
from tao_bevfusion.studies.review import StudyReview, review
from tao_bevfusion.studies.settings import AutoMLSettings
from tao_bevfusion.studies.space import SearchSpace

__all__ = [
    "StudyConfig",
    "StudyReview",
    "TrialTicket",
    "ask_next",
    "best_rec",
    "best_trial",
    "create_study",
    "finish",
    "load_study",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "report",
    "requeue_baseline",
    "review",
    "set_job",
    "write_best_rec",
]

DB_NAME = StudyFiles.OPTUNA_DB
LOCK_NAME = ".study.lock"
CONFIG_ATTR = "tao_bevfusion_config"
BASELINE_ATTR = "baseline"
DUPLICATE_ATTR = "duplicate"
METRIC = "AP11"
# A restarted process must not replay the sampler's random stream (a fixed seed re-proposed trial 1 as
# trial 6 in the research): each process offsets the seed by the trials already in storage.
SEED_STRIDE = 1_000_003
TrialOutcome = Literal[
    "complete", "pruned", "failed"
]  # an Optuna trial's end (not a job's Outcome)

optuna.logging.set_verbosity(logging.WARNING)


class StudyConfig(BaseModel):
    """What a study was created with; stored in the study so every process rebuilds it identically."""

    settings: AutoMLSettings
    space: SearchSpace
    trials: int = Field(description="Trials in total, the baseline included.")
    validation_interval: int = 1
    seed: int | None = Field(
        default=None, description="Base seed; null = fresh randomness per process."
    )
    median_pruning: bool = Field(
        default=False, description="bayesian only: MedianPruner after E/3 epochs."
    )
    scaled_lr: float | None = Field(
        default=None,
        description=(
            "The linearly scaled learning rate, enqueued as a start-up trial after the baseline (when lr is searched)."
        ),
    )


class TrialTicket(BaseModel):
    """A trial to launch: its number and the dotted overrides it applies."""

    number: int
    params: dict[str, Any]
    baseline: bool


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _has_schema(db: Path) -> bool:
    if not db.exists():
        return False
    with closing(sqlite3.connect(db, timeout=30)) as con:
        row = con.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone()
    return row is not None


def open_storage(folder: Path) -> optuna.storages.RDBStorage:
    """The study's RDBStorage; the first opener creates the schema (WAL) while the others wait on the lock."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / DB_NAME
    with _flock(folder / LOCK_NAME):
        fresh = not _has_schema(db)
        if fresh:
            with closing(sqlite3.connect(db, timeout=30)) as con:
                con.execute("PRAGMA journal_mode=WAL")  # persists in the file
        return optuna.storages.RDBStorage(
            f"sqlite:///{db}",
            engine_kwargs={"connect_args": {"timeout": 30}},
            skip_table_creation=not fresh,
        )


def make_sampler(algorithm: str, *, seed: int | None, n_startup: int) -> BaseSampler:
    if algorithm == "bayesian":
        return TPESampler(n_startup_trials=n_startup, seed=seed)
    if algorithm in ("random", "asha", "hyperband"):
        return RandomSampler(seed=seed)
    raise ValueError(f"unknown automl_algorithm {algorithm!r}")


def make_pruner(
    settings: AutoMLSettings, *, validation_interval: int = 1, median_pruning: bool = False
) -> BasePruner:
    """asha/hyperband with an explicit min_resource: "auto" cannot prune before some trial has completed."""
    algorithm, epochs, eta = (
        settings.automl_algorithm,
        settings.automl_max_epochs,
        settings.automl_reduction_factor,
    )
    r = settings.min_resource(validation_interval)
    if algorithm == "asha":
        return SuccessiveHalvingPruner(min_resource=r, reduction_factor=eta)
    if algorithm == "hyperband":
        return HyperbandPruner(min_resource=r, max_resource=epochs, reduction_factor=eta)
    if algorithm == "bayesian" and median_pruning:
        return MedianPruner(n_startup_trials=3, n_warmup_steps=max(epochs // 3, 1))
    return NopPruner()


def distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    out: dict[str, BaseDistribution] = {}
    for p in space.params:
        if p.kind == "categorical":
            out[p.key] = CategoricalDistribution(list(p.choices or []))
        elif p.kind == "int":
            assert p.low is not None and p.high is not None
            out[p.key] = IntDistribution(int(p.low), int(p.high), log=p.log)
        else:
            assert p.low is not None and p.high is not None
            out[p.key] = FloatDistribution(p.low, p.high, log=p.log)
    return out


def _build(storage: optuna.storages.RDBStorage, name: str, cfg: StudyConfig) -> optuna.Study:
    n_existing = len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
    seed = None if cfg.seed is None else cfg.seed + SEED_STRIDE * n_existing
    sampler = sampler_choice.build(
        sampler_choice.choose(cfg.settings.automl_algorithm, cfg.space, cfg.trials), seed
    )
    pruner = make_pruner(
        cfg.settings, validation_interval=cfg.validation_interval, median_pruning=cfg.median_pruning
    )
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def create_study(folder: Path, name: str, cfg: StudyConfig) -> optuna.Study:
    """Create the study (or load it when it exists) and enqueue the baseline as its first trial."""
    storage = open_storage(folder)
    with _flock(folder / LOCK_NAME):
        study = optuna.create_study(
            study_name=name, storage=storage, direction="maximize", load_if_exists=True
        )
        if CONFIG_ATTR not in study.user_attrs:
            study.set_user_attr(CONFIG_ATTR, cfg.model_dump(mode="json"))
            study.enqueue_trial(cfg.space.baseline(), user_attrs={BASELINE_ATTR: True})
            scaled = sampler_choice.scaled_lr_trial(cfg.space, cfg.scaled_lr)
            if scaled is not None:
                study.enqueue_trial(scaled, user_attrs={"scaled_lr": True})
    return _build(storage, name, study_config(study))


def load_study(folder: Path, name: str) -> optuna.Study:
    """Load an existing study with its sampler and pruner rebuilt from the stored configuration."""
    storage = open_storage(folder)
    plain = optuna.load_study(study_name=name, storage=storage)
    return _build(storage, name, study_config(plain))


def study_config(study: optuna.Study) -> StudyConfig:
    return StudyConfig.model_validate(study.user_attrs[CONFIG_ATTR])


def _counted(t: FrozenTrial) -> bool:
    return t.state != TrialState.WAITING and not t.user_attrs.get(DUPLICATE_ATTR)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def ask_next(study: optuna.Study, cfg: StudyConfig | None = None) -> TrialTicket | None:
    """The next trial (the baseline first, while it waits), or None when the budget is used up. A proposal
    identical to an earlier trial in a space with a continuous key can only be a replayed random stream;
    it is marked and replaced (not counted in the budget)."""
    cfg = cfg or study_config(study)
    previous = study.get_trials(deepcopy=False)
    if sum(1 for t in previous if _counted(t)) >= cfg.trials:
        return None
    continuous = any(p.kind != "categorical" for p in cfg.space.params)
    seen = [t.params for t in previous if _counted(t) and not t.user_attrs.get(BASELINE_ATTR)]
    dists = distributions(cfg.space)
    model = study.sampler
    try:
        for _ in range(3):
            trial = study.ask(dists)
            baseline = bool(trial.user_attrs.get(BASELINE_ATTR))
            if baseline or not continuous or not any(_same(trial.params, s) for s in seen):
                break
            trial.set_user_attr(DUPLICATE_ATTR, True)
            study.tell(trial, state=TrialState.FAIL)
            # A model (GPSampler) repeats its proposal: the retry is a fresh random point instead.
            study.sampler = RandomSampler()
    finally:
        study.sampler = model
    return TrialTicket(number=trial.number, params=dict(trial.params), baseline=baseline)


def _frozen(study: optuna.Study, number: int) -> FrozenTrial:
    # By id, not study.trials: reading every trial on each report would grow with the study.
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return storage.get_trial(trial_id)


def set_job(study: optuna.Study, number: int, job_id: str, **attrs: Any) -> None:
    """Record the product job that runs trial `number` (and any other attrs, e.g. results_dir)."""
    live = optuna.Trial(study, _frozen(study, number)._trial_id)
    live.set_user_attr("job_id", job_id)
    for key, value in attrs.items():
        live.set_user_attr(key, value)


def report(study: optuna.Study, number: int, epoch: int, value: float) -> bool:
    """Report a validation AP11 at `epoch`; True when the pruner says stop. Epochs already reported (a
    resumed trial repeats them) and finished trials are ignored."""
    frozen = _frozen(study, number)
    if frozen.state != TrialState.RUNNING:
        return False
    live = optuna.Trial(study, frozen._trial_id)
    if epoch not in frozen.intermediate_values:
        live.report(float(value), step=int(epoch))
    return bool(live.should_prune())


def finish(
    study: optuna.Study, number: int, outcome: TrialOutcome, *, reason: str | None = None
) -> FrozenTrial:
    """End trial `number`. Its value is the BEST reported AP11 (not the last), with the epoch it came from;
    a trial that completed without any validation is recorded as failed."""
    frozen = _frozen(study, number)
    if frozen.state.is_finished():
        return frozen
    live = optuna.Trial(study, frozen._trial_id)
    curve = frozen.intermediate_values
    best_epoch = max(curve, key=lambda e: (curve[e], -e)) if curve else None
    if best_epoch is not None:
        live.set_user_attr("best_epoch", best_epoch)
        live.set_user_attr("best_value", curve[best_epoch])
    if reason:
        live.set_user_attr("reason", reason)
    if outcome == "complete" and best_epoch is not None:
        return study.tell(live, curve[best_epoch], skip_if_finished=True)
    if outcome == "pruned":
        return study.tell(live, state=TrialState.PRUNED, skip_if_finished=True)
    if outcome == "complete":
        live.set_user_attr("reason", reason or "completed without a validation AP11")
    return study.tell(live, state=TrialState.FAIL, skip_if_finished=True)


def requeue_baseline(study: optuna.Study) -> bool:
    """Enqueue the baseline again when its only runs were lost (container vanished, not a real failure)."""
    runs = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(BASELINE_ATTR)]
    if runs and all(t.state == TrialState.FAIL and t.user_attrs.get("lost") for t in runs):
        cfg = study_config(study)
        study.enqueue_trial(cfg.space.baseline(), user_attrs={BASELINE_ATTR: True})
        return True
    return False


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best COMPLETE trial (full budget); ties go to the earlier trial."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def _nested(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def best_rec(study: optuna.Study, *, experiment_id: str, checkpoint_uri: str) -> dict[str, Any]:
    """best_rec.json in the skill bank's shape (schema_version 1):

        {schema_version: 1, experiment_id, metric_name: "AP11", direction: "maximize",
         best: {rec_id: "trial_<n>", score, specs: <searched params, nested, no budget keys>,
                observed_budget: {num_epochs}, checkpoint_uri: <exact epoch_<E>.pth>, checkpoint_epoch, job_id},
         all_recs: [{rec_id, score (null unless complete), job_id?}]}

    `checkpoint_uri` is the best trial's exact best-epoch checkpoint, resolved by the caller (never latest)."""
    best = best_trial(study)
    if best is None:
        raise ValueError("no trial completed: there is no best recommendation yet")
    cfg = study_config(study)
    all_recs = []
    for t in study.get_trials(deepcopy=False):
        if not _counted(t):
            continue
        rec: dict[str, Any] = {
            "rec_id": f"trial_{t.number}",
            "score": t.value if t.state == TrialState.COMPLETE else None,
        }
        if t.user_attrs.get("job_id"):
            rec["job_id"] = t.user_attrs["job_id"]
        all_recs.append(rec)
    best_out: dict[str, Any] = {
        "rec_id": f"trial_{best.number}",
        "score": best.value,
        "specs": _nested(best.params),
        "observed_budget": {"num_epochs": cfg.settings.automl_max_epochs},
        "checkpoint_uri": checkpoint_uri,
    }
    if best.user_attrs.get("best_epoch") is not None:
        best_out["checkpoint_epoch"] = int(best.user_attrs["best_epoch"])
    if best.user_attrs.get("job_id"):
        best_out["job_id"] = best.user_attrs["job_id"]
    return {
        "schema_version": 1,
        "experiment_id": experiment_id,
        "metric_name": METRIC,
        "direction": "maximize",
        "best": best_out,
        "all_recs": all_recs,
    }


def write_best_rec(folder: Path, rec: dict[str, Any]) -> Path:
    """Write `<folder>/best_rec.json` atomically."""
    path = folder / StudyFiles.BEST_REC
    atomic_write(path, json.dumps(rec, indent=2) + "\n")
    return path

"""The AutoML core without the job engine: settings, space from the schema, the Optuna study, review,
best_rec.json, failure classification, and a real in-process search on the stand-in's AP formula."""

import json
import math
import multiprocessing
import os
from pathlib import Path
from typing import Any

import jsonschema
import optuna
import pytest
from tao_bevfusion.core.errors import InputError
from tao_bevfusion.studies import study as S
from tao_bevfusion.studies.failures import classify, consecutive_failures, should_stop
from tao_bevfusion.studies.review import expected_epochs, review
from tao_bevfusion.studies.settings import AutoMLSettings, parse_settings
from tao_bevfusion.studies.space import BATCH_KEY, LR_KEY, WD_KEY, batch_choices, build_space, load_train_schema

from tests.standin.bevfusion_standin import BEST_LR, BEST_WD, val_ap


def _space(raw: dict[str, Any] | None = None, **kw: Any) -> Any:
    return build_space(parse_settings(raw), **kw)


def _errors(raw: dict[str, Any]) -> str:
    with pytest.raises(InputError) as info:
        _space(raw)
    return str(info.value)


def _cfg(raw: dict[str, Any], seed: int | None = 1, **kw: Any) -> S.StudyConfig:
    settings = parse_settings(raw)
    return S.StudyConfig(settings=settings, space=build_space(settings), trials=settings.trials(1), seed=seed, **kw)


# ------------------------------------------------------------------ settings and space
def test_default_space_comes_from_the_schema() -> None:
    schema = load_train_schema()
    space = _space()
    assert space.keys() == schema["automl_default_parameters"]
    by_key = {p.key: p for p in space.params}
    assert (by_key[LR_KEY].low, by_key[LR_KEY].high, by_key[LR_KEY].log) == (5e-5, 1e-3, True)
    assert (by_key[WD_KEY].low, by_key[WD_KEY].high, by_key[WD_KEY].log) == (1e-3, 1e-1, True)
    assert by_key[BATCH_KEY].choices == [1, 2, 4]
    assert space.baseline() == {BATCH_KEY: 4, LR_KEY: 2e-4, WD_KEY: 0.01}  # the schema's defaults
    assert all(p.why and p.schema_bounds for p in space.params)
    assert "maximum 1.0" in by_key[LR_KEY].schema_bounds


def test_batch_sizes_are_bounded_by_gpu_memory() -> None:
    assert batch_choices(24) == [1, 2, 4] and batch_choices(None) == [1, 2, 4]
    assert batch_choices(48) == [2, 4, 8] and batch_choices(80) == [2, 4, 8]
    assert batch_choices(16) == [1, 2] and batch_choices(8) == [1]
    small = _space(gpu_memory_gb=16)
    assert small.baseline()[BATCH_KEY] == 2  # the default 4 does not fit 16 GB: nearest value inside


def test_user_values_are_the_baseline_and_widen_default_ranges() -> None:
    space = _space(user_values={LR_KEY: 2e-3, BATCH_KEY: 8})
    by_key = {p.key: p for p in space.params}
    assert by_key[LR_KEY].high == 2e-3 and by_key[LR_KEY].baseline == 2e-3
    assert 8 in (by_key[BATCH_KEY].choices or []) and space.baseline()[BATCH_KEY] == 8


def test_a_range_outside_the_schema_bounds_names_the_bound() -> None:
    text = _errors({"custom_param_ranges": {LR_KEY: {"min": 1e-5, "max": 2.0}}})
    assert "custom_param_ranges.train.optimizer.lr.max" in text and "maximum 1.0" in text
    text = _errors({"custom_param_ranges": {WD_KEY: {"min": 0, "max": 0.1, "scale": "log"}}})
    assert "log scale needs min > 0" in text
    text = _errors({"custom_param_ranges": {BATCH_KEY: {"choices": [0, 2]}}})
    assert "minimum 1" in text
    ok = _space({"custom_param_ranges": {"learning_rate": {"min": 1e-4, "max": 5e-4}}})
    lr = next(p for p in ok.params if p.key == LR_KEY)
    assert (lr.low, lr.high, lr.log) == (1e-4, 5e-4, True)


def test_disabled_unknown_and_study_owned_keys_are_errors() -> None:
    text = _errors({"automl_hyperparameters": ["train.optimizer.betas", "foo.bar", "train.num_epochs"]})
    assert "automl_disabled_parameters" in text and "not a key of the 5.5 train schema" in text
    assert "automl_max_epochs" in text and text.startswith("invalid AutoML search space (3 problems)")
    text = _errors({"automl_hyperparameters": [LR_KEY], "custom_param_ranges": {WD_KEY: {"min": 1e-3, "max": 1e-2}}})
    assert "is not searched" in text
    extra = _space({"automl_hyperparameters": [LR_KEY, "dataset.train_dataset.num_workers", "train.cudnn.benchmark"]})
    assert {p.key: p.kind for p in extra.params}["train.cudnn.benchmark"] == "categorical"


def test_settings_reject_unknown_keys_and_over_subscribed_gpus() -> None:
    with pytest.raises(InputError) as info:
        parse_settings({"automl_max_trials": 5, "automl_algorithm": "bohb"})
    text = str(info.value)
    assert "automl_settings.automl_max_trials: unknown setting" in text and "asha" in text
    s = AutoMLSettings()
    assert (s.trials(1), s.trials(2), s.trials(4), s.trials(8)) == (10, 12, 16, 24)
    assert s.concurrency(4, 1) == 4 and s.concurrency(0, 1) == 1 and s.concurrency(4, 2) == 2
    with pytest.raises(InputError, match="automl_max_concurrent"):
        AutoMLSettings(automl_max_concurrent=3).concurrency(4, 2)
    assert AutoMLSettings(automl_max_concurrent=2).concurrency(0, 1) == 2  # gpus=[]: no GPU limit
    assert AutoMLSettings(automl_max_epochs=27).min_resource(1) == 3
    assert AutoMLSettings(automl_max_epochs=10).min_resource(3) == 6


# ------------------------------------------------------------------ study
def test_algorithm_factory() -> None:
    assert isinstance(S.make_sampler("bayesian", seed=None, n_startup=4), optuna.samplers.TPESampler)
    assert isinstance(S.make_sampler("asha", seed=None, n_startup=4), optuna.samplers.RandomSampler)
    assert isinstance(S.make_pruner(AutoMLSettings()), optuna.pruners.NopPruner)
    assert isinstance(S.make_pruner(AutoMLSettings(), median_pruning=True), optuna.pruners.MedianPruner)
    sha = S.make_pruner(AutoMLSettings(automl_algorithm="asha", automl_max_epochs=27))
    assert isinstance(sha, optuna.pruners.SuccessiveHalvingPruner) and sha._min_resource == 3  # never "auto"
    hb = S.make_pruner(AutoMLSettings(automl_algorithm="hyperband", automl_max_epochs=27))
    assert isinstance(hb, optuna.pruners.HyperbandPruner)
    assert (hb._min_resource, hb._max_resource) == (3, 27)
    with pytest.raises(ValueError):
        S.make_sampler("bohb", seed=None, n_startup=4)


def test_baseline_is_trial_zero_and_enqueued_once(tmp_path: Path) -> None:
    cfg = _cfg({"automl_max_recommendations": 4})
    study = S.create_study(tmp_path, "s", cfg)
    S.create_study(tmp_path, "s", cfg)  # a second create (another process) must not enqueue it again
    first = S.ask_next(study)
    assert first is not None and first.number == 0 and first.baseline and first.params == cfg.space.baseline()
    second = S.ask_next(S.load_study(tmp_path, "s"))
    assert second is not None and not second.baseline and second.params != cfg.space.baseline()
    assert sum(1 for t in study.get_trials() if t.user_attrs.get("baseline")) == 1
    S.ask_next(study), S.ask_next(study)
    assert S.ask_next(study) is None  # budget: 4 trials, the baseline included


def test_lost_baseline_is_requeued(tmp_path: Path) -> None:
    study = S.create_study(tmp_path, "s", _cfg({"automl_max_recommendations": 4}))
    t = S.ask_next(study)
    assert t is not None
    S.set_job(study, t.number, "job-0", lost=True)
    S.finish(study, t.number, "failed", reason="container vanished")
    assert S.requeue_baseline(study) and not S.requeue_baseline(study)
    again = S.ask_next(study)
    assert again is not None and again.baseline


def _run(study: optuna.Study, n: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        t = S.ask_next(study)
        assert t is not None
        S.report(study, t.number, 1, 1.0)
        S.finish(study, t.number, "complete")
        out.append(t.params)
    return out


@pytest.mark.parametrize("algorithm", ["random", "bayesian"])
def test_restart_with_a_fixed_seed_proposes_no_duplicates(tmp_path: Path, algorithm: str) -> None:
    cfg = _cfg({"automl_algorithm": algorithm, "automl_max_recommendations": 12,
                "automl_hyperparameters": [LR_KEY, WD_KEY]}, seed=7)
    before = _run(S.create_study(tmp_path, "s", cfg), 4)
    after = _run(S.load_study(tmp_path, "s"), 4)  # a restarted driver: fresh sampler objects
    keys = [tuple(sorted(p.items())) for p in before + after]
    assert len(set(keys)) == len(keys)
    # The hazard is real: the same seed in a fresh sampler replays the first random proposal.
    replay = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    again = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=7))
    dists = S.distributions(cfg.space)
    assert replay.ask(dists).params == again.ask(dists).params


def _open(folder: str) -> None:
    S.open_storage(Path(folder))


def test_concurrent_first_open_creates_the_schema_once(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_open, args=(str(tmp_path),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    import sqlite3
    with sqlite3.connect(tmp_path / S.DB_NAME) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_tpe_finds_the_standin_optimum(tmp_path: Path) -> None:
    cfg = _cfg({"automl_max_recommendations": 24, "automl_hyperparameters": [LR_KEY, WD_KEY]}, seed=3)
    study = S.create_study(tmp_path, "s", cfg)
    while (t := S.ask_next(study)) is not None:
        for epoch in (1, 2, 3):
            S.report(study, t.number, epoch, val_ap(epoch, t.params[LR_KEY], t.params[WD_KEY])[0])
        S.finish(study, t.number, "complete")
    best = S.best_trial(study)
    assert best is not None and best.number != 0
    assert abs(math.log10(best.params[LR_KEY] / BEST_LR)) < 0.2
    assert abs(math.log10(best.params[WD_KEY] / BEST_WD)) < 0.4
    assert best.value is not None and best.value > val_ap(3)[0]  # beats the baseline (the 5.5 defaults)


def test_asha_prunes_bad_curves_at_rungs_only(tmp_path: Path) -> None:
    cfg = _cfg({"automl_algorithm": "asha", "automl_max_epochs": 9, "automl_max_recommendations": 8,
                "automl_hyperparameters": [LR_KEY]})
    study = S.create_study(tmp_path, "s", cfg)
    assert cfg.settings.min_resource() == 2
    curves = [lambda e: 10.0 * e, lambda e: 2.0 * e, lambda e: 11.0 * e,
              lambda e: 30.0 * e if e <= 2 else 60.0]  # the last starts best, then stalls
    decisions: dict[int, list[int]] = {}
    for curve in curves:
        t = S.ask_next(study)
        assert t is not None
        pruned_at = []
        for epoch in range(1, 10):
            if S.report(study, t.number, epoch, curve(epoch)):
                pruned_at.append(epoch)
                break
        S.finish(study, t.number, "pruned" if pruned_at else "complete")
        decisions[t.number] = pruned_at
    # Never at epoch 1 (min_resource 2); the bad curve at the first rung; the stalled one at the second.
    assert decisions == {0: [], 1: [2], 2: [], 3: [6]}
    states = {t.number: t.state for t in study.get_trials()}
    assert states[1] == states[3] == optuna.trial.TrialState.PRUNED
    best = S.best_trial(study)
    assert best is not None and best.number == 2 and best.value == 99.0


def test_value_is_the_best_epoch_and_reports_are_idempotent(tmp_path: Path) -> None:
    study = S.create_study(tmp_path, "s", _cfg({"automl_max_recommendations": 3}))
    t = S.ask_next(study)
    assert t is not None
    for epoch, ap in ((1, 10.0), (2, 30.0), (3, 20.0), (2, 99.0)):  # epoch 2 again: a resumed trial
        S.report(study, t.number, epoch, ap)
    done = S.finish(study, t.number, "complete")
    assert done.value == 30.0 and done.user_attrs["best_epoch"] == 2
    assert S.report(study, t.number, 4, 50.0) is False  # finished: ignored, no UpdateFinishedTrialError
    assert S.finish(study, t.number, "failed").value == 30.0  # a second finish is a no-op
    t2 = S.ask_next(study)
    assert t2 is not None
    assert S.finish(study, t2.number, "complete").state == optuna.trial.TrialState.FAIL  # no AP at all


BEST_REC_SCHEMA = {  # the skill bank's best_rec contract (schema_version 1), as far as this product uses it
    "type": "object",
    "required": ["schema_version", "experiment_id", "metric_name", "direction", "best", "all_recs"],
    "properties": {
        "schema_version": {"const": 1}, "experiment_id": {"type": "string", "minLength": 1},
        "metric_name": {"type": "string", "minLength": 1}, "direction": {"enum": ["maximize", "minimize"]},
        "best": {"type": "object",
                 "required": ["rec_id", "score", "specs", "observed_budget", "checkpoint_uri"],
                 "properties": {"specs": {"type": "object", "propertyNames": {"pattern": r"^[^.]+$"}},
                                "observed_budget": {"type": "object"}, "score": {"type": "number"},
                                "checkpoint_uri": {"type": "string", "pattern": r"epoch_\d+\.pth$"},
                                "checkpoint_epoch": {"type": "integer"}}},
        "all_recs": {"type": "array", "items": {"type": "object", "required": ["rec_id", "score"]}},
    },
}


def test_best_rec_has_the_skill_bank_shape(tmp_path: Path) -> None:
    study = S.create_study(tmp_path, "s", _cfg({"automl_max_recommendations": 3}))
    with pytest.raises(ValueError):
        S.best_rec(study, experiment_id="s", checkpoint_uri="x")
    for quality in (0.5, 1.0, 0.1):
        t = S.ask_next(study)
        assert t is not None
        S.set_job(study, t.number, f"job-{t.number}")
        for epoch in (1, 2):
            S.report(study, t.number, epoch, quality * epoch)
        S.finish(study, t.number, "pruned" if quality < 0.2 else "complete")
    rec = S.best_rec(study, experiment_id="study-1", checkpoint_uri="/r/trial_1/train/epoch_2.pth")
    jsonschema.validate(rec, BEST_REC_SCHEMA)
    assert rec["best"]["rec_id"] == "trial_1" and rec["best"]["checkpoint_epoch"] == 2
    assert rec["best"]["job_id"] == "job-1" and rec["best"]["observed_budget"] == {"num_epochs": 10}
    assert set(rec["best"]["specs"]) == {"dataset", "train"} and "lr" in rec["best"]["specs"]["train"]["optimizer"]
    assert [r["score"] for r in rec["all_recs"]] == [1.0, 2.0, None]  # the pruned trial has no score
    path = S.write_best_rec(tmp_path, rec)
    assert json.loads(path.read_text()) == rec


# ------------------------------------------------------------------ review and failures
def test_review_states_budget_cost_and_concurrency() -> None:
    settings = parse_settings({"automl_algorithm": "asha", "automl_max_epochs": 27, "automl_max_recommendations": 16})
    space = build_space(settings)
    r = review(settings, space, gpus=["0", "1", "2", "3"], results_dir="/runs/s1", confirm_call={"confirm": True})
    assert r.budget.pruning_rungs == [3, 9] and r.concurrency.concurrent == 4
    assert r.concurrency.gpu_slots == [["0"], ["1"], ["2"], ["3"]]
    assert r.max_cost_gpu_epochs == 16 * 27 and r.estimated_cost_gpu_epochs < r.max_cost_gpu_epochs
    assert r.estimated_cost_gpu_epochs == round(16 * expected_epochs(27, [3, 9], 3), 1)
    assert r.baseline == space.baseline() and r.confirm_call == {"confirm": True}
    text = r.digest()
    assert "train.optimizer.lr: log [5e-05, 0.001]" in text and "/runs/s1" in text and len(text) < 8000
    plain = review(AutoMLSettings(), space, gpus=[], results_dir="/r", confirm_call="c")
    assert plain.budget.pruning_rungs == [] and plain.estimated_cost_gpu_epochs == 10 * 10
    assert any("gpus=[]" in n for n in plain.notes)


def test_failures_find_the_common_cause() -> None:
    oom = "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    failed = [({BATCH_KEY: 4, LR_KEY: 1e-4}, "failed", oom), ({BATCH_KEY: 8, LR_KEY: 3e-4}, "failed", oom),
              ({BATCH_KEY: 4, LR_KEY: 5e-4}, "killed", "OOMKilled=true")]
    others = [{BATCH_KEY: 1, LR_KEY: 2e-4}, {BATCH_KEY: 2, LR_KEY: 6e-4}]
    d = classify(failed, others)
    assert d.common and d.cause == "oom" and d.param == BATCH_KEY and d.threshold == 4
    assert d.message == "every trial with batch_size >= 4 ran out of GPU memory"
    assert "custom_param_ranges" in d.fix
    # A batch-4 success breaks the threshold: the cause stays, the claim about batch_size goes.
    assert classify(failed, [*others, {BATCH_KEY: 4}]).param is None
    data = classify([({}, "failed", "FileNotFoundError: [Errno 2] No such file or directory: '/data/x.pkl'")] * 3)
    assert data.cause == "data" and "check_dataset" in data.fix
    mixed = classify([({}, "failed", oom), ({}, "failed", "Segmentation fault")])
    assert not mixed.common and mixed.cause == "mixed"
    assert consecutive_failures(["complete", "failed", "pruned", "failed", "lost"]) == 2
    assert should_stop(["failed"] * 3) and not should_stop(["failed", "failed", "complete"])


def test_one_driver_per_study_the_second_exits_at_the_lock(settings, tmp_path: Path) -> None:
    import fcntl
    import subprocess
    import sys

    from tao_bevfusion.jobs.store import JobStore
    from tao_bevfusion.studies.driver import LOCK_FILE, driver_alive, ensure_driver

    store = JobStore(settings.home)
    folder = settings.home / "runs" / "study-s"
    folder.mkdir(parents=True)
    job = store.create(kind="study", action="train", backend="docker", spec_path="-", spec_sha256="-",
                       results_dir=str(folder), data_root="/d")
    store.update(job.id, state="running")
    assert not driver_alive(folder)
    with open(folder / LOCK_FILE, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a live driver holds this
        assert driver_alive(folder)
        from tao_bevfusion.jobs.context import AppContext

        assert ensure_driver(store.get(job.id), AppContext(settings)) is False  # one is alive: none started
        second = subprocess.run([sys.executable, "-m", "tao_bevfusion.studies.driver", job.id], capture_output=True,
                                timeout=60, env={**os.environ, "TAO_BEVFUSION_HOME": str(settings.home)})
        assert second.returncode == 0 and not (folder / "driver.json").exists()  # left at the lock, did nothing
    assert not driver_alive(folder)  # the kernel frees the lock with its holder

"""One study's control loop (run by the driver): reconcile -> prune -> record ends -> stop on failures -> fill.

Only this loop writes Optuna trial states. Each Optuna trial carries, in its user attrs, the job that runs
it (job_id), its GPU slot and how often it was relaunched, so a restarted loop needs nothing but the disk.
After every tick it writes `<folder>/trials.json`, the snapshot get_job(study) reads (no Optuna there).
"""

import json
import time
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from tao_bevfusion.core import layout
from tao_bevfusion.core.errors import EngineError, InputError
from tao_bevfusion.core.fsio import atomic_write
from tao_bevfusion.core.states import SUCCEEDED_OUTCOMES
from tao_bevfusion.evidence.patterns import error_matches
from tao_bevfusion.evidence.status import read_status
from tao_bevfusion.jobs.cancel import stop_run
from tao_bevfusion.jobs.context import AppContext
from tao_bevfusion.jobs.engine import refresh
from tao_bevfusion.jobs.store import Job
from tao_bevfusion.studies import budget, milestones
from tao_bevfusion.studies import study as S
from tao_bevfusion.studies.failures import classify, should_stop
from tao_bevfusion.studies.plan import SNAPSHOT, load_plan

MAX_RELAUNCHES = 2


def last_checkpoint(results_dir: Path) -> Path | None:
    found = layout.epoch_checkpoints(layout.train_dir(results_dir))
    return found[max(found)] if found else None


def never_started(job: Job) -> bool:
    """A trial job whose launch was interrupted before any container existed (its submitter died)."""
    return (
        not job.handle
        and not job.started_at
        and job.state in ("failed", "canceled")
        and not job.cancel_requested
    )


class StudyLoop:
    def __init__(self, study_id: str, ctx: AppContext) -> None:
        self.ctx, self.id = ctx, study_id
        self.job = ctx.store.get(study_id)
        self.folder = Path(self.job.results_dir)
        self.plan = load_plan(self.folder)
        self.study = S.load_study(self.folder, study_id)
        self.cfg = S.study_config(self.study)
        self.offsets: dict[
            str, int
        ] = {}  # job id -> status.json offset (a restart re-reads; repeats ignored)
        self.stopped: str | None = None
        self.dirty = True

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)

    def running(self) -> list[FrozenTrial]:
        return self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    def tick(self) -> bool:
        """One pass; False when the study is over (the driver then exits)."""
        self.job = self.ctx.store.get(self.id)
        if self.job.terminal or self.job.cancel_requested:
            self._wind_down(
                "study canceled" if self.job.cancel_requested else f"study {self.job.state}"
            )
            return False
        self.dirty = (
            False  # an idle tick (trials running, nothing new) reads Optuna once and writes nothing
        )
        running = self.running()
        for trial in running:
            self._reconcile(trial)
        if self.dirty:
            if self._too_many_failures():
                return False
            running = self.running()
        if budget.wall_clock_passed(self) and running:
            self._wind_down(
                f"stopped: {self.stopped}"
            )  # the study's max_hours: its best so far is the result
            running = []
        if len(running) < self.plan.concurrent and not budget.hold_launches(self):
            self._fill()
            running = self.running()
        if self.dirty:
            self.snapshot()
        if not running:
            self._finalize()
            return False
        return True

    # ------------------------------------------------------------------ one trial
    def _reconcile(self, trial: FrozenTrial) -> None:
        job_id = trial.user_attrs.get("job_id")
        if not job_id:  # the loop stopped between ask and launch: adopt a job it made, else launch
            results = trial.user_attrs.get("results_dir")
            adopted = self.ctx.store.active_for_results(str(results)) if results else []
            if not adopted:
                self._launch_again(trial, results)
                return
            job_id = adopted[0].id
            self.ctx.store.update(job_id, owner_id=self.id)
            S.set_job(self.study, trial.number, job_id)
        job = refresh(self.ctx.store.get(job_id), self.ctx)
        self._feed(trial, job)
        if job.terminal:
            self._ended(trial, job)

    def _feed(self, trial: FrozenTrial, job: Job) -> None:
        path = layout.status_path("train", Path(job.results_dir), Path(job.data_root))
        chunk = read_status(path, self.offsets.get(job.id, 0))
        self.offsets[job.id] = chunk.offset
        for rec in chunk.records:
            if not rec.is_validation or rec.epoch is None or rec.AP11 is None:
                continue
            self.dirty = True
            if S.report(self.study, trial.number, rec.epoch, rec.AP11) and not job.terminal:
                self._prune(trial, job, rec.epoch)

    def _prune(self, trial: FrozenTrial, job: Job, epoch: int) -> None:
        if job.meta.pruned:
            return
        self.log(f"trial {trial.number} ({job.id}) pruned at epoch {epoch}: stopping its container")
        self.ctx.store.update(job.id, meta=job.meta.model_copy(update={"pruned": True}))
        job.meta.pruned = True
        # killed, not stopped: a pruned trial is never resumed, and its slot is wanted now
        stop_run(job, True, self.ctx)

    def _ended(self, trial: FrozenTrial, job: Job) -> None:
        self.dirty = True
        outcome = job.verdict.get("outcome")
        reason = str(job.verdict.get("reason", ""))
        if job.meta.pruned:  # the stop may land after the last epoch: Optuna's decision stands
            S.finish(self.study, trial.number, "pruned", reason=reason)
        elif outcome in SUCCEEDED_OUTCOMES:
            S.finish(self.study, trial.number, "complete")
        elif outcome == "pruned":
            S.finish(self.study, trial.number, "pruned", reason=reason)
        elif outcome == "lost" and int(trial.user_attrs.get("relaunches", 0)) < MAX_RELAUNCHES:
            self._relaunch(trial, job)
            return
        elif never_started(job):  # the driver died inside the launch: the trial itself did not fail
            self.log(
                f"trial {trial.number}: the launch of {job.id} was interrupted; launching it again"
            )
            self._launch_again(trial, job.results_dir)
            return
        else:
            errors = "; ".join(str(e.get("message", ""))[:120] for e in job.errors[:2])
            patterns = "; ".join(
                f"{m.pattern}: {m.evidence[:160]}"
                for m in error_matches(job.findings.matches, "train", limit=2)
            )
            detail = " ".join(x for x in (reason, errors, patterns) if x)
            S.finish(self.study, trial.number, "failed", reason=f"{outcome}: {detail}"[:600])
        self.log(f"trial {trial.number} ({job.id}) ended: {outcome}")

    def _relaunch(self, trial: FrozenTrial, job: Job) -> None:
        ckpt = last_checkpoint(Path(job.results_dir))
        self.log(
            f"trial {trial.number}: container of {job.id} vanished; relaunching "
            + (f"from {ckpt.name}" if ckpt else "from scratch")
        )
        self._launch(
            trial.number,
            dict(trial.params),
            int(trial.user_attrs.get("slot", 0)),
            resume_from=ckpt,
            relaunches=int(trial.user_attrs.get("relaunches", 0)) + 1,
        )

    def _launch_again(self, trial: FrozenTrial, results: object) -> None:
        """Launch a trial whose launch was interrupted; a folder the interrupted launch already wrote into is
        left as it is (a launch never reuses a folder) and the trial gets the next one."""
        relaunches = int(trial.user_attrs.get("relaunches", 0))
        if results and Path(str(results)).exists():
            relaunches += 1
        slot = int(trial.user_attrs.get("slot", self._free_slot()))
        self._launch(trial.number, dict(trial.params), slot, relaunches=relaunches)

    def _launch(
        self,
        number: int,
        params: dict[str, Any],
        slot: int,
        resume_from: Path | None = None,
        relaunches: int = 0,
    ) -> None:
        from tao_bevfusion.jobs.launch import RunActionInput, launch

        self.dirty = True
        fields = self.plan.trial_input(number, params, slot)
        if resume_from is not None:
            fields.update(checkpoint=str(resume_from), resume=True)
        if relaunches:
            # A launch never reuses a folder that holds a started job's outputs: the relaunch gets its own,
            # and the checkpoint it resumes from stays in the first one.
            fields["results_dir"] = f"{fields['results_dir']}_relaunch{relaunches}"
        S.set_job(
            self.study,
            number,
            "",
            slot=slot,
            relaunches=relaunches,
            results_dir=fields["results_dir"],
        )
        try:
            result = launch(RunActionInput.model_validate(fields), self.ctx)
        except (InputError, EngineError) as exc:
            S.finish(self.study, number, "failed", reason=f"could not launch: {exc.render()[:500]}")
            self.log(f"trial {number} could not launch: {exc.render()[:300]}")
            return
        assert result.job_id is not None
        self.ctx.store.update(result.job_id, owner_id=self.id)
        S.set_job(self.study, number, result.job_id)
        self.log(f"trial {number} launched as {result.job_id} (slot {slot}) {params}")

    def _free_slot(self) -> int:
        used = {
            int(t.user_attrs.get("slot", -1)) for t in self.running() if t.user_attrs.get("job_id")
        }
        return next(i for i in range(self.plan.concurrent + len(used) + 1) if i not in used)

    # ------------------------------------------------------------------ the study
    def _fill(self) -> None:
        while len(self.running()) < self.plan.concurrent:
            slot = self._free_slot()
            ticket = S.ask_next(self.study, self.cfg)
            if ticket is None:
                return
            self._launch(ticket.number, ticket.params, slot)

    def _finished(self) -> list[FrozenTrial]:
        done = [
            t
            for t in self.study.get_trials(deepcopy=False)
            if t.state.is_finished() and not t.user_attrs.get(S.DUPLICATE_ATTR)
        ]
        return sorted(done, key=lambda t: t.number)

    def _too_many_failures(self) -> bool:
        done = self._finished()
        outcomes = [
            {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(t.state, "failed")
            for t in done
        ]
        if not should_stop(outcomes):
            return False
        run = []
        for t in reversed(done):
            if t.state != TrialState.FAIL:
                break
            run.append(
                {
                    "params": t.params,
                    "outcome": "failed",
                    "reason": str(t.user_attrs.get("reason", "")),
                }
            )
        others = [t.params for t in done if t.state == TrialState.COMPLETE]
        diagnosis = classify(list(reversed(run)), others)
        self.stopped = f"{diagnosis.message}: {diagnosis.fix}"
        self.log(f"stopping the study: {self.stopped}")
        self._wind_down("study stopped after consecutive failures")
        self._end("failed", f"stopped after {len(run)} consecutive failed trials: {self.stopped}")
        return True

    def _wind_down(self, why: str) -> None:
        """Stop the running trials; one already validated keeps its best AP11 (and its checkpoints)."""
        for trial in self.running():
            job_id = trial.user_attrs.get("job_id")
            kept = False
            if job_id:
                job = self.ctx.store.get(job_id)
                if not job.terminal:
                    stop_run(job, False, self.ctx)
                    job = refresh(self.ctx.store.get(job.id), self.ctx)
                self._feed(trial, job)  # the validations it wrote before the stop
                kept = self._validated_checkpoint(trial.number, job)
            S.finish(
                self.study,
                trial.number,
                "complete" if kept else "failed",
                reason=f"{why}; stopped after its validated epochs (AP kept)" if kept else why,
            )
        if self.job.cancel_requested:
            self._keep_best_on_cancel()
        self.snapshot()

    def _validated_checkpoint(self, number: int, job: Job) -> bool:
        curve = self.study.get_trials(deepcopy=False)[number].intermediate_values
        if not curve:
            return False
        best_epoch = max(curve, key=lambda e: (curve[e], -e))
        return (layout.train_dir(Path(job.results_dir)) / f"epoch_{best_epoch}.pth").is_file()

    def _keep_best_on_cancel(self) -> None:
        """A canceled study still names its best trial and writes best_rec.json (its verdict says so)."""
        best = S.best_trial(self.study)
        if best is None:
            return
        ckpt = self.best_checkpoint(best)
        S.write_best_rec(
            self.folder, S.best_rec(self.study, experiment_id=self.id, checkpoint_uri=str(ckpt))
        )
        kept = len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        reason = (
            f"canceled on request; kept the validated AP11 of {kept} trial(s); best trial {best.number}: "
            f"AP11 {best.value} at epoch {best.user_attrs.get('best_epoch')} ({best.user_attrs.get('job_id')}), "
            f"checkpoint {ckpt}; best_rec.json written"
        )
        self.ctx.store.update(self.id, verdict={"outcome": "canceled", "reason": reason})
        self.log(reason)

    def _finalize(self) -> None:
        best = S.best_trial(self.study)
        if best is None:
            budget.settle_checkpoints(self, None, None)
            self._end("failed", "no trial completed with a validation AP11 (see trials[].reason)")
            return
        ckpt = self.best_checkpoint(best)
        rec = S.best_rec(self.study, experiment_id=self.id, checkpoint_uri=str(ckpt))
        S.write_best_rec(self.folder, rec)
        budget.settle_checkpoints(
            self, best.user_attrs.get("job_id"), best.user_attrs.get("best_epoch")
        )
        self._end(
            "succeeded",
            f"best trial {best.number}: AP11 {best.value} at epoch "
            f"{best.user_attrs.get('best_epoch')} ({best.user_attrs.get('job_id')})"
            + (f"; {self.stopped}" if self.stopped else ""),
        )

    def best_checkpoint(self, best: FrozenTrial) -> Path:
        results = Path(str(best.user_attrs.get("results_dir", "")))
        return layout.train_dir(results) / layout.epoch_file(
            int(best.user_attrs.get("best_epoch", 0))
        )

    def _end(self, state: str, reason: str) -> None:
        self.snapshot()
        outcome = "succeeded" if state == "succeeded" else "failed"
        self.ctx.store.update(
            self.id,
            state=state,
            verdict={"outcome": outcome, "reason": reason},
            finished_at=time.time(),
        )
        self.log(f"study {state}: {reason}")
        milestones.ended(self.id, state, reason, self.stopped)

    def snapshot(self) -> None:
        """trials.json: what get_job(study) shows, written atomically."""
        trials = []
        for t in self.study.get_trials(deepcopy=False):
            if t.state == TrialState.WAITING or t.user_attrs.get(S.DUPLICATE_ATTR):
                continue
            trials.append(
                {
                    "number": t.number,
                    "job_id": t.user_attrs.get("job_id") or None,
                    "state": t.state.name.lower(),
                    "params": t.params,
                    "baseline": bool(t.user_attrs.get(S.BASELINE_ATTR)),
                    "value": t.user_attrs.get("best_value", t.value),
                    "epoch": t.user_attrs.get("best_epoch"),
                    "reason": t.user_attrs.get("reason"),
                    "relaunches": t.user_attrs.get("relaunches", 0),
                    "started": t.datetime_start.timestamp() if t.datetime_start else None,
                    "ended": t.datetime_complete.timestamp() if t.datetime_complete else None,
                }
            )
        best = S.best_trial(self.study)
        data: dict[str, Any] = {
            "trials": trials,
            "stopped": self.stopped,
            "updated": time.time(),
            "best": None,
        }
        if best is not None:
            data["best"] = {
                "trial": best.number,
                "job_id": best.user_attrs.get("job_id"),
                "value": best.value,
                "epoch": best.user_attrs.get("best_epoch"),
                "params": best.params,
                "checkpoint": str(self.best_checkpoint(best)),
            }
        atomic_write(self.folder / SNAPSHOT, json.dumps(data))
        milestones.after_snapshot(self.id, self.folder, data, self.plan.trials)

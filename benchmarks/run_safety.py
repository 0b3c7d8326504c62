#!/usr/bin/env python3
"""Run safety (issue 18), as JSON:

- divergence: first non-finite loss (seen appended to status.json, polled every 50 ms) -> container stopped
  (the engine's FinishedAt), with the run's watchdog at its default tick;
- limit: the moment the run passes max_hours -> container stopped (includes the checkpoint grace);
- retry: the killed container's end -> the resumed attempt's container running (StartedAt);
- retention: checkpoints (files, bytes) a 6-trial ASHA study holds before and after retention, and the
  same at the documented 0.5 GB per checkpoint;
- sampler: best AP11 and epochs spent until it, new sampler (GPSampler / multivariate TPE + the scaled-lr
  start-up trial) vs today's (independent TPE), 8 trials x 6 epochs on the stand-in's AP surface, over seeds
  (no Docker: the surface function itself).

    python3 benchmarks/run_safety.py            # 20 seeds, every Docker measurement
    python3 benchmarks/run_safety.py --quick    # 4 seeds, the same Docker measurements (shorter runs)
Docker measurements start a private engine when none answers (as the tests do) and report `skipped` if
neither works.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import safety_docker  # noqa: E402
from tests.standin.bevfusion_standin import val_ap  # noqa: E402

LR, WD = "train.optimizer.lr", "train.optimizer.weight_decay"
TRIALS, EPOCHS = 8, 6


def _surface(params: dict[str, Any]) -> list[float]:
    return [val_ap(e, params[LR], params[WD])[0] for e in range(1, EPOCHS + 1)]


def _one_search(make: Callable[..., Any], seed: int, scaled_lr: float | None) -> dict[str, Any]:
    import optuna
    from tao_bevfusion.studies import study as S
    from tao_bevfusion.studies.sampler_choice import scaled_lr_trial
    from tao_bevfusion.studies.settings import parse_settings
    from tao_bevfusion.studies.space import build_space

    settings = parse_settings({"automl_algorithm": "bayesian", "automl_max_recommendations": TRIALS,
                               "automl_max_epochs": EPOCHS, "automl_hyperparameters": [LR, WD]})
    space = build_space(settings)
    study = optuna.create_study(direction="maximize", sampler=make(space, seed))
    study.enqueue_trial(space.baseline())
    extra = scaled_lr_trial(space, scaled_lr)
    if extra:
        study.enqueue_trial(extra)
    dists = S.distributions(space)
    best, best_at = -1.0, 0
    for i in range(TRIALS):
        trial = study.ask(dists)
        ap = max(_surface(trial.params))
        study.tell(trial, ap)
        if ap > best:
            best, best_at = ap, (i + 1) * EPOCHS
    return {"best_AP11": best, "epochs_to_best": best_at, "epochs_spent": TRIALS * EPOCHS}


def sampler_comparison(seeds: int) -> dict[str, Any]:
    from tao_bevfusion.studies import sampler_choice
    from tao_bevfusion.studies import study as S

    def today(space: Any, seed: int) -> Any:
        return S.make_sampler("bayesian", seed=seed, n_startup=max(2, min(5, TRIALS // 3)))

    def new(space: Any, seed: int) -> Any:
        return sampler_choice.build(sampler_choice.choose("bayesian", space, TRIALS), seed)

    from tao_bevfusion.studies.settings import parse_settings
    from tao_bevfusion.studies.space import build_space

    space = build_space(parse_settings({"automl_max_recommendations": TRIALS, "automl_hyperparameters": [LR, WD]}))
    chosen = sampler_choice.choose("bayesian", space, TRIALS)
    out: dict[str, Any] = {"trials": TRIALS, "epochs": EPOCHS, "seeds": seeds, "new_sampler": chosen.name,
                           "optimum_AP11": val_ap(EPOCHS, 3e-4, 1e-2)[0]}
    for name, make, scaled in (("today_tpe", today, None), ("new", new, 5e-5)):
        runs = [_one_search(make, seed, scaled) for seed in range(seeds)]
        out[name] = {"best_AP11_mean": round(statistics.mean(r["best_AP11"] for r in runs), 3),
                     "best_AP11_min": round(min(r["best_AP11"] for r in runs), 3),
                     "epochs_to_best_mean": round(statistics.mean(r["epochs_to_best"] for r in runs), 1),
                     "epochs_spent": TRIALS * EPOCHS}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"sampler": sampler_comparison(4 if args.quick else 20)}
    with tempfile.TemporaryDirectory(prefix="tao-safety-bench.") as tmp:
        os.environ["TAO_BEVFUSION_MEMLOCK"] = str(resource.getrlimit(resource.RLIMIT_MEMLOCK)[1])
        try:
            with safety_docker.engine() as client:
                results.update(safety_docker.measure(client, Path(tmp), quick=args.quick))
        except Exception as exc:  # no engine here: the surface comparison above still stands
            results["docker"] = {"skipped": f"{exc.__class__.__name__}: {str(exc)[:200]}"}
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    started = time.monotonic()
    code = main()
    print(f"# {time.monotonic() - started:.1f} s", file=sys.stderr)
    sys.exit(code)

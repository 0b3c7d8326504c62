"""Keys that exist in TAO 7.x schemas but not in 5.5 (contract §2.2). 5.5 raises ConfigKeyError on each."""

NEWER_THAN_55: dict[str, str] = {
    "model_name": "7.x CommonExperimentConfig",
    "wandb.group": "7.x WandBConfig",
    "wandb.run_id": "7.x WandBConfig",
    "train.checkpoint_interval_unit": "7.x TrainConfig",
    "train.checkpointer": "tao-core 7.3 TrainConfig",
    "evaluate.trt_engine": "7.x EvaluateConfig",
    "evaluate.batch_size": "7.x EvaluateConfig",
    "inference.trt_engine": "7.x InferenceConfig",
    "inference.batch_size": "7.x InferenceConfig",
    "automl_disabled_parameters": "a schema-generator artefact, not a spec key",
}


def newer_key_message(path: str) -> str | None:
    """The explanation for a key newer than 5.5, or None when `path` is not one (sub-keys included)."""
    for key, origin in NEWER_THAN_55.items():
        if path == key or path.startswith(key + "."):
            return f"'{path}' is newer than 5.5 ({origin}); the 5.5 container rejects it with ConfigKeyError"
    return None

"""The built-in AutoML study: settings, search space (from schemas/train.schema.json), the Optuna study,
its review, best_rec.json and failure classification. Each trial is an ordinary train job."""

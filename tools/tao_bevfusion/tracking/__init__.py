"""Mirror jobs and studies to an experiment tracker (MLflow): tracking/hooks.py hangs it on the job engine."""

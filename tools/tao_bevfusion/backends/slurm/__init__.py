"""The Slurm backend: the sbatch script (script.py), the scheduler CLI (cli.py), preflight (checks.py)."""

"""Backends: where a job runs. base.py is the contract, registry.py finds them by name."""

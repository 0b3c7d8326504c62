"""The Kubernetes backend: manifests (manifests.py), state (state.py), preflight (checks.py)."""

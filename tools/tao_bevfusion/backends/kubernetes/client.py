"""The Kubernetes API as this backend uses it: the client (imported on first use), its errors, one label key.

At the bottom of the package: backend, checks and state import it; it imports none of them.
"""

import json
from typing import Any

from tao_bevfusion.core.errors import InputError, problem

INDEX_KEY = "batch.kubernetes.io/job-completion-index"  # a pod's rank in an Indexed Job


class Api:
    """The three client APIs the backend uses (tests pass a recording double with the same methods)."""

    def __init__(self, core: Any, batch: Any, auth: Any) -> None:
        self.core, self.batch, self.auth = core, batch, auth


def connect(context: str | None) -> Api:
    """The APIs of a kubeconfig context (or the in-cluster service account)."""
    try:
        from kubernetes import client, config
    except ImportError as exc:
        raise InputError(
            problem(
                "backend",
                "the kubernetes Python client is not installed",
                "pip install kubernetes (a dependency of tao-bevfusion)",
            )
        ) from exc
    try:
        config.load_kube_config(context=context)
    except Exception:
        try:
            config.load_incluster_config()
        except Exception as exc:
            raise InputError(
                problem(
                    "backend",
                    f"no kubeconfig or in-cluster config ({exc.__class__.__name__})",
                    "set KUBECONFIG (and backend_options.context), or run the server in a pod "
                    "with a service account",
                    code="K8S_UNREACHABLE",
                )
            ) from exc
    return Api(client.CoreV1Api(), client.BatchV1Api(), client.AuthorizationV1Api())


def api_error(exc: Exception) -> tuple[int, str]:
    """(HTTP status, the API server's own message) from an ApiException (or anything else)."""
    status = int(getattr(exc, "status", 0) or 0)
    body = getattr(exc, "body", None)
    try:
        message = json.loads(body).get("message", "") if body else ""
    except (ValueError, AttributeError):
        message = str(body)[:300]
    return status, message or str(getattr(exc, "reason", "") or exc)[:300]

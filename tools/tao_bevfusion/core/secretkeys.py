"""Secrets by name: which mapping keys name a secret (encryption_key, key, password, token, api_key, ...), so
core/redact.mask_keys masks their values at any depth, and the values they hold can be redacted from text."""

import re
from typing import Any

# Decided on whole name parts: `default_cam_key` names a camera, `encryption_key` and `aws_secret_access_key`
# name secrets. A bare `key` is TAO's model key.
_SECRET_PARTS = {
    "password",
    "passwd",
    "secret",
    "secrets",
    "token",
    "tokens",
    "credential",
    "credentials",
    "apikey",
    "auth",
    "authorization",
    "cookie",
    "passphrase",
}
_KEY_KINDS = {
    "encryption",
    "api",
    "private",
    "access",
    "secret",
    "signing",
    "ssh",
    "model",
    "hmac",
    "license",
}
MAX_DEPTH = 64


def is_secret_name(name: object) -> bool:
    """True when a mapping key names a secret value."""
    parts = [p for p in re.split(r"[^a-z0-9]+", str(name).lower()) if p]
    if not parts:
        return False
    if _SECRET_PARTS.intersection(parts):
        return True
    return parts[-1] == "key" and (len(parts) == 1 or parts[-2] in _KEY_KINDS)


def secret_values(value: Any, depth: int = 0) -> list[str]:
    """Every non-empty string held under a secret-named key, at any depth (to redact from text)."""
    if depth > MAX_DEPTH:
        return []
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if is_secret_name(k) and isinstance(v, str) and v:
                found.append(v)
            else:
                found += secret_values(v, depth + 1)
    elif isinstance(value, (list, tuple)):
        for v in value:
            found += secret_values(v, depth + 1)
    return found

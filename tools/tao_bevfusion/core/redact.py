"""One redaction: secret values out of text and bytes, secret keys out of mappings, one mask.

Values are replaced before anything cuts or parses the text (a cut first would leave a prefix behind), in
the raw form and the form a JSON writer (status.json) gives them.
"""

import json
from collections.abc import Sequence
from typing import Any

from tao_bevfusion.core.secretkeys import is_secret_name

MASK = "***"
SECRET_KEYS = frozenset({"encryption_key"})  # the spec's own secret key; any secret-named key is masked too


def _forms(value: str) -> set[str]:
    return {value, json.dumps(value)[1:-1]}


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret value (raw and JSON-escaped) masked."""
    for value in secrets:
        if value:
            for form in _forms(value):
                text = text.replace(form, MASK)
    return text


def redact_bytes(data: bytes, secrets: Sequence[str]) -> bytes:
    """The same for raw bytes (log and status.json chunks), before they are decoded or cut."""
    for value in secrets:
        if value:
            for form in _forms(value):
                data = data.replace(form.encode(), MASK.encode())
    return data


def mask_keys(data: Any) -> Any:
    """A copy of a mapping/list tree with the value of every secret key masked, at any depth."""
    if isinstance(data, dict):
        return {k: (MASK if (k in SECRET_KEYS or is_secret_name(k)) and v else mask_keys(v))
                for k, v in data.items()}
    if isinstance(data, list):
        return [mask_keys(v) for v in data]
    return data

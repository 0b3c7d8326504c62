"""One redaction: secret values out of text and bytes, secret keys out of mappings, one mask.

Values are replaced before anything cuts or parses the text (a cut first would leave a prefix behind), in
the raw form and the form a JSON writer (status.json) gives them.
"""

import json
import re
from collections.abc import Sequence
from typing import Any

from tao_bevfusion.core.secretkeys import is_secret_name

MASK = "***"
SECRET_KEYS = frozenset(
    {"encryption_key"}
)  # the spec's own secret key; any secret-named key is masked too


def _forms(value: str) -> set[str]:
    return {value, json.dumps(value)[1:-1]}


def _pattern(form: str) -> str:
    """Where `form` is masked. A key of letters only can be part of an ordinary word ('successf' in
    'successfully', which the verdict reads): it is masked as a whole word. A key with a digit or a symbol
    cannot be, and is masked wherever it stands, even glued to other text (no prefix or suffix leaks)."""
    if form.isalpha():
        return rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])"
    return re.escape(form)


def redact(text: str, secrets: Sequence[str]) -> str:
    """`text` with every secret value (raw and JSON-escaped) masked (see _pattern)."""
    for value in secrets:
        if value:
            for form in _forms(value):
                text = re.sub(_pattern(form), MASK, text)
    return text


def redact_bytes(data: bytes, secrets: Sequence[str]) -> bytes:
    """The same for raw bytes (log and status.json chunks), before they are decoded or cut."""
    for value in secrets:
        if value:
            for form in _forms(value):
                data = re.sub(_pattern(form).encode(), MASK.encode(), data)
    return data


def mask_keys(data: Any) -> Any:
    """A copy of a mapping/list tree with the value of every secret key masked, at any depth."""
    if isinstance(data, dict):
        return {
            k: (MASK if (k in SECRET_KEYS or is_secret_name(k)) and v else mask_keys(v))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [mask_keys(v) for v in data]
    return data

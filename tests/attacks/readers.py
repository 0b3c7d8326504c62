"""The one place the attack suite imports internal readers (fix here only when they move).

The fuzz tests keep plain dicts between reads; these adapters load them into the typed models the readers
take and write the models back, so every read goes through the real validation of stored evidence.

    scan_status(path, cursor, findings, progress, metrics) -> None   (cursor['status_offset'])
    scan_log(path, cursor, findings, progress, final=False) -> None  (cursor['log_offset'])
"""

from pathlib import Path
from typing import Any

from pydantic import BaseModel
from tao_bevfusion.evidence import scan
from tao_bevfusion.evidence.models import Cursor, Findings, RunMetrics, RunProgress


def _load(store: dict[str, Any], model: type[BaseModel]) -> Any:
    return model.model_validate(store)


def _save(store: dict[str, Any], value: BaseModel) -> None:
    store.clear()
    store.update(value.model_dump(mode="json"))


def scan_status(path: Path, cursor: dict[str, Any], findings: dict[str, Any], progress: dict[str, Any],
                metrics: dict[str, Any]) -> None:
    c, f, p, m = (_load(cursor, Cursor), _load(findings, Findings), _load(progress, RunProgress),
                  _load(metrics, RunMetrics))
    scan.scan_status(path, c, f, p, m)
    for store, value in ((cursor, c), (findings, f), (progress, p), (metrics, m)):
        _save(store, value)


def scan_log(path: Path, cursor: dict[str, Any], findings: dict[str, Any], progress: dict[str, Any],
             final: bool = False) -> None:
    c, f, p = _load(cursor, Cursor), _load(findings, Findings), _load(progress, RunProgress)
    scan.scan_log(path, c, f, p, final=final)
    for store, value in ((cursor, c), (findings, f), (progress, p)):
        _save(store, value)


__all__ = ["scan_log", "scan_status"]

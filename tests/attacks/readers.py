"""The one place the attack suite imports internal readers (they move in the restructure: fix here only).

    scan_status(path, cursor, findings, progress, metrics) -> None   (cursor['status_offset'])
    scan_log(path, cursor, findings, progress, final=False) -> None  (cursor['log_offset'])
"""

from tools.outcome import scan_log, scan_status

__all__ = ["scan_log", "scan_status"]

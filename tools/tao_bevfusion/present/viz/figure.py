"""matplotlib for the pictures: imported on first use (never at server start), the Agg backend, and a figure
turned into PNG bytes and closed (an open figure per call would leak memory in a long-running server)."""

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from tao_bevfusion.core.caller import check_caller

MAX_LABELS = 40  # score labels per picture (the first boxes drawn)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes; the figure is closed. Encoding is the costly step: it is skipped (CallerGone)
    when nobody waits for the picture any more."""
    buf = io.BytesIO()
    try:
        check_caller()
        fig.savefig(buf, format="png", **({"dpi": dpi} if dpi is not None else {}))
    finally:
        pyplot().close(fig)
    return buf.getvalue()


@contextmanager
def closed_on_error(fig: Any) -> Iterator[Any]:
    """Drawing steps that may stop (CallerGone) or fail: the figure is closed, not left open."""
    try:
        yield fig
    except BaseException:
        pyplot().close(fig)
        raise


def add_lines(ax: Any, lines: list[np.ndarray], color: str, lw: float, style: str) -> None:
    from matplotlib.collections import LineCollection

    if lines:
        dash = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dashdot"}.get(style, "solid")
        ax.add_collection(
            LineCollection(lines, colors=color, linewidths=lw, linestyles=dash, capstyle="butt")
        )

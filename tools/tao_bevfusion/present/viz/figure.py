"""matplotlib for the pictures: imported on first use (never at server start), the Agg backend, and a figure
turned into PNG bytes and closed (an open figure per call would leak memory in a long-running server)."""

import io
from typing import Any

import numpy as np

MAX_LABELS = 40  # score labels per picture (the first boxes drawn)


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig: Any, dpi: float | None = None) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", **({"dpi": dpi} if dpi is not None else {}))
    pyplot().close(fig)
    return buf.getvalue()


def add_lines(ax: Any, lines: list[np.ndarray], color: str, lw: float, style: str) -> None:
    from matplotlib.collections import LineCollection

    if lines:
        dash = {"-": "solid", "--": "dashed", ":": "dotted", "-.": "dashdot"}.get(style, "solid")
        ax.add_collection(
            LineCollection(lines, colors=color, linewidths=lw, linestyles=dash, capstyle="butt")
        )

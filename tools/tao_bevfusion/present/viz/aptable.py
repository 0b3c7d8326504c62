"""The KITTI AP table of an evaluate run (AP11/AP40 x easy/moderate/hard x 3D/BEV/2D, strict/loose).

Input is the `log_metrics` dict tao_bevfusion.outcome collects from the log lines
`TAO3D metric/pred_instances_3d/TAO3D/<class>_<3D|BEV|2D>_AP<11|40>_<difficulty>[_strict|_loose]: v`,
keyed `<class>_<kind>_AP<n>_<difficulty>[_<overlap>]`.
"""

import re
from collections.abc import Mapping

from pydantic import BaseModel, Field

from tao_bevfusion.present.viz.figure import png, pyplot

KINDS = ("3D", "BEV", "2D")
APS = ("AP11", "AP40")
DIFFICULTIES = ("easy", "moderate", "hard")
KEY = re.compile(r"^(\w+?)_(3D|BEV|2D)_(AP11|AP40)_(easy|moderate|hard)(?:_(strict|loose))?$")


class APRow(BaseModel):
    cls: str
    kind: str = Field(description="3D, BEV or 2D.")
    ap: str = Field(description="AP11 or AP40.")
    overlap: str = Field(description="strict or loose (strict when the log gives no suffix).")
    easy: float | None = None
    moderate: float | None = None
    hard: float | None = None


class APTable(BaseModel):
    rows: list[APRow]

    def value(
        self, kind: str, ap: str, difficulty: str, overlap: str = "strict", cls: str | None = None
    ) -> float | None:
        for r in self.rows:
            if (r.kind, r.ap, r.overlap) == (kind, ap, overlap) and (cls is None or r.cls == cls):
                return getattr(r, difficulty)
        return None


def ap_table(metrics: Mapping[str, float]) -> APTable:
    """Rows in a fixed order (class, overlap, AP11 before AP40, 3D, BEV, 2D); only what the log had."""
    cells: dict[tuple[str, str, str, str], dict[str, float]] = {}
    for key, value in metrics.items():
        m = KEY.match(key)
        if m:
            cls, kind, ap, diff, overlap = m.groups()
            cells.setdefault((cls, overlap or "strict", ap, kind), {})[diff] = float(value)
    order = sorted(
        cells, key=lambda k: (k[0], k[1] != "strict", APS.index(k[2]), KINDS.index(k[3]))
    )
    return APTable(
        rows=[APRow(cls=c, kind=k, ap=a, overlap=o, **cells[(c, o, a, k)]) for c, o, a, k in order]
    )


def ap_text(table: APTable, overlaps: tuple[str, ...] = ("strict", "loose")) -> str:
    """A compact fixed-width table: one line per (class, overlap, AP, kind)."""
    if not table.rows:
        return "no AP values in the log"
    lines = [
        f"{'class':<8} {'overlap':<7} {'AP':<5} {'kind':<4} {'easy':>7} {'moder.':>7} {'hard':>7}"
    ]
    for r in table.rows:
        if r.overlap in overlaps:
            vals = " ".join(
                f"{v:7.2f}" if v is not None else f"{'-':>7}" for v in (r.easy, r.moderate, r.hard)
            )
            lines.append(f"{r.cls:<8} {r.overlap:<7} {r.ap:<5} {r.kind:<4} {vals}")
    return "\n".join(lines)


def ap_chart(table: APTable, title: str = "KITTI AP (strict)", overlap: str = "strict") -> bytes:
    """Grouped bars: one panel per AP11/AP40, bars per kind, groups per difficulty."""
    rows = [r for r in table.rows if r.overlap == overlap]
    if not rows:
        raise ValueError(f"no {overlap} AP values to chart")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3), dpi=100, sharey=True)
    for ax, ap in zip(axes, APS, strict=True):
        for j, kind in enumerate(KINDS):
            row = next((r for r in rows if r.ap == ap and r.kind == kind), None)
            if row is None:
                continue
            vals = [getattr(row, d) or 0.0 for d in DIFFICULTIES]
            bars = ax.bar([i + (j - 1) * 0.27 for i in range(3)], vals, width=0.25, label=kind)
            ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
        ax.set_xticks(range(3), DIFFICULTIES)
        ax.set_title(ap, fontsize=9)
        ax.set_ylim(0, 105)
    axes[0].set_ylabel("AP (0-100)")
    axes[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return png(fig)

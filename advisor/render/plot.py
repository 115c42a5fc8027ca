"""Plots: PNG through matplotlib (the optional `plot` extra, imported only here, only when asked)
and a terminal bar chart that needs nothing."""

from __future__ import annotations

import io
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.output import check_target, fmt_number, write_atomic

BAR_WIDTH = 40  # not-knowledge: characters of the longest terminal bar


def terminal_bars(series: list[float], label: str = "cycle") -> str:
    top = max(series) if series else 0.0
    lines = []
    for i, value in enumerate(series, 1):
        n = round(BAR_WIDTH * value / top) if top > 0 else 0
        lines.append(f"{label} {i:>3} | {'#' * n:<{BAR_WIDTH}} {fmt_number(value)}")
    return "\n".join(lines) + "\n"


def png_lines(path: Path, lines: dict[str, list[float]], *, title: str, xlabel: str, ylabel: str,
              marks: dict[str, list[tuple[str, list[int]]]] | None = None,
              xs: dict[str, list[float]] | None = None, logx: bool = False, logy: bool = False) -> None:
    """One line per series (x: its own ``xs`` or 1, 2, ...), flagged points marked (label, 1-based
    positions), written atomically."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise AdvisorError("--plot needs matplotlib", hint="pip install 'llm-finetune-advisor[plot]'") from exc
    check_target(path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    for name, ys in lines.items():
        x = (xs or {}).get(name) or list(range(1, len(ys) + 1))
        ax.plot(x, ys, marker="o", markersize=2, label=name)
        for label, at in (marks or {}).get(name, []):
            points = [i for i in at if 1 <= i <= len(ys)]
            ax.scatter([x[i - 1] for i in points], [ys[i - 1] for i in points], marker="x", s=60, zorder=3,
                       label=f"{label} on {name}")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    else:
        ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.grid(alpha=0.3)  # not-knowledge: grid line opacity
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    write_atomic(path, buffer.getvalue())

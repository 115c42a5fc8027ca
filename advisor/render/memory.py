"""Text rendering of the memory model: the itemised table and the recommendation's memory lines."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from advisor.recommendation import MemoryReport


def summary_line(mem: MemoryReport, pointer: bool = True) -> str:
    where = f"micro-batch {mem.micro_batch} x {mem.seq_len} tokens"
    if mem.gpu_gb is None or mem.usable_gb is None:
        return f"memory predicted peak {mem.total_gb:.1f} GiB at {where} (no GPU known: give --gpu to size the batch)"
    # The headroom counts the safety margin in; what is left beyond it is the part a run can grow into.
    spare = mem.usable_gb - mem.total_gb
    margin = f"{mem.safety_margin:.0%} safety margin"
    if mem.fits:
        verdict = f"fits, headroom {mem.headroom_gb:.1f} GiB, {spare:.1f} GiB beyond the {margin}"
    else:
        verdict = f"does NOT fit, {-spare:.1f} GiB over the {mem.usable_gb:.1f} GiB left under the {margin}"
    return (f"memory predicted peak {mem.total_gb:.1f} GiB of {mem.gpu_gb:.1f} GiB at {where}: {verdict} "
            f"(largest micro-batch that fits: {mem.max_micro_batch})" + ("; `advisor memory` itemises it" if pointer else ""))


def render_items(mem: MemoryReport, console: Console) -> None:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col, justify in (("component", "left"), ("GiB", "right"), ("phase", "left"), ("how", "left"),
                         ("coefficients", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for item in mem.items:
        table.add_row(item.name, f"{item.gb:.2f}", item.phase, item.detail, ", ".join(item.sources))
    paged = sum(i.gb for i in mem.items if i.phase == "paged")
    outside = (" + paged optimizer states" if paged else "") + " + CUDA context"
    table.add_row("total (peak)", f"{mem.total_gb:.2f}", "", f"reserved by torch {mem.reserved_gb:.2f} GiB{outside}", "")
    console.print(table)
    for note in mem.notes:
        console.print(f"note: {note}", highlight=False, markup=False)


def render_memory(mem: MemoryReport, console: Console, header: str) -> None:
    console.print(header, highlight=False, markup=False)
    console.print()
    render_items(mem, console)
    console.print()
    console.print(summary_line(mem, pointer=False).removeprefix("memory "), highlight=False, markup=False)
    if mem.alternatives:
        console.print("what would fit:", highlight=False, markup=False)
        for alt in mem.alternatives:
            console.print(f"  - {alt}", highlight=False, markup=False)

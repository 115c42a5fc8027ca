"""Text rendering of the memory model: the itemised table and the recommendation's memory lines."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from advisor.output import gib_digits

if TYPE_CHECKING:
    from rich.console import Console

    from advisor.memory.plan import MemoryAnswer
    from advisor.recommendation import MemoryReport


def summary_line(mem: MemoryReport, pointer: bool = True) -> str:
    split = (f" ({mem.prompt_len} prompt + {mem.seq_len - mem.prompt_len} completion)" if mem.prompt_len else "")
    where = (f"micro-batch {mem.micro_batch} x {mem.seq_len} tokens{split}"
             + (f" per GPU ({mem.parallel})" if mem.parallel else ""))
    if mem.gpu_gb is None or mem.usable_gb is None:
        return f"memory predicted peak {mem.total_gb:.1f} GiB at {where} (no GPU known: give --gpu to size the batch)"
    # The headroom counts the safety margin in; what is left beyond it is the part a run can grow into.
    spare = mem.usable_gb - mem.total_gb
    margin = f"{mem.safety_margin:.0%} safety margin"
    digits = gib_digits(mem.total_gb, mem.usable_gb)  # never "21.6 over 21.6"
    if mem.fits:
        verdict = f"fits, headroom {mem.headroom_gb:.1f} GiB, {spare:.{digits}f} GiB beyond the {margin}"
    else:
        verdict = (f"does NOT fit, {-spare:.{digits}f} GiB over the {mem.usable_gb:.{digits}f} GiB left under the "
                   f"{margin}")
    if not mem.max_micro_batch:
        largest = "not even micro-batch 1 fits"
    else:
        largest = f"largest micro-batch that fits in memory: {mem.max_micro_batch}"
        if mem.batch_share is not None and mem.batch_share < mem.max_micro_batch:
            largest += f"; the effective batch allows at most {mem.batch_share} per GPU"
    return (f"memory predicted peak {mem.total_gb:.{digits}f} GiB of {mem.gpu_gb:.1f} GiB at {where}: {verdict} "
            f"({largest})" + ("; `advisor memory` itemises it" if pointer else ""))


def render_items(mem: MemoryReport, console: Console) -> None:
    from advisor.memory.estimate import VLLM_ITEM
    from advisor.render.table import Column, print_table

    rows = [[item.name, f"{item.gb:.2f}", item.phase, item.detail, ", ".join(item.sources)] for item in mem.items]
    paged = sum(i.gb for i in mem.items if i.phase == "paged")
    vllm = any(i.name == VLLM_ITEM for i in mem.items)
    outside = (" + paged optimizer states" if paged else "") + (" + colocated vLLM" if vllm else "") + " + CUDA context"
    rows.append(["total (peak)", f"{mem.total_gb:.2f}", "", f"reserved by torch {mem.reserved_gb:.2f} GiB{outside}", ""])
    print_table(console, [Column("component"), Column("GiB", "id", justify="right"), Column("phase", "id", optional=True),
                          Column("how"), Column("coefficients", "ids")], rows)
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


def answer_json(answer: MemoryAnswer) -> str:
    return json.dumps(answer.as_dict(), indent=2) + "\n"


def render_answer(answer: MemoryAnswer, console: Console) -> None:
    from advisor.facts.model import describe_source
    from advisor.render.text import gpu_memory_text

    m, g = answer.rec.facts["model"], answer.rec.facts["gpu"]
    gpu = f"{g.get('count')} x {g.get('name') or 'GPU'} {gpu_memory_text(g)}" if g.get("usable_gib") else "no GPU known"
    shown = ", ".join(f"{k} {v if not isinstance(v, list) else '+'.join(str(x) for x in v)}"
                      for k, v in answer.settings.items())
    model = f"{m['name']} [{describe_source(str(m.get('source')), m.get('source_detail') or '', m.get('revision'))}]"
    render_memory(answer.memory, console, f"{model} {answer.method} with {answer.peft} on {gpu}; {shown}")
    for change in answer.rec.adapted:
        console.print(f"adapted to fit: {change}", highlight=False, markup=False)
    for warning in answer.rec.warnings:
        console.print(f"warning: {warning}", highlight=False, markup=False)

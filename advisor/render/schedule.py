"""`advisor schedule` for people (text), machines (json) and configs (yaml, as the seeds write it)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from advisor.output import fmt_number

if TYPE_CHECKING:
    from rich.console import Console

    from advisor.schedule import ScheduleResult

DIRECTION_TEXT = {"lr-too-high": "LR too high", "lr-too-low": "LR too low"}


def to_json(result: ScheduleResult) -> str:
    return json.dumps(result.as_dict(), indent=2) + "\n"


def to_yaml(result: ScheduleResult) -> str:
    from advisor.schedule import to_yaml as snippet

    return snippet(result.plan, result.peft)


def render_text(result: ScheduleResult, console: Console) -> None:
    from rich.table import Table

    from advisor import schedule as sched
    from advisor.render.plot import terminal_bars

    def say(text: str, end: str = "\n") -> None:
        console.print(text, highlight=False, markup=False, end=end)

    plan = result.plan
    if result.compare is not None:
        table = Table(box=None, header_style="bold", pad_edge=False,
                      title=f"Base LR {fmt_number(plan.base_lr)} across {plan.cycles} cycles", title_justify="left")
        table.add_column("decay factor")
        for i in range(1, plan.cycles + 1):
            table.add_column(f"cycle {i}", justify="right")
        for row in result.compare:
            notes = ", ".join(n for n in (row["label"] if row["factor"] != 1.0 else "", "yours" if row["yours"] else "") if n)
            factor = f"{row['factor']:.2f}"
            if float(factor) != row["factor"]:  # a --decay of 0.999 is not the constant schedule's 1.00
                factor = fmt_number(row["factor"])
            name = ("constant" if row["factor"] == 1.0 else factor) + (f" ({notes})" if notes else "")
            table.add_row(name, *(sched.compare_cell(v) for v in row["lrs"]))
        console.print(table)
    else:
        who = ", ".join(f"{k} from {v.detail}" for k, v in plan.sources.items())
        say(f"{plan.strategy} schedule, {plan.cycles} cycle{'' if plan.cycles == 1 else 's'} ({who})")
        say(terminal_bars(plan.lrs), end="")
    if plan.steps_per_cycle is not None:
        say(f"optimizer steps per cycle: {plan.steps_per_cycle} ({result.samples} samples / "
            f"{result.micro_batch or 1} micro-batch / {result.accumulation or 1} accumulation)")
    for name, item in plan.within_cycle.items():
        value = fmt_number(item["value"]) if isinstance(item["value"], float) else item["value"]
        say(f"within each cycle: {name} = {value} ({item['rule']})")
    if result.advice is not None:
        start = result.advice["start"]
        say("Starting point (experimental: the sources call these hypotheses):")
        say(f"  RAFT cycle 1 LR {fmt_number(start['learning_rate'])}, decay {fmt_number(start['lr_decay_factor'])} "
            f"per cycle [{', '.join(start['rules'])}; confidence {' / '.join(start['confidence'])}]")
        for direction, signs in result.advice["signs"].items():
            say(f"If you see ({DIRECTION_TEXT[direction]}):")
            for sign in signs:
                say(f"  - {sign['sign']}: {sign['advice']} [{sign['code']}]")
        for text in result.advice["within_cycle"]:
            say(f"Within a cycle: {text}")

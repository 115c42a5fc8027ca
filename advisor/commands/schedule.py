"""`advisor schedule`: per-cycle learning rates for RAFT-style iterative training."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

from advisor.commands import options as o
from advisor.commands.params import Option

RESULT = "advisor.schedule.ScheduleResult"
EPILOG = ("Examples:\n\n"
          "  advisor schedule --cycles 8\n\n"
          "  advisor schedule --compare --cycles 5\n\n"
          "  advisor schedule --base-lr 5e-5 --decay 0.85 --format yaml\n\n"
          "  advisor schedule --strategy manual --schedule cycle_1=5e-5,cycle_2=4e-5,cycle_3=3e-5 --plot lr.png\n\n"
          "  advisor schedule --samples 500 --micro-batch 2 --accumulation 16 --recommendations")


def schedule(
    strategy: Annotated[str, Option("--strategy", help="constant | exponential | manual")] = "exponential",
    cycles: Annotated[Optional[int], Option("--cycles", help="Number of cycles (default 5).")] = None,
    base_lr: Annotated[Optional[float], Option(
        "--base-lr", help="Cycle-1 LR (default from the rulebook: SFT LR / 4).")] = None,
    decay: Annotated[Optional[float], Option(
        "--decay", help="Per-cycle factor (--compare shows the rulebook's presets).")] = None,
    manual: Annotated[Optional[str], Option(
        "--schedule", help="Manual LRs: cycle_1=5e-5,cycle_2=4e-5,...")] = None,
    peft: o.Peft = "lora",
    sft_lr: Annotated[Optional[float], Option(
        "--sft-lr", help="Your SFT LR: the RAFT base is a quarter of it.")] = None,
    samples: Annotated[Optional[int], Option(
        "--samples", help="Filtered samples per cycle (for steps per cycle).")] = None,
    micro_batch: o.MicroBatch = None,
    accumulation: o.Accumulation = None,
    do_compare: Annotated[bool, Option("--compare", help="The seeds' decay-factor comparison table.")] = False,
    plot: o.Plot = None,
    recommendations: Annotated[bool, Option(
        "--recommendations", help="The seeds' advice and decision tree, from the rules.")] = False,
    fmt: Annotated[str, o.format_option(RESULT)] = "text",
    output: o.Output = None,
    rules: o.Rules = [],  # noqa: B006
) -> None:
    """Per-cycle learning rates for RAFT-style iterative training, from the rulebook. --format yaml
    prints the config snippet as the seeds write it."""
    from advisor import schedule as sched
    from advisor.render.emit import check_format, emit

    check_format(fmt, RESULT)
    if plot is not None:  # refused before the table is printed, not after
        from advisor.output import check_target

        check_target(plot)
    book = o.book(rules)
    result = sched.run(book, strategy=strategy, cycles=cycles, base_lr=base_lr, decay=decay, manual=manual,
                       peft=peft, sft_lr=sft_lr, samples=samples, micro_batch=micro_batch, accumulation=accumulation,
                       compare_decays=do_compare, with_advice=recommendations)
    emit(result, fmt, output)
    if plot is not None:
        from advisor.output import fmt_number
        from advisor.render.plot import png_lines

        series = ({f"decay {fmt_number(r['factor'])}": r["lrs"] for r in result.compare}
                  if result.compare is not None else {result.plan.strategy: result.plan.lrs})
        png_lines(plot, series, title="Learning rate per cycle", xlabel="cycle", ylabel="learning rate")
        sys.stderr.write(f"advisor: wrote {plot}\n")

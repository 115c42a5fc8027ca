"""`advisor diagnose`: the seeds' warning signs in a training log, with the decision tree's advice."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

from advisor.commands import options as o
from advisor.commands.params import Argument, Option
from advisor.errors import AdvisorError

RESULT = "advisor.diagnose.Diagnosis"
EPILOG = ("Examples:\n\n"
          "  advisor diagnose out/checkpoint-500/trainer_state.json\n\n"
          "  advisor diagnose runs/  (a TensorBoard log directory)\n\n"
          "  advisor diagnose --cycles-dir raft/ --samples raft/cycle_8/samples.jsonl --plot curves.png\n\n"
          "  advisor diagnose train_log.csv --max-grad-norm 0.3 --format json")


def diagnose(
    log: Annotated[Optional[Path], Argument(
        help="trainer_state.json, a .jsonl / .csv log, or a TensorBoard directory.")] = None,
    cycles_dir: Annotated[Optional[Path], Option(
        "--cycles-dir", help="A directory of RAFT cycle runs, one log per cycle.")] = None,
    samples: Annotated[Optional[Path], Option(
        "--samples", help="Generated samples (.jsonl with text, or one per line).")] = None,
    max_grad_norm: Annotated[Optional[float], Option(
        "--max-grad-norm", help="The run's clipping threshold (default: the rulebook's).")] = None,
    fmt: Annotated[str, o.format_option(RESULT)] = "text",
    fail_on: Annotated[str, o.fail_on_option("warning", "signs")] = "warning",
    plot: Annotated[Optional[Path], Option(
        "--plot", help="Write the loss and gradient-norm curves here (PNG).")] = None,
    output: o.Output = None,
    rules: o.Rules = [],  # noqa: B006
) -> int:
    """Read training logs and report the seeds' warning signs, with the decision tree's advice."""
    from advisor.diagnose import diagnose as run
    from advisor.exitcodes import check_fail_on, exit_code
    from advisor.render.emit import check_format, emit
    from advisor.telemetry import distinct_n, read_cycles, read_log, read_samples

    check_format(fmt, RESULT)
    check_fail_on(fail_on)
    if (log is None) == (cycles_dir is None):
        raise AdvisorError("give a log file or directory, or --cycles-dir (one of them)",
                           hint="advisor diagnose trainer_state.json, or advisor diagnose --cycles-dir raft/")
    book = o.book(rules)
    tel = read_cycles(cycles_dir) if cycles_dir is not None else read_log(log)  # type: ignore[arg-type]
    d2 = distinct_n(read_samples(samples)) if samples is not None else None
    result = run(book, tel, max_grad_norm=max_grad_norm, distinct_2=d2)
    emit(result, fmt, output)
    if plot is not None:
        from advisor.render.plot import png_lines

        curves = {k: tel.series[k] for k in ("loss", "grad_norm", "eval_loss") if tel.series.get(k)}
        marks: dict[str, list[tuple[str, list[int]]]] = {}
        for s in result.signs:
            if s.marks is not None:
                marks.setdefault(s.marks[0], []).append((s.code, list(s.marks[1])))
        title = f"{tel.source}: " + (", ".join(s.code for s in result.signs) or "no warning signs")
        xs = {k: [float(step) for step in tel.steps[k]] for k in curves}  # a null row leaves a gap, not a shift
        png_lines(plot, curves, title=title, xlabel=tel.position, ylabel="value", marks=marks, xs=xs)
        sys.stderr.write(f"advisor: wrote {plot}\n")
    return exit_code((s.severity for s in result.signs), fail_on)

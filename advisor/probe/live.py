"""The live view while a probe runs: a progress bar with the latest step's telemetry (stderr)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from advisor.output import fmt_number
from advisor.probe.result import EvalRecord, StepRecord


class LiveView:
    def __init__(self, total_steps: int, console: Console | None = None, *, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("probe"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            TextColumn("{task.description}"), console=self.console, transient=False, disable=not enabled,
        )
        self.task = self.progress.add_task("loading the model", total=total_steps)
        self.last_eval = ""

    def __enter__(self) -> LiveView:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.stop()

    def on_step(self, rec: StepRecord) -> None:
        speed = f"{rec.tokens_per_s:.0f}" if rec.tokens else "-"  # a trainer that logs no token count: unmeasured
        text = (f"loss {fmt_number(rec.loss)}  grad {fmt_number(rec.grad_norm)}{' (clipped)' if rec.clipped else ''}  "
                f"lr {fmt_number(rec.learning_rate)}  {speed} tok/s  mem {rec.peak_reserved_gb:.2f} GiB"
                f"{self.last_eval}")
        self.progress.update(self.task, completed=rec.step, description=text)

    def on_eval(self, ev: EvalRecord) -> None:
        self.last_eval = f"  eval {fmt_number(ev.loss)} @ {ev.step}"
        if ev.step == 0:
            self.progress.update(self.task, description=f"training; eval loss at start {fmt_number(ev.loss)}")

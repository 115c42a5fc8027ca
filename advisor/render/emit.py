"""``emit(result, format, output)``: the one way a command's result reaches stdout or a file.

A renderer is looked up by (result type, format). The table names modules as strings so that a
command imports only the renderer it uses (start-up time). A text renderer draws on a rich
Console; every other renderer returns the document as a string.
"""

from __future__ import annotations

import importlib
import io
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from advisor.errors import AdvisorError

if TYPE_CHECKING:
    from rich.console import Console

# result type (module.Class) -> {format: "module:function"}
RENDERERS: dict[str, dict[str, str]] = {
    "advisor.recommendation.Recommendation": {
        "text": "advisor.render.text:render_recommendation",
        "json": "advisor.render.data:to_json",
        "yaml": "advisor.render.data:to_yaml",
    },
    "advisor.validate.ValidationRun": {
        "text": "advisor.render.findings:render_text",
        "json": "advisor.render.findings:to_json",
        "sarif": "advisor.render.findings:to_sarif",
        "github": "advisor.render.findings:to_github",
    },
    "advisor.schedule.ScheduleResult": {
        "text": "advisor.render.schedule:render_text",
        "json": "advisor.render.schedule:to_json",
        "yaml": "advisor.render.schedule:to_yaml",
    },
    "advisor.diagnose.Diagnosis": {
        "text": "advisor.render.diagnosis:render_text",
        "json": "advisor.render.diagnosis:to_json",
    },
    "advisor.probe.report.ProbeReport": {
        "text": "advisor.probe.report:render_text",
        "json": "advisor.probe.report:to_json",
    },
    "advisor.sweep.runner.Outcome": {
        "text": "advisor.sweep.report:render_outcome",
        "json": "advisor.sweep.report:outcome_json",
    },
    "advisor.sweep.report.SweepReport": {
        "text": "advisor.sweep.report:render_text",
        "json": "advisor.sweep.report:report_json",
    },
    "advisor.memory.plan.MemoryAnswer": {
        "text": "advisor.render.memory:render_answer",
        "json": "advisor.render.memory:answer_json",
    },
    "advisor.listings.RuleListing": {
        "text": "advisor.render.listings:rules_text",
        "json": "advisor.render.listings:to_json",
    },
    "advisor.listings.RuleCheck": {
        "text": "advisor.render.listings:check_text",
        "json": "advisor.render.listings:to_json",
    },
    "advisor.listings.RuleView": {
        "text": "advisor.render.listings:rule_text",
        "json": "advisor.render.listings:to_json",
    },
    "advisor.listings.ModelListing": {
        "text": "advisor.render.listings:models_text",
        "json": "advisor.render.listings:to_json",
    },
    "advisor.listings.ModelView": {
        "text": "advisor.render.listings:model_text",
        "json": "advisor.render.listings:to_json",
    },
    "advisor.listings.GpuListing": {
        "text": "advisor.render.listings:gpus_text",
        "json": "advisor.render.listings:to_json",
    },
    "advisor.commands.evidence.EvidenceListing": {
        "text": "advisor.commands.evidence:listing_text",
        "json": "advisor.commands.evidence:listing_json",
    },
    "advisor.commands.evidence.FitResult": {
        "text": "advisor.commands.evidence:fit_text",
        "json": "advisor.commands.evidence:fit_json",
    },
}


# result type -> the renderer of every trainer format the registry can write (rules/registry/formats.yaml
# `write`: --format axolotl | llama-factory | trl); it is called with fmt=<the format's id>.
TRAINER_WRITERS: dict[str, str] = {
    "advisor.recommendation.Recommendation": "advisor.render.trainer:to_trainer_config",
}


def table(result_type: str) -> dict[str, str]:
    """The formats a result type renders in: its own and, for a recommendation, the trainers'."""
    own = RENDERERS[result_type]
    if result_type not in TRAINER_WRITERS:
        return own
    from advisor.registries import writable_format_ids

    return {**own, **dict.fromkeys(writable_format_ids(), TRAINER_WRITERS[result_type])}


def formats(result_type: str) -> tuple[str, ...]:
    return tuple(table(result_type))


def check_format(fmt: str, result_type: str) -> str:
    """Refuse an unknown --format before any work is done (a probe should not train, then fail here)."""
    if fmt not in table(result_type):
        raise AdvisorError(f"--format: unknown format {fmt!r}", hint=f"one of {', '.join(formats(result_type))}")
    return fmt


def type_name(result: Any) -> str:
    cls = type(result)
    return f"{cls.__module__}.{cls.__qualname__}"


def _renderer(result: Any, fmt: str) -> Callable[..., Any]:
    name = type_name(result)
    if name not in RENDERERS:
        raise TypeError(f"no renderer for {name}")  # a programming error: every command's result is registered
    check_format(fmt, name)
    module, _, function = table(name)[fmt].partition(":")
    render = getattr(importlib.import_module(module), function)
    if fmt in RENDERERS[name]:
        return render  # type: ignore[no-any-return]
    return lambda result, **options: render(result, fmt=fmt, **options)


# The spaces (and colour codes among them) that end a line. Rich pads every table cell, the last
# column's too, and a title to the table's width; copied output should not carry that padding.
_LINE_END_PADDING = re.compile(r"(?:\x1b\[[0-9;]*m| )+(?=\n)")


def trim_line_ends(text: str) -> str:
    """``text`` with no space before a newline; colour codes there stay (a style must still reset)."""
    return _LINE_END_PADDING.sub(lambda m: m.group(0).replace(" ", ""), text)


class _TrimmedStdout(io.TextIOBase):
    """sys.stdout as of each write, less the spaces that end a line. Rich writes each print whole,
    its line ends with it, so a write's own end (``print(end="")``) is left alone: more may follow."""

    def write(self, text: str) -> int:
        sys.stdout.write(trim_line_ends(text))
        return len(text)

    def flush(self) -> None:
        sys.stdout.flush()

    def isatty(self) -> bool:  # rich asks to choose colours and width
        return sys.stdout.isatty()

    def fileno(self) -> int:
        return sys.stdout.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(sys.stdout, "encoding", None) or "utf-8"


def console(output: Path | None = None) -> Console:
    """stdout's console, or a recording one for a file. A terminal (or an explicit COLUMNS) sets the
    width; a pipe or a file gets wide tables, not wrapped ones. Neither ends a line with spaces."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich exits 1 here, which the exit-code table gives to findings; `advisor ... | head` is not one:
            # cli.main ends it as a closed pipe (exit 0)
            self.quiet = True
            raise BrokenPipeError

    if output is not None:
        return Console(record=True, width=200, file=io.StringIO(), soft_wrap=False)
    # A text stream in all but the typing name rich asks for.
    return _Console(file=cast("IO[str]", _TrimmedStdout()), soft_wrap=False,
                    width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 200)


def to_stdout(output: Path | None) -> bool:
    """No output path, or ``-o -``: the result goes to stdout."""
    return output is None or str(output) == "-"


def write(text: str, output: Path | None) -> None:
    if to_stdout(output):
        sys.stdout.write(text)
        return
    assert output is not None
    from advisor.output import write_atomic

    write_atomic(output, text)


def emit(result: Any, fmt: str, output: Path | None = None, **options: Any) -> None:
    """Render ``result`` in ``fmt`` to stdout or, atomically, to ``output``. ``options`` go to the
    renderer (e.g. ``explain`` for a recommendation's text)."""
    render = _renderer(result, fmt)
    if to_stdout(output):
        output = None
    if fmt != "text":
        write(render(result, **options), output)
        return
    con = console(output)
    render(result, con, **options)
    if output is not None:
        write(trim_line_ends(con.export_text()), output)


def say_beside(fmt: str, output: Path | None, adapted: list[str], warnings: list[str]) -> None:
    """When the payload is a file or a pipe (a machine format, or -o), what was changed to fit the GPU and what
    still does not fit must still reach the user: one stderr line each."""
    if fmt == "text" and output is None:
        return
    for change in adapted:
        sys.stderr.write(f"advisor: adapted to fit: {' '.join(change.split())}\n")
    for warning in warnings:
        sys.stderr.write(f"advisor: warning: {' '.join(warning.split())}\n")

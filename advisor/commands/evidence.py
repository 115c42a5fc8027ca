"""`advisor evidence` and `advisor rules fit`: the published runs behind the LR rules, and their fit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from advisor.errors import AdvisorError

if TYPE_CHECKING:  # the evidence modules load only when an evidence command runs
    from advisor.evidence.rows import EvidenceRow

RulesOpt = typer.Option([], "--rules", help="A directory of your own rule files (and evidence/), layered over the "
                                            "built-in ones. Repeatable.")
FORMATS = ("text", "json")
FIT_TARGET = "lr-sft"  # a coefficient of the fitted file: the file `rules fit` rewrites is the one declaring it


def _rows(rules: list[Path]) -> list[EvidenceRow]:
    from advisor.evidence.rows import load_evidence

    rows = load_evidence(rules)
    if not rows:
        raise AdvisorError("no evidence rows found", hint="evidence files live in rules/evidence/*.yaml")
    return rows


def row_dict(row: EvidenceRow, placed: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id, "source_id": row.source_id, "model": row.model_id, "params_b": row.params_b,
        "hidden_size": row.hidden_size, "method": row.method, "variant": row.variant, "peft": row.peft,
        "learning_rate": row.learning_rate, "effective_batch": row.effective_batch, "epochs": row.epochs,
        "max_steps": row.max_steps, "dataset_size": row.dataset_size,
        "lora_rank": row.lora_rank, "beta": row.beta, "group_size": row.group_size, "tuned": row.tuned,
        "kind": row.kind, "citation": row.citation, "file": row.file,
    }
    if placed is not None:
        out["advisor"] = {"value": placed.value, "range": placed.range, "confidence": placed.confidence,
                          "rule": placed.rule, "case": placed.case}
    return out


def evidence(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Only rows of this method (sft, dpo, grpo, ppo)."),
    peft: Optional[str] = typer.Option(None, "--peft", help="Only rows of this adapter (lora, qlora, full)."),
    source: Optional[str] = typer.Option(None, "--source", help="Only rows of this source id (e.g. tulu3)."),
    rule: Optional[str] = typer.Option(None, "--rule", help="Only rows whose LR this rule sets or adjusts (LR008)."),
    tuned_only: bool = typer.Option(False, "--tuned", help="Only tuned rows (a released model's recipe, a paper's "
                                                            "setting, a sweep optimum), not framework demos."),
    rules: list[Path] = RulesOpt,
    fmt: str = typer.Option("text", "--format", "-f", help="text | json"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file (atomically)."),
) -> None:
    """List the published runs behind the learning-rate rules, with what advisor recommends for each."""
    from rich.table import Table

    from advisor.cli import _book, _check_format, _console, _emit
    from advisor.evidence.fit import place
    from advisor.facts.task import METHODS, PEFTS
    from advisor.output import fmt_value

    _check_format(fmt, FORMATS)
    for flag, value, allowed in (("--method", method, METHODS), ("--peft", peft, PEFTS)):
        if value is not None and value not in allowed:
            raise AdvisorError(f"{flag}: unknown value {value!r}", hint=f"one of {', '.join(allowed)}")
    book = _book(rules)
    rows = [r for r in _rows(rules) if (method is None or r.method == method) and (peft is None or r.peft == peft)
            and (source is None or r.source_id == source) and (r.tuned or not tuned_only)]
    placed = [place(book, r) for r in rows]
    if rule is not None:
        found = book.find(rule)
        if found is None:
            raise AdvisorError(f"--rule: no rule {rule!r}", hint="`advisor rules list -p learning_rate` shows the LR rules")
        keep = [i for i, r in enumerate(rows) if found.id in _rules_of(book, r)]
        rows, placed = [rows[i] for i in keep], [placed[i] for i in keep]
    if fmt == "json":
        _emit(json.dumps([row_dict(r, p) for r, p in zip(rows, placed, strict=True)], indent=2) + "\n", output)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("id", "model", "size", "method", "peft", "LR", "advisor", "range", "tuned", "source"):
        table.add_column(col, overflow="fold")
    for r, p in zip(rows, placed, strict=True):
        rng = f"{fmt_value(p.range[0])} – {fmt_value(p.range[1])}" if p.range else ""
        variant = r.method if r.variant == r.method else f"{r.method}/{r.variant}"
        table.add_row(r.id, r.model_id, f"{r.params_b:g}B", variant, r.peft, fmt_value(r.learning_rate),
                      fmt_value(p.value), rng, "yes" if r.tuned else "demo", r.cite())
    sources = len({r.source_id for r in rows})
    if output is not None:
        import io

        from rich.console import Console

        text_console = Console(file=io.StringIO(), width=250, record=True, soft_wrap=False)  # a file, not a terminal
        text_console.print(table)
        text_console.print(_footer(len(rows), sources), highlight=False)
        _emit(text_console.export_text(), output)
        return
    console = _console()
    console.print(table)
    console.print(_footer(len(rows), sources), highlight=False)


def _footer(rows: int, sources: int) -> str:
    return (f"{rows} rows from {sources} source{'s' if sources != 1 else ''}. advisor: what the rules give for each "
            "run's facts; the shipped coefficients are fitted with every built-in tuned row "
            "(bench/advice_agreement.py scores them held out).")


def _rules_of(book: Any, row: EvidenceRow) -> set[str]:
    """The rules along the row's LR trace (setting and adjusting)."""
    from advisor.evidence.fit import row_job
    from advisor.rulebook.resolve import Resolver

    facts, pins = row_job(row)
    state = Resolver(book, facts, pins).resolve("learning_rate")
    return {s.rule for s in state.trace if s.rule} if state is not None else set()


def fitted_file(book: Any) -> Path:
    """The coefficients file the fit rewrites: the one that declares the fitted coefficients."""
    from advisor.paths import rules_dir

    if FIT_TARGET not in book.coefficients:
        raise AdvisorError(f"no coefficient {FIT_TARGET!r} to fit", hint="the built-in rules/lr_fit.yaml declares it")
    shown = str(book.coefficients[FIT_TARGET]["_file"])
    prefix = "built-in rules/"
    return rules_dir() / shown[len(prefix):] if shown.startswith(prefix) else Path(shown)


def rules_fit(
    rules: list[Path] = RulesOpt,
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 when the committed coefficients differ "
                                                       "from a fresh fit of the evidence (CI runs this)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the fitted file here instead of over "
                                                                       "the one that declares the coefficients."),
) -> None:
    """Refit the learning-rate coefficients (rules/lr_fit.yaml) to the tuned evidence rows."""
    from advisor.cli import _book, _console
    from advisor.evidence.fit import refit_text
    from advisor.output import write_atomic
    from advisor.paths import shown_path

    book = _book(rules)
    rows = _rows(rules)
    path = fitted_file(book)
    if rules and output is None and not check and str(book.coefficients[FIT_TARGET]["_file"]).startswith("built-in"):
        raise AdvisorError("rules fit --rules: the fit with your evidence would overwrite the built-in rules/lr_fit.yaml",
                           hint="give --output DIR/lr_fit.yaml and pass --rules DIR afterwards; it layers over the built-in one")
    text = refit_text(book, rows, path)
    tuned = [r for r in rows if r.tuned]
    summary = f"{len(tuned)} tuned rows from {len({r.source_id for r in tuned})} sources"
    shown = shown_path(path)
    if check:
        if path.read_text(encoding="utf-8") != text:
            _console().print(f"{shown}: stale: a fresh fit of {summary} differs (run `advisor rules fit`)",
                             highlight=False, markup=False)
            raise typer.Exit(1)
        _console().print(f"{shown}: up to date with {summary}", highlight=False, markup=False)
        return
    write_atomic(output or path, text)
    sys.stdout.write(f"wrote {output or shown}: coefficients fitted to {summary}\n")

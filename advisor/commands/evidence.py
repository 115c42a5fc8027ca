"""`advisor evidence` and `advisor rules fit`: the published runs behind the LR rules, and their fit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

from advisor.commands import options as o
from advisor.commands.params import Option
from advisor.errors import AdvisorError

if TYPE_CHECKING:  # the evidence modules load only when an evidence command runs
    from advisor.evidence.rows import EvidenceRow

RulesOpt = Option("--rules", help="A directory of your own rule files (and evidence/), layered over the "
                                        "built-in ones. Repeatable.")
LISTING = "advisor.commands.evidence.EvidenceListing"
FIT = "advisor.commands.evidence.FitResult"
EPILOG = ("Examples:\n\n  advisor evidence --method dpo --peft full\n\n  advisor evidence --variant orpo\n\n"
          "  advisor evidence --rule LR008 --tuned --format json")
FIT_EPILOG = "Examples:\n\n  advisor rules fit\n\n  advisor rules fit --check"
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


@dataclass
class EvidenceListing:
    """`advisor evidence`: the rows asked for, each with what advisor recommends for its facts."""

    rows: list[EvidenceRow]
    placed: list[Any]


def listing_json(result: EvidenceListing) -> str:
    return json.dumps([row_dict(r, p) for r, p in zip(result.rows, result.placed, strict=True)], indent=2) + "\n"


def listing_text(result: EvidenceListing, console: Any) -> None:
    from rich.table import Table

    from advisor.output import fmt_value

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("id", "model", "size", "method", "peft", "LR", "advisor", "range", "tuned", "source"):
        table.add_column(col, overflow="fold", no_wrap=col == "id")
    for r, p in zip(result.rows, result.placed, strict=True):
        rng = f"{fmt_value(p.range[0])} – {fmt_value(p.range[1])}" if p.range else ""
        variant = r.method if r.variant == r.method else f"{r.method}/{r.variant}"
        table.add_row(r.id, r.model_id, f"{r.params_b:g}B", variant, r.peft, fmt_value(r.learning_rate),
                      fmt_value(p.value), rng, "yes" if r.tuned else "demo", r.cite())
    console.print(table)
    console.print(_footer(len(result.rows), len({r.source_id for r in result.rows})), highlight=False)


def evidence(
    method: Annotated[Optional[str], Option(
        "--method", "-m", help="Only rows of this method (sft, dpo, grpo, ppo).")] = None,
    peft: Annotated[Optional[str], Option("--peft", help="Only rows of this adapter (lora, qlora, full).")] = None,
    source: Annotated[Optional[str], Option("--source", help="Only rows of this source id (e.g. tulu3).")] = None,
    variant: Annotated[Optional[str], Option(
        "--variant", help="Only rows of this loss variant (e.g. orpo, simpo, dapo; `advisor rules list` names them).")] = None,
    rule: Annotated[Optional[str], Option(
        "--rule", help="Only rows whose LR this rule sets or adjusts (LR008).")] = None,
    tuned_only: Annotated[bool, Option(
        "--tuned", help="Only tuned rows (a released model's recipe, a paper's setting, a sweep optimum), not "
                        "framework demos.")] = False,
    rules: Annotated[list[Path], RulesOpt] = [],  # noqa: B006
    fmt: Annotated[str, o.format_option(LISTING)] = "text",
    output: o.Output = None,
) -> None:
    """List the published runs behind the learning-rate rules, with what advisor recommends for each."""
    from advisor.evidence.fit import place
    from advisor.facts.task import METHODS, PEFTS
    from advisor.render.emit import check_format, emit

    check_format(fmt, LISTING)
    from advisor.suggest import one_of

    for flag, value, allowed in (("--method", method, METHODS), ("--peft", peft, PEFTS)):
        if value is not None and value not in allowed:
            raise AdvisorError(f"{flag}: unknown value {value!r}", hint=one_of(value, allowed))
    book = o.book(rules)
    if variant is not None and variant not in book.variants:
        raise AdvisorError(f"--variant: unknown value {variant!r}", hint=one_of(variant, book.variants))
    every = _rows(rules)
    if source is not None and source not in {r.source_id for r in every}:
        from advisor.suggest import closest

        ids = sorted({r.source_id for r in every})
        near = closest(source, ids)
        raise AdvisorError(f"--source: no evidence source {source!r}",
                           hint=f"did you mean {', '.join(near)}?" if near else f"one of {', '.join(ids)}")
    rows = [r for r in every if (method is None or r.method == method) and (peft is None or r.peft == peft)
            and (source is None or r.source_id == source) and (variant is None or r.variant == variant)
            and (r.tuned or not tuned_only)]
    placed = [place(book, r) for r in rows]
    if rule is not None:
        found = book.find(rule)
        if found is None:
            raise AdvisorError(f"--rule: no rule {rule!r}", hint="`advisor rules list -p learning_rate` shows the LR rules")
        keep = [i for i, r in enumerate(rows) if found.id in _rules_of(book, r)]
        rows, placed = [rows[i] for i in keep], [placed[i] for i in keep]
    emit(EvidenceListing(rows, placed), fmt, output)


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


@dataclass
class FitResult:
    """`advisor rules fit`: what was fitted, and where it went (or, with --check, whether it is stale)."""

    path: str
    summary: str
    written: str | None = None
    stale: bool | None = None  # --check only

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.path, "fitted_to": self.summary, "written": self.written, "stale": self.stale}


def fit_json(result: FitResult) -> str:
    return json.dumps(result.as_dict(), indent=2) + "\n"


def fit_text(result: FitResult, console: Any) -> None:
    if result.stale is None:
        text = f"wrote {result.written}: coefficients fitted to {result.summary}"
    elif result.stale:
        text = f"{result.path}: stale: a fresh fit of {result.summary} differs (run `advisor rules fit`)"
    else:
        text = f"{result.path}: up to date with {result.summary}"
    console.print(text, highlight=False, markup=False)


def rules_fit(
    rules: Annotated[list[Path], RulesOpt] = [],  # noqa: B006
    check: Annotated[bool, Option(
        "--check", help="Write nothing; exit 1 when the committed coefficients differ from a fresh fit of the "
                        "evidence (CI runs this).")] = False,
    output: Annotated[Optional[Path], Option(
        "--output", "-o", help="Write the fitted file here instead of over the one that declares the "
                               "coefficients.")] = None,
    fmt: Annotated[str, o.format_option(FIT)] = "text",
) -> int:
    """Refit the learning-rate coefficients (rules/lr_fit.yaml) to the tuned evidence rows."""
    from advisor.evidence.fit import refit_text
    from advisor.exitcodes import Exit
    from advisor.output import write_atomic
    from advisor.paths import shown_path
    from advisor.render.emit import check_format, emit

    check_format(fmt, FIT)
    book = o.book(rules)
    rows = _rows(rules)
    path = fitted_file(book)
    if rules and output is None and not check and str(book.coefficients[FIT_TARGET]["_file"]).startswith("built-in"):
        raise AdvisorError("rules fit --rules: the fit with your evidence would overwrite the built-in rules/lr_fit.yaml",
                           hint="give --output DIR/lr_fit.yaml and pass --rules DIR afterwards; it layers over the built-in one")
    text = refit_text(book, rows, path)
    tuned = [r for r in rows if r.tuned]
    result = FitResult(str(shown_path(path)), f"{len(tuned)} tuned rows from {len({r.source_id for r in tuned})} sources")
    if check:
        result.stale = path.read_text(encoding="utf-8") != text
    else:
        write_atomic(output or path, text)
        result.written = str(output or result.path)
    emit(result, fmt)
    return int(Exit.FINDINGS if result.stale else Exit.OK)

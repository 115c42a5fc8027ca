"""Rich text rendering for people."""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from advisor.facts.hardware import sized_by_gpu_mem
from advisor.facts.model import describe_source
from advisor.output import fmt_count, fmt_source, fmt_value
from advisor.paths import shown_path
from advisor.recommendation import ParameterValue, Recommendation, span
from advisor.rulebook.model import Rule

CONFIDENCE_STYLE = {"high": "green", "medium": "yellow", "low": "red", "theoretical": "magenta"}


def _conf(level: str | None) -> Text:
    if level is None:
        return Text("user", style="cyan")
    return Text(level, style=CONFIDENCE_STYLE.get(level, ""))


COMPACT_BELOW = 110  # not-knowledge: terminal columns under which the rule column shows codes only
RANGE_MOVED = "*"  # marks a range that moved with its value (the row's own range is in the notes below)


def _range(pv: ParameterValue) -> str:
    if pv.range is not None:
        return span(pv.range) + (f" {RANGE_MOVED}" if pv.range_moved() else "")
    if pv.choices:
        return " | ".join(fmt_value(c) for c in pv.choices)
    return ""


def _rules_cell(pv: ParameterValue, compact: bool) -> str:
    if pv.set_by == "user":  # a flag (--sharding), a launch config's key, or --set
        detail = pv.provenance.detail if pv.provenance.source in ("flag", "config", "pin") else ""
        return f"set by you ({detail or '--set'})"
    steps = [str(s.code) if compact else f"{s.code} {s.rule}" for s in pv.trace if s.rule]
    return " → ".join(steps)


ADVISOR_SOURCE = "advisor's own quantification or choice (--explain shows each)"


def _source_key(src: dict[str, Any]) -> str:
    """A footnote per seed table (row details such as "(GRPO: 1e-5)" are left to --explain),
    per paper or repository, and one for all of advisor's own derivations."""
    if "seed" in src:
        table = re.split(r" \(|: ", str(src.get("table", "")), maxsplit=1)[0]
        return f"seed {str(src['seed'])[:3]} {table}".rstrip()
    if set(src) == {"derived"}:
        return ADVISOR_SOURCE
    return fmt_source(src)


def _sources_cell(pv: ParameterValue, numbers: dict[str, int]) -> str:
    """Footnote numbers for every source along the trace, numbered in order of first use."""
    refs: list[int] = []
    for step in pv.trace:
        for src in step.source:
            key = _source_key(src)
            n = numbers.setdefault(key, len(numbers) + 1)
            if n not in refs:
                refs.append(n)
    return ",".join(str(n) for n in refs)


def _facts_lines(rec: Recommendation) -> list[str]:
    m, g, t = rec.facts.get("model", {}), rec.facts.get("gpu", {}), rec.facts.get("task", {})
    out = []
    if m:
        moe = f", MoE {m['num_experts']}x top-{m['experts_per_token']}" if m.get("is_moe") else ""
        active = f" ({m['active_params_b']:.1f}B active)" if m.get("is_moe") else ""
        out.append(
            f"model  {m.get('name')}: {m.get('family')}, {fmt_count(float(m.get('params_b') or 0) * 1e9)} params{active}, "
            f"hidden {m.get('hidden_size')}, {m.get('num_layers')} layers{moe}, context {m.get('max_position_embeddings')}"
            f"  [{describe_source(str(m.get('source')), m.get('source_detail') or '', m.get('revision'))}]"
        )
        if m.get("family") == "unknown":
            out.append("       family not in rules/families.yaml: LoRA targets fall back to peft's all-linear; "
                       "size-based rules use the computed parameter count")
    if g:
        bf16 = {True: "bf16", False: "no bf16", None: "bf16 unknown"}[g.get("bf16")]
        if g.get("memory_gb") is None and g.get("name") is None:
            out.append(f"gpu    none known ({g.get('source')})")
        elif g.get("memory_gb") is None:  # a GPU nvidia-smi names but whose memory it cannot report
            out.append(f"gpu    {g.get('count')} x {g.get('name')}, memory unknown, {bf16}  [{g.get('source')}]")
        else:
            out.append(f"gpu    {g.get('count')} x {g.get('name') or 'GPU'} {gpu_memory_text(g)}, {bf16}  [{g.get('source')}]")
    if t:
        extras = ", ".join(f"{k} {fmt_value(v)}" for k, v in t.items() if k not in ("method", "peft") and v is not None)
        out.append(f"task   {t.get('method')} with {t.get('peft')}" + (f", {extras}" if extras else ""))
    return out


def gpu_memory_text(g: dict[str, Any]) -> str:
    """'80 GB (79.6 GiB usable)': the stated size the batch table reads, the capacity the memory model uses."""
    stated, usable = g.get("memory_gb"), g.get("usable_gib")
    if usable is None or stated is None:
        return f"{fmt_value(stated)} GB" if usable is None else f"{usable:.1f} GiB usable"
    if sized_by_gpu_mem(str(g.get("source") or "")):  # the user's one number, GiB
        return f"{usable:.1f} GiB"
    return f"{fmt_value(stated)} GB ({usable:.1f} GiB usable)"


def render_recommendation(rec: Recommendation, console: Console, *, explain: bool = False) -> None:
    for line in _facts_lines(rec):
        console.print(line, highlight=False, markup=False)
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    # Names, confidences and footnote numbers never wrap; long values and rule chains do. On a
    # narrow terminal the rule column names codes only (`advisor rules show CODE` has the rest).
    compact = console.width < COMPACT_BELOW
    table.add_column("parameter", style="bold", no_wrap=True)
    table.add_column("value")
    table.add_column("range", no_wrap=not compact)
    table.add_column("confidence", no_wrap=True)
    table.add_column("rule [sources]" if compact else "rule")
    if not compact:
        table.add_column("src", no_wrap=True)
    numbers: dict[str, int] = {}
    for name, pv in rec.parameters.items():
        chain, refs = _rules_cell(pv, compact), _sources_cell(pv, numbers)
        if compact:
            table.add_row(name, fmt_value(pv.value), _range(pv), _conf(pv.confidence),
                          Text(f"{chain} [{refs}]" if refs else chain))
        else:
            table.add_row(name, fmt_value(pv.value), _range(pv), _conf(pv.confidence), chain, refs)
    console.print()
    console.print(table)
    moved = [(name, pv) for name, pv in rec.parameters.items() if pv.range_moved()]
    if moved:
        console.print()
        console.print(f"{RANGE_MOVED} range moved with its value (adjustments scale it, constraints clamp it):",
                      highlight=False, markup=False)
        for name, pv in moved:
            console.print(f"  {name}: {pv.range_note()}", highlight=False, markup=False)
    if numbers:
        console.print()
        console.print("Sources:", highlight=False, markup=False)
        for key, n in numbers.items():
            console.print(f"  [{n}] {key}", highlight=False, markup=False)
    if rec.left_out:
        console.print()
        console.print("[bold]Left out[/bold] (unknown facts):")
        by_fact: dict[str, list[str]] = {}
        flags: dict[str, str | None] = {}
        for lo in rec.left_out:
            by_fact.setdefault(lo.missing_fact, []).append(f"{lo.rule} ({lo.parameter})")
            flags[lo.missing_fact] = lo.flag
        for fact, rules in by_fact.items():
            flag = f" — give {flags[fact]}" if flags[fact] else ""
            console.print(f"  {fact}{flag}: {', '.join(rules)}", highlight=False, markup=False)
    if rec.memory is not None:
        from advisor.render.memory import render_items, summary_line

        console.print()
        console.print(summary_line(rec.memory), highlight=False, markup=False)
        if explain:
            render_items(rec.memory, console)
    for change in rec.adapted:
        console.print(f"[bold]adapted to fit:[/bold] {change}", highlight=False)
    for warning in rec.warnings:
        console.print(f"[bold red]warning:[/bold red] {warning}", highlight=False)
    if explain:
        console.print()
        for name, pv in rec.parameters.items():
            _explain(name, pv, console)
    console.print()
    console.print(Text(rec.notice, style="dim"))


def _explain(name: str, pv: ParameterValue, console: Console) -> None:
    console.print(Text(f"{name} = {fmt_value(pv.value)} {pv.unit}".rstrip(), style="bold"))
    for i, step in enumerate(pv.trace, 1):
        if step.stage == "user":
            console.print(f"  {i}. user: set to {fmt_value(step.after)} (--set)", highlight=False, markup=False)
            continue
        if step.stage == "round":
            console.print(f"  {i}. round: {fmt_value(step.before)} -> {fmt_value(step.after)}, {step.case}",
                          highlight=False, markup=False)
            continue
        change = (f"{fmt_value(step.before)} -> {fmt_value(step.after)}" if step.before is not None
                  else f"{fmt_value(step.after)}")
        rng = f", range {span(step.range)}" if step.range is not None else ""
        console.print(f"  {i}. {step.stage}: {step.code} {step.rule} [{step.case}] {change}{rng} ({step.confidence})",
                      highlight=False, markup=False)
        if step.formula:
            inputs = ", ".join(f"{k}={fmt_value(v)}" for k, v in step.inputs.items())
            console.print(f"       formula: {step.formula}" + (f"   with {inputs}" if inputs else ""),
                          highlight=False, markup=False)
        for src in step.source:
            console.print(f"       source: {fmt_source(src)}", highlight=False, markup=False)
    for step in pv.overridden:
        console.print(f"  set aside: {step.code} {step.rule} [{step.case}] would give {fmt_value(step.after)} "
                      f"({step.confidence}); {step.inputs.get('overridden_by')} overrides it", highlight=False,
                      markup=False)
        for src in step.source:
            console.print(f"       source: {fmt_source(src)}", highlight=False, markup=False)
    if pv.range_moved():
        console.print(f"  range: {span(pv.range or [])}; {pv.range_note()}", highlight=False, markup=False)
    for note in pv.notes:
        console.print(f"  note: {_note_text(note)}", highlight=False, markup=False)


def _note_text(note: dict[str, Any]) -> str:
    srcs = note["source"] if isinstance(note["source"], list) else [note["source"]]
    return f"{' '.join(str(note['text']).split())} [{'; '.join(fmt_source(s) for s in srcs)}]"


def _when_text(raw: Any) -> str:
    if raw is None:
        return "always"
    if "all" in raw:
        return " and ".join(_when_text(r) for r in raw["all"])
    if "any" in raw:
        return "(" + " or ".join(_when_text(r) for r in raw["any"]) + ")"
    if "not" in raw:
        return f"not ({_when_text(raw['not'])})"
    if "expr" in raw:
        return str(raw["expr"])
    value = raw.get("value")
    return f"{raw['fact']} {raw['op']} {fmt_value(value) if value is not None else ''}".strip()


def _cases_table(rule: Rule, console: Console) -> None:
    raw = rule.raw
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("row", "when", "value", "range", "confidence"):
        table.add_column(col)
    cases = raw.get("cases") or [{**raw, "label": "-"}]
    for case in cases:
        value = case.get("default", case.get("formula", case.get("factor", case.get("max", case.get("min")))))
        rng = case.get("range")
        table.add_row(
            case["label"], _when_text(case.get("when")) if "when" in case else "otherwise" if "cases" in raw else "-",
            fmt_value(value), f"{fmt_value(rng[0])} – {fmt_value(rng[1])}" if rng else "",
            _conf(case.get("confidence", raw.get("confidence"))),
        )
    console.print(table)


def render_rule(rule: Rule, console: Console) -> None:
    raw = rule.raw
    console.print(Text(f"{rule.code}  {rule.id}", style="bold"))
    console.print(f"{rule.summary}", highlight=False, markup=False)
    verb = "checks" if rule.kind == "check" else "sets"
    console.print(f"kind {rule.kind}, stage {rule.stage}, {verb} {rule.parameter}; family {rule.family} "
                  f"({shown_path(rule.file)})", highlight=False, markup=False)
    console.print(f"when: {_when_text(raw.get('when'))}", highlight=False, markup=False)
    if rule.overrides:
        console.print(f"overrides: {', '.join(rule.overrides)}", highlight=False, markup=False)
    if rule.why:
        console.print(f"why: {' '.join(rule.why.split())}", highlight=False, markup=False)
    if rule.kind == "check":
        console.print(f"{rule.severity} on {rule.parameter}; confidence {rule.confidence}", highlight=False, markup=False)
        if rule.fail is not None:
            console.print(f"fails when: {' '.join(rule.fail.text.split())}", highlight=False, markup=False)
        console.print(f"message: {rule.message}", highlight=False, markup=False)
        if rule.expected:
            console.print(f"expected: {rule.expected}", highlight=False, markup=False)
        if rule.fix is not None:
            console.print(f"--fix writes: {rule.fix.text}", highlight=False, markup=False)
    elif rule.kind == "signal":
        console.print(f"sign: {rule.sign}", highlight=False, markup=False)
        console.print(f"advice: {rule.advice}", highlight=False, markup=False)
    else:
        _cases_table(rule, console)
    if raw.get("choices"):
        console.print(f"choices: {' | '.join(fmt_value(c) for c in raw['choices'])}", highlight=False, markup=False)
    for src in rule.sources:
        console.print(f"source: {fmt_source(src)}", highlight=False, markup=False)
    for note in rule.notes:
        console.print(f"note: {_note_text(note)}", highlight=False, markup=False)


def render_coefficient(raw: dict[str, Any], console: Console) -> None:
    """A named number code reads (rules/sweep.yaml, rules/memory.yaml): value, unit, source, notes."""
    def say(text: str) -> None:
        console.print(text, highlight=False, markup=False)

    console.print(Text(f"coefficient {raw['id']}", style="bold"))
    say(raw["summary"])
    unit = f" {raw['unit']}" if raw.get("unit") else ""
    say(f"value: {fmt_value(raw['value'])}{unit}; confidence {raw['confidence']} ({raw.get('_file', '?')})")
    if raw.get("range"):
        say(f"accepted range: {fmt_value(raw['range'][0])} – {fmt_value(raw['range'][1])}")
    if raw.get("why"):
        say(f"why: {' '.join(str(raw['why']).split())}")
    sources = raw["source"] if isinstance(raw["source"], list) else [raw["source"]]
    for src in sources:
        say(f"source: {fmt_source(src)}")
    for note in raw.get("notes", ()):
        say(f"note: {' '.join(str(note['text']).split())}")

"""The listing commands for people: tables whose id column stays whole at 80 columns (other columns
wrap), and the one JSON renderer they share."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from advisor.output import fmt_count, fmt_value
from advisor.render.table import Column, print_table

if TYPE_CHECKING:
    from rich.console import Console

    from advisor.listings import GpuListing, ModelListing, ModelView, RuleCheck, RuleListing, RuleView


def to_json(result: Any) -> str:
    return json.dumps(result.as_data(), indent=2, default=list) + "\n"


def rules_text(result: RuleListing, console: Console) -> None:
    print_table(console, [Column("code", "id"), Column("id", "id"), Column("kind", "id", optional=True),
                          Column("stage", "id", optional=True), Column("parameter", "id", optional=True),
                          Column("summary", least=24)],
           [[r.code, r.id, r.kind, r.stage, r.parameter, r.summary] for r in sorted(result.rules, key=lambda r: r.code)])


def rule_text(result: RuleView, console: Console) -> None:
    from advisor.render.text import render_coefficient, render_rule

    if result.coefficient is not None:
        render_coefficient(result.coefficient, console)
        return
    assert result.rule is not None
    render_rule(result.rule, console)
    if result.has_evidence:
        console.print(f"evidence: `advisor evidence --rule {result.rule.code}` lists the published runs whose LR it "
                      "sets or adjusts (model, LR, advisor's value, source)", highlight=False, markup=False)


def check_text(result: RuleCheck, console: Console) -> None:
    console.print(f"ok: {len(result.own)} rules from {', '.join(str(d) for d in result.directories)} "
                  f"({len(result.replaced)} replace built-in rules), {result.total} rules in all, no conflicts",
                  highlight=False, markup=False)


def models_text(result: ModelListing, console: Console) -> None:
    rows = []
    for f in result.facts():
        params = f"{f.params_b:.1f}B" + (f" ({f.active_params_b:.1f}B act.)" if f.is_moe else "")
        rows.append([f.name, ", ".join(result.aliases(f.name)), f.family, params, str(f.hidden_size),
                     str(f.num_layers), f"{f.num_heads}/{f.num_kv_heads}", str(f.max_position_embeddings),
                     str(f.vocab_size), result.checked(f.name)])
    print_table(console, [Column("id", "id"), Column("aliases", "ids"), Column("family", "id", optional=True), Column("params"),
                          Column("hidden", optional=True), Column("layers", optional=True),
                          Column("heads/kv", optional=True), Column("context", optional=True),
                          Column("vocab", optional=True), Column("checked", optional=True)], rows)
    console.print("checked: no number marked unverified in rules/models.yaml, whose comments cite the config.json copies; "
                  "partly / no: `--format json` lists the keys under `unverified`", highlight=False, markup=False)


def model_text(result: ModelView, console: Console) -> None:
    data = result.facts.as_dict()
    f = result.facts
    console.print(f"{f.name}: {f.family}, {fmt_count(f.params_b * 1e9)} params"
                  + (f" ({fmt_count(f.active_params_b * 1e9)} active)" if f.is_moe else "")
                  + f"  [{f.describe_source()}]", highlight=False, markup=False)
    width = max(len(k) for k in data)
    for key, value in data.items():
        if key in ("name", "source", "source_detail", "revision") or value in (None, [], {}):
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else fmt_value(value)
        console.print(f"  {key:<{width}}  {shown}", highlight=False, markup=False)
    unverified = result.unverified()
    if unverified:
        console.print("unverified (no citable config.json copy checked them): "
                      + ("every number" if unverified == "all" else ", ".join(unverified)), highlight=False, markup=False)


def gpus_text(result: GpuListing, console: Console) -> None:
    from advisor.facts.hardware import registry_usable_gib

    rows = []
    for g in result.book.gpus.values():
        usable = f"{registry_usable_gib(g):.1f} GiB" + ("" if "usable_mib" in g else " (stated size)")
        rows.append([g["id"], g["name"], f"{g['memory_gb']:g} GB", usable, "yes" if g["bf16"] else "no",
                     g["compute_capability"], ", ".join(g.get("aliases", []))])
    print_table(console, [Column("id", "id"), Column("name"), Column("stated", "id", justify="right"),
                          Column("usable", "id", justify="right"), Column("bf16", optional=True),
                          Column("compute", optional=True), Column("aliases", "ids")], rows)

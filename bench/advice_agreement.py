"""Score advisor's learning rates against the published runs in rules/evidence/, leave-one-source-out.

For each source, the LR coefficients are refitted on the tuned rows of every other source; the
engine then places each held-out row as `advisor recommend` would for that run's facts. Prints,
per method and overall, how often the published LR lies inside advisor's range, the median range
width, and how often advisor's default is within 2x; the same for beta, LoRA rank and GRPO group
size (rules not fitted to the evidence, so every row is out of sample). The seed tables read
literally (the LR001 row each trace starts from) are scored on the same rows.

    python bench/advice_agreement.py            # print the tables
    python bench/advice_agreement.py --write    # also write bench/results/advice_agreement.{md,json}

tests/test_evidence.py recomputes the JSON figures and fails when the shipped rules no longer
reproduce them.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advisor.evidence.rows import EvidenceRow, load_evidence  # noqa: E402
from advisor.evidence.score import AGREE, EPS, Report, Scored, leave_one_source_out, other_summary, summary  # noqa: E402
from advisor.rulebook.load import load_rulebook  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def _settings(rows: Sequence[EvidenceRow]) -> list[tuple[str, bool]]:
    """(method, adapter) pairs the rows hold, full weights before LoRA, in the rulebook's method order."""
    order = {r.method: r.method for r in rows}  # first seen
    return sorted({(r.method, r.adapter) for r in rows}, key=lambda k: (list(order).index(k[0]), k[1]))


def ceiling(rows: Sequence[EvidenceRow]) -> float:
    """In sample, the share of tuned rows within 2x of the best single LR per (method, full | LoRA),
    chosen with every row in view: what no rule reading only those facts can beat."""
    hits = 0
    tuned = [r for r in rows if r.tuned]
    for method, adapter in _settings(tuned):
        logs = [math.log10(r.learning_rate) for r in tuned if r.method == method and r.adapter == adapter]
        if logs:
            grid = [min(logs) + i / 100 for i in range(int((max(logs) - min(logs)) * 100) + 2)]
            hits += max(sum(abs(x - c) <= math.log10(AGREE) + EPS for x in logs) for c in grid)
    return round(hits / len(tuned), 3)


FACTORS = (2, 3, 5, 10)  # not-knowledge: the factors the spread of the held-out misses is shown at


def spread(scored: Sequence[Scored]) -> dict[str, Any]:
    """How far the held-out defaults miss: the share within each of FACTORS, and the factor either side of
    the default that would hold 95% of the rows (a range centred on the default would be its square wide)."""
    errors = sorted(abs(s.placed.log_error) for s in scored)
    within = {f"{f}x": round(sum(e <= math.log10(f) + EPS for e in errors) / len(errors), 3) for f in FACTORS}
    k = max(0, math.ceil(0.95 * len(errors)) - 1)
    return {"within": within, "factor_for_95": round(10 ** errors[k], 2)}


def figures(report: Report) -> dict[str, Any]:
    """Everything the results file and the test carry, from one leave-one-source-out run."""
    tuned = report.tuned()
    by: dict[str, Any] = {}
    for method, adapter in _settings([s.placed.row for s in tuned]):
        rows = [s for s in tuned if s.placed.row.method == method and s.placed.row.adapter == adapter]
        if rows:
            by[f"{method} {'lora' if adapter else 'full'}"] = summary(rows)
    others = {p: other_summary([o for o in report.others if o.parameter == p and o.row.tuned])
              for p in ("beta", "lora_rank", "num_generations")}
    return {"tuned": summary(tuned), "demo": summary(report.demos()), "by_setting": by, "others": others,
            "sources": report.sources, "rows": len(report.rows),
            "in_sample_ceiling_within_2x": ceiling([s.placed.row for s in report.rows]),
            "tuned_spread": spread(tuned)}


def spread_line(sp: dict[str, Any]) -> str:
    shares = ", ".join(f"{_pct(v)} within {k}" for k, v in sp["within"].items())
    f = sp["factor_for_95"]
    return (f"Held out, the defaults of the tuned rows are {shares}. A range centred on the default would have "
            f"to reach {f:g}x either side ({f * f:.0f}x wide) to hold 95% of them.")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def table(fig: dict[str, Any]) -> str:
    lines = ["| setting (tuned rows) | rows | sources | LR in range | median width | default within 2x | seed table within 2x "
             "| mean factor off | seed mean factor off |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in [*fig["by_setting"].items(), ("**all tuned**", fig["tuned"]), ("demos (not fitted)", fig["demo"])]:
        lines.append(f"| {name} | {s['rows']} | {s['sources']} | {_pct(s['in_range_share'])} | {s['median_width']}x | "
                     f"{_pct(s['within_2x_share'])} | {_pct(s['seed_within_2x_share'])} | {s['mean_factor_off']}x | "
                     f"{s['seed_mean_factor_off']}x |")
    lines += ["", "| other setting (tuned rows that state it) | rows | inside advisor's range | default within 2x |",
              "| --- | --- | --- | --- |"]
    for name, s in fig["others"].items():
        lines.append(f"| {name} | {s['rows']} | {_pct(s['in_range_share'])} | {_pct(s['within_2x_share'])} |")
    return "\n".join(lines)


def misses(rows: Sequence[Scored]) -> str:
    out = ["| row | published | advisor (held out) | range |", "| --- | --- | --- | --- |"]
    for s in rows:
        if s.inside and s.agrees:
            continue
        p = s.placed
        rng = f"{p.range[0]:.2g} – {p.range[1]:.2g}" if p.range else "-"
        out.append(f"| {p.row.id} ({p.row.method} {p.row.peft}, {p.row.params_b:g}B) | {p.row.learning_rate:.2g} | "
                   f"{p.value:.3g} | {rng} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="write bench/results/advice_agreement.md and .json")
    args = ap.parse_args(argv)
    started = time.time()
    book = load_rulebook()
    rows = load_evidence()
    report = leave_one_source_out(book, rows)
    fig = figures(report)
    text = table(fig)
    print(text)
    print(f"\nIn sample, the best single LR per (method, full | LoRA) puts {_pct(fig['in_sample_ceiling_within_2x'])} "
          "of the tuned rows within 2x: the ceiling for any rule that reads only those facts.")
    print(f"\n{spread_line(fig['tuned_spread'])}")
    print(f"\n{fig['rows']} rows from {fig['sources']} sources, leave-one-source-out, in {time.time() - started:.1f}s")
    if args.write:
        (RESULTS / "advice_agreement.json").write_text(json.dumps(fig, indent=2, sort_keys=True) + "\n")
        body = (RESULTS / "advice_agreement.md").read_text() if (RESULTS / "advice_agreement.md").exists() else ""
        head, marker = body.split("<!-- figures -->")[0] if "<!-- figures -->" in body else body, "<!-- figures -->"
        (RESULTS / "advice_agreement.md").write_text(
            f"{head.rstrip()}\n\n{marker}\n\n{text}\n\nIn sample, the best single LR per (method, full | LoRA) puts "
            f"{_pct(fig['in_sample_ceiling_within_2x'])} of the tuned rows within 2x.\n\n"
            f"{spread_line(fig['tuned_spread'])}\n\n"
            "Rows outside the range or over 2x off (held out):\n\n"
            f"{misses(report.tuned())}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

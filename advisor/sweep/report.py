"""The sweep's report, shaped like the seeds' experiments (002, 003): a results table with status
labels, the optimal band and sensitivity, loss curves on one plot and per run, all_results.json,
per-run run_data.json and a README.md that answers the experiment's questions."""

from __future__ import annotations

import json
import math
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.output import fmt_number, write_atomic
from advisor.safeio import clip, clip_path, load_json, read_text, stat_path
from advisor.sweep import analysis as an
from advisor.sweep.records import INT, LIST, NUMBER, OBJECT, TEXT, RecordError, RunRecord, is_kind

RESULTS_NAME = "all_results.json"  # every run and the summary, in the sweep's --out-dir
MAX_RESULTS_BYTES = 200_000_000  # not-knowledge: far above any sweep's records


@dataclass
class Row:
    run: RunRecord
    status: str
    converge_step: int | None
    speed: str


@dataclass
class SweepReport:
    strategy: str
    subject: str  # what was probed, in words
    rows: list[Row]
    best: RunRecord | None
    band: tuple[float, float] | None
    intervals: list[an.Interval]
    recommended_lr: float | None
    recommended_rule: str | None
    total_steps: int
    full_run_steps: int
    thresholds: an.Thresholds | None = None
    range_test: dict[str, Any] | None = None

    @property
    def completed(self) -> list[Row]:
        return [r for r in self.rows if r.run.status == "complete"]

    def found(self) -> bool:
        """Whether the sweep answered: a best LR, or a range test's suggestion."""
        return self.best is not None or bool((self.range_test or {}).get("suggestion"))


def _unstable(run: RunRecord) -> bool:
    start, end = run.eval_loss_start, run.eval_loss_end
    return run.diverged or not an.finite(end) or (an.finite(start) and end is not None and start is not None
                                                   and end > start)


def build(runs: list[RunRecord], t: an.Thresholds, *, strategy: str, subject: str, full_run_steps: int,
          recommended_lr: float | None, recommended_rule: str | None, range_test: dict[str, Any] | None,
          range_test_steps: int = 0) -> SweepReport:
    """Label every run against the best complete one, and read the band, sensitivity and speed."""
    complete = [r for r in runs if r.status == "complete" and an.finite(r.eval_loss_end) and not _unstable(r)]
    best = min(complete, key=lambda r: (r.eval_loss_end, r.lr)) if complete else None
    rows = []
    for run in sorted(runs, key=lambda r: r.lr):
        step, speed = an.convergence([x for x in run.loss if x is not None], t)
        if run.status != "complete":
            status = run.status
        elif best is None:
            status = "unstable"
        else:
            assert best.eval_loss_end is not None
            status = an.label(run.lr, run.eval_loss_end, best.lr, best.eval_loss_end, unstable=_unstable(run), t=t)
        rows.append(Row(run, status, step, speed))
    band = an.optimal_band([(r.run.lr, r.status) for r in rows if r.run.status == "complete"])
    intervals = (an.sensitivity([(r.run.lr, r.run.eval_loss_end) for r in rows  # type: ignore[misc]
                                 if r.run.status == "complete" and r.status != "unstable"], best.eval_loss_end, t)
                 if best is not None and best.eval_loss_end is not None else [])
    total = sum(r.optimizer_steps for r in runs) + range_test_steps
    return SweepReport(strategy=strategy, subject=subject, rows=rows, best=best, band=band, intervals=intervals,
                       recommended_lr=recommended_lr, recommended_rule=recommended_rule, total_steps=total,
                       full_run_steps=full_run_steps, range_test=range_test, thresholds=t)


# --- a finished sweep, read back -------------------------------------------------------------

def _field(data: dict[str, Any], key: str, where: str, kind: str, *, null: bool = False) -> Any:
    value = data.get(key)
    if value is None and null:
        return None
    if not is_kind(kind, value):
        raise RecordError(f"{where}: {key} = {clip(value)} is not what `advisor sweep` writes there",
                          hint=f"{RESULTS_NAME} as the sweep wrote it")
    return value


def _range_test(data: dict[str, Any], where: str) -> dict[str, Any] | None:
    """The stored range test, checked where the report reads it."""
    rt = _field(data, "range_test", where, OBJECT, null=True)
    if rt is None:
        return None
    at = f"{where}: range_test"
    _field(rt, "steps", at, INT)
    _field(rt, "method", at, TEXT)
    for key in ("lrs", "losses", "smoothed"):
        values = _field(rt, key, at, LIST)
        if not all(v is None or is_kind(NUMBER, v) for v in values):
            raise RecordError(f"{at}: {key} = {clip(values)} holds something other than numbers")
    if not rt["lrs"]:
        raise RecordError(f"{at}: lrs is empty", hint=f"{RESULTS_NAME} as the sweep wrote it")
    _field(rt, "suggestion", at, NUMBER, null=True)
    band = _field(rt, "band", at, LIST, null=rt.get("suggestion") is None)
    if band is not None and (len(band) != 2 or not all(is_kind(NUMBER, v) for v in band)):
        raise RecordError(f"{at}: band = {clip(band)} is not [LO, HI]")
    return dict(rt)


def analyse(path: Path, t: an.Thresholds) -> SweepReport:
    """A finished sweep's report, built again from the records it wrote (``RESULTS_NAME`` in its out dir,
    or that file named) and judged by today's thresholds: `advisor sweep --analyse`. Nothing is trained."""
    info = stat_path(path, "sweep's records", RecordError)
    file = path / RESULTS_NAME if stat.S_ISDIR(info.st_mode) else path
    if file is not path and not file.exists():
        raise RecordError(f"{clip_path(path)}: no {RESULTS_NAME} in this directory",
                          hint="give the sweep's --out-dir, or its all_results.json")
    where = clip_path(file)
    data = load_json(read_text(file, limit=MAX_RESULTS_BYTES, what="sweep's records", error=RecordError), where,
                     RecordError)
    if not isinstance(data, dict):
        raise RecordError(f"{where}: not a sweep's records (a JSON {type(data).__name__}, not an object)",
                          hint=f"the {RESULTS_NAME} `advisor sweep` writes")
    raw_runs = _field(data, "runs", where, LIST)
    runs = [RunRecord.check(r, f"{where}: runs[{i}]") for i, r in enumerate(raw_runs)]
    steps = _field(data, "full_run_steps", where, INT)
    if steps < 1:
        raise RecordError(f"{where}: full_run_steps = {steps} must be at least 1")
    rt = _range_test(data, where)
    return build(runs, t, strategy=_field(data, "strategy", where, TEXT), subject=_field(data, "subject", where, TEXT),
                 full_run_steps=steps, recommended_lr=_field(data, "recommended_lr", where, NUMBER, null=True),
                 recommended_rule=_field(data, "recommended_rule", where, TEXT, null=True), range_test=rt,
                 range_test_steps=rt["steps"] if rt else 0)


def report_json(rep: SweepReport) -> str:
    return json.dumps(summary_json(rep), indent=2) + "\n"


# --- words ---------------------------------------------------------------------------------

def _f(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return "diverged" if x is not None else "-"
    return f"{x:.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def answers(rep: SweepReport) -> list[tuple[str, str]]:
    """Seed 002's four questions, answered from the runs."""
    out = []
    best = rep.best
    if best is None:
        out.append(("Which LR gave lowest final loss?", "none: no run finished with a finite, falling eval loss"))
    else:
        by_train = min((r.run for r in rep.completed if an.finite(r.run.train_loss_end)),
                       key=lambda r: r.train_loss_end or math.inf, default=None)
        extra = ""
        if by_train is not None and by_train.lr != best.lr:
            extra = f" (lowest final train loss: {fmt_number(by_train.lr)} at {_f(by_train.train_loss_end)})"
        out.append(("Which LR gave lowest final loss?",
                    f"{fmt_number(best.lr)}: final eval loss {_f(best.eval_loss_end)}, perplexity "
                    f"{_f(best.perplexity, 2)}{extra}"))
    unstable = [r for r in rep.rows if r.status == "unstable"]
    if unstable:
        why = []
        for r in unstable:
            reason = ("loss or gradient became NaN/inf" if r.run.diverged or not an.finite(r.run.eval_loss_end)
                      else "eval loss ended above where it started" if _unstable(r.run)
                      else "eval loss far above the best run's")
            signs = f"; signs {', '.join(r.run.signs)}" if r.run.signs else ""
            why.append(f"{fmt_number(r.run.lr)} ({reason}{signs})")
        text = "yes: " + "; ".join(why)
    else:
        text = "no run diverged or ended above its starting eval loss"
    flagged = [r for r in rep.rows if r.status != "unstable" and r.run.signs]
    if flagged:
        text += "; warning signs in " + ", ".join(f"{fmt_number(r.run.lr)} ({', '.join(r.run.signs)})"
                                                  for r in flagged)
    out.append(("Did any LRs diverge or show instability?", text))
    speeds = [f"{fmt_number(r.run.lr)}: {r.speed}" + (f" ({r.converge_step} steps)" if r.converge_step else "")
              for r in rep.completed]
    out.append(("How did convergence speed differ?",
                "; ".join(speeds) + " — steps until the smoothed training loss made "
                f"{100 * (rep.thresholds.converge_fraction if rep.thresholds else 1):g}% of its drop"
                if speeds else "no complete runs"))
    out.append(("Does the recommended LR appear optimal for this setup?", verdict_on_recommendation(rep)))
    return out


def _band(band: tuple[float, float] | None) -> str:
    if band is None:
        return "-"
    if band[0] == band[1]:
        return f"({fmt_number(band[0])} alone: no neighbour within the 'excellent' gap)"
    return f"{fmt_number(band[0])} – {fmt_number(band[1])}"


def verdict_on_recommendation(rep: SweepReport) -> str:
    rec, best = rep.recommended_lr, rep.best
    if rec is None:
        return "the rulebook gave no learning rate for these facts"
    rule = f" ({rep.recommended_rule})" if rep.recommended_rule else ""
    if best is None:
        return f"cannot tell: no run finished cleanly; the rulebook recommends {fmt_number(rec)}{rule}"
    ratio = best.lr / rec
    tried = next((r for r in rep.rows if an.same_lr(r.run.lr, rec)), None)
    status = f", labelled '{tried.status}' here" if tried else ""
    band = _band(rep.band)
    if rep.band is not None and rep.band[0] <= rec <= rep.band[1]:
        where = f"inside the optimal band {band}"
    elif rep.band is not None:
        where = f"outside the optimal band {band}"
    else:
        where = "no band could be read"
    return (f"the rulebook recommends {fmt_number(rec)}{rule}{status}; the best LR here is {fmt_number(best.lr)} "
            f"({float(f'{ratio:.2g}'):g}x the recommendation), {where}")


def _label_legend(t: an.Thresholds) -> str:
    def p(x: float) -> str:
        return f"{100 * x:g}%"

    return (f"Status labels follow seed 003's status column, with advisor's thresholds (rules/sweep.yaml): "
            f"'excellent' within {p(t.excellent_gap)} of the best final eval loss; below the best LR 'good' within "
            f"{p(t.good_gap_below)}, then 'slow'; above it 'good' within {p(t.good_gap_above)}, 'declining' within "
            f"{p(t.declining_gap)}, 'poor' within {p(t.poor_gap)}, then 'unstable'. A run whose loss went NaN/inf "
            "or whose eval loss ended above its start is 'unstable'; 'pruned' runs were stopped early by "
            "successive halving.")


def markdown(rep: SweepReport) -> str:
    lines = [f"# Learning-rate sweep: {rep.subject}", "",
             f"Strategy `{rep.strategy}`: {len(rep.rows)} run(s), {rep.total_steps} optimizer steps in all "
             f"({rep.total_steps / rep.full_run_steps:.1f} full runs of {rep.full_run_steps} steps).", "",
             "| Learning Rate | Final Train Loss | Final Eval Loss | Perplexity | Token Accuracy | Training Time (s) | Steps "
             "| Convergence | Status |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rep.rows:
        run = r.run
        lines.append(f"| {fmt_number(run.lr)} | {_f(run.train_loss_end)} | {_f(run.eval_loss_end)} | "
                     f"{_f(run.perplexity, 2)} | {_pct(run.eval_accuracy_end)} | {run.wall_s:.1f} | "
                     f"{run.optimizer_steps} | {r.speed} | {r.status} |")
    if rep.thresholds is not None:
        lines += ["", _label_legend(rep.thresholds), ""]
    if rep.band:
        lines.append(f"**Optimal band**: {_band(rep.band)} (the contiguous optimal / excellent runs).")
    if rep.intervals:
        low = [f"{fmt_number(i.lo)}–{fmt_number(i.hi)}" for i in rep.intervals if i.sensitivity == "low"]
        high = [f"{fmt_number(i.lo)}–{fmt_number(i.hi)}" for i in rep.intervals if i.sensitivity == "high"]
        lines.append(f"**Sensitivity** (final loss change per decade of LR, relative to the best): low in "
                     f"{', '.join(low) or 'none'}; high in {', '.join(high) or 'none'}.")
    if rep.range_test:
        rt = rep.range_test
        lines += ["", f"**Range test**: {rt['steps']} steps, LR {fmt_number(rt['lrs'][0])} → "
                      f"{fmt_number(rt['lrs'][-1])}; suggestion ({rt['method']}) {fmt_number(rt['suggestion'])}, "
                      f"band {fmt_number(rt['band'][0])} – {fmt_number(rt['band'][1])}"
                      + (f"; stopped at LR {fmt_number(rt['lrs'][-1])} when the smoothed loss diverged"
                         if rt.get("stopped") else "") + "."]
    lines += ["", "## Questions", ""]
    for question, answer in answers(rep):
        lines += [f"**{question}**", f"- {answer}", ""]
    lines += ["## Files", "",
              "- `lr_comparison.png`: training and eval loss of every run on one plot",
              "- `lr_<LR>/loss_vs_steps.png`, `lr_<LR>/run_data.json`: each run",
              "- `all_results.json`: every run and this summary, machine-readable", ""]
    lines += ["These runs are short probes of one model, one data set and one seed: the labels say how the "
              "learning rates compare here, not a law. Confirm the chosen LR on the full run's first hundred steps.", ""]
    return "\n".join(lines)


def summary_json(rep: SweepReport) -> dict[str, Any]:
    return {
        "strategy": rep.strategy,
        "subject": rep.subject,
        "best_lr": rep.best.lr if rep.best else None,
        "best_eval_loss": rep.best.eval_loss_end if rep.best else None,
        "optimal_band": list(rep.band) if rep.band else None,
        "recommended_lr": rep.recommended_lr,
        "recommended_rule": rep.recommended_rule,
        "total_optimizer_steps": rep.total_steps,
        "full_run_steps": rep.full_run_steps,
        "sensitivity": [{"lo": i.lo, "hi": i.hi, "per_decade": i.per_decade, "sensitivity": i.sensitivity}
                        for i in rep.intervals],
        "range_test": rep.range_test,
        "answers": dict(answers(rep)),
        "runs": [{**r.run.to_json(), "label": r.status, "convergence": r.speed, "converge_step": r.converge_step}
                 for r in rep.rows],
    }


def run_dir_name(lr: float) -> str:
    return f"lr_{lr:.3g}"


def write(rep: SweepReport, out: Path, *, plots: bool = True) -> list[Path]:
    """Write every output (atomically, file by file) and return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    summary = summary_json(rep)
    for row, data in zip(rep.rows, summary["runs"], strict=True):
        d = out / run_dir_name(row.run.lr)
        d.mkdir(exist_ok=True)
        write_atomic(d / "run_data.json", json.dumps(data, indent=2) + "\n")
        written.append(d / "run_data.json")
    write_atomic(out / RESULTS_NAME, json.dumps(summary, indent=2) + "\n")
    write_atomic(out / "README.md", markdown(rep))
    written += [out / RESULTS_NAME, out / "README.md"]
    if plots:
        written += _plots(rep, out)
    return written


def _plots(rep: SweepReport, out: Path) -> list[Path]:
    from advisor.render.plot import png_lines

    lines: dict[str, list[float]] = {}
    xs: dict[str, list[float]] = {}
    for r in rep.rows:
        finite_pts = [(s, v) for s, v in zip(r.run.steps, r.run.loss, strict=False) if v is not None and math.isfinite(v)]
        if finite_pts:
            name = f"lr {fmt_number(r.run.lr)} ({r.status})"
            xs[name], lines[name] = [float(s) for s, _ in finite_pts], [v for _, v in finite_pts]
    paths = []
    if lines:
        png_lines(out / "lr_comparison.png", lines, xs=xs, title=f"Training loss by learning rate: {rep.subject}",
                  xlabel="optimizer step", ylabel="training loss")
        paths.append(out / "lr_comparison.png")
    for r in rep.rows:
        run = r.run
        series: dict[str, list[float]] = {}
        sx: dict[str, list[float]] = {}
        for name, steps, values in (("train loss", run.steps, run.loss), ("eval loss", run.eval_steps, run.eval_loss),
                                    ("grad norm", run.steps, run.grad_norm)):
            pts = [(s, v) for s, v in zip(steps, values, strict=False) if v is not None and math.isfinite(v)]
            if pts:
                sx[name], series[name] = [float(s) for s, _ in pts], [v for _, v in pts]
        if series:
            path = out / run_dir_name(run.lr) / "loss_vs_steps.png"
            png_lines(path, series, xs=sx, title=f"LR {fmt_number(run.lr)}: {r.status}", xlabel="optimizer step",
                      ylabel="loss / grad norm", logy=True)
            paths.append(path)
    if rep.range_test and rep.range_test.get("lrs"):
        rt = rep.range_test
        png_lines(out / "range_test.png", {"loss": rt["losses"], "smoothed": rt["smoothed"]},
                  xs={"loss": rt["lrs"], "smoothed": rt["lrs"]}, logx=True,
                  title=f"LR range test: suggestion {fmt_number(rt['suggestion'])} ({rt['method']})",
                  xlabel="learning rate", ylabel="training loss")
        paths.append(out / "range_test.png")
    return paths


def render_text(rep: SweepReport, console: Any) -> None:
    """The results table and the answers, for the terminal."""
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("lr", "train loss", "eval loss", "perplexity", "accuracy", "train s", "steps", "convergence", "status"):
        table.add_column(col)
    for r in rep.rows:
        run = r.run
        table.add_row(fmt_number(run.lr), _f(run.train_loss_end), _f(run.eval_loss_end), _f(run.perplexity, 2),
                      _pct(run.eval_accuracy_end), f"{run.wall_s:.1f}", str(run.optimizer_steps), r.speed, r.status)
    if rep.rows:
        console.print(table)
    if rep.band:
        console.print(f"optimal band: {_band(rep.band)}", highlight=False, markup=False)
    if rep.range_test and rep.range_test.get("suggestion") is not None:
        rt = rep.range_test
        console.print(f"range test ({rt['steps']} steps): suggestion {fmt_number(rt['suggestion'])} ({rt['method']}), "
                      f"band {fmt_number(rt['band'][0])} – {fmt_number(rt['band'][1])}", highlight=False, markup=False)
    console.print(f"optimizer steps: {rep.total_steps} ({rep.total_steps / rep.full_run_steps:.1f} full runs)",
                  highlight=False, markup=False)
    for question, answer in answers(rep):
        console.print(f"{question} {answer}", highlight=False, markup=False)


def render_outcome(outcome: Any, console: Any) -> None:
    """A finished sweep (advisor.sweep.runner.Outcome): the table, the answers, and what was written."""
    render_text(outcome.report, console)
    if outcome.rule_file is not None:
        console.print(f"wrote rule {outcome.rule_file} (use it with --rules {outcome.rule_file.parent})",
                      highlight=False, markup=False)
    console.print(f"wrote {len(outcome.written)} files in {outcome.out}: README.md, all_results.json, run_data.json "
                  "and plots per run", highlight=False, markup=False)


def outcome_json(outcome: Any) -> str:
    return report_json(outcome.report)

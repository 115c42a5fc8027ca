"""The probe's report: telemetry judged by the signal rules, a verdict, JSON, markdown and a plot.

The probe's steps become the same Telemetry that `advisor diagnose` reads from training logs,
and the same rules judge it (advisor.rulebook.judge): one mechanism, two sources.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor import __version__, registries
from advisor.diagnose import log_facts
from advisor.exitcodes import Exit, exit_code
from advisor.output import fmt_number, write_atomic
from advisor.probe.checks import plan_findings
from advisor.probe.plan import ProbePlan, plan_parameters
from advisor.probe.predict import Prediction, memory_margin, predicted_memory
from advisor.probe.result import ProbeResult
from advisor.provenance import Source
from advisor.rulebook.check import Finding
from advisor.rulebook.judge import (
    Sign,
    Unjudged,
    applicable,
    judge,
    signal_rules,
    unjudged_lines,
    unmet_need,
)
from advisor.rulebook.load import Rulebook
from advisor.telemetry import Telemetry, distinct_n, series_name

FAIL_ON = ("error", "warning", "never")


@dataclass
class ProbeReport:
    plan: ProbePlan
    result: ProbeResult
    telemetry: Telemetry
    signs: list[Sign]
    not_judged: list[Unjudged]
    verdict: str
    exit_code: int
    fail_on: str
    prediction: Prediction | None
    notes: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)  # validate's checks on the plan (advisor.probe.checks)
    written: dict[str, Path] = field(default_factory=dict)  # the artefacts write_outputs wrote

    def summary(self) -> dict[str, Any]:
        steps = self.result.steps
        losses = [s.loss for s in steps]
        finite = [v for v in losses if math.isfinite(v)]
        timed = [s.step_time_s for s in steps[1:]] or [s.step_time_s for s in steps]  # the first step warms up
        # a trainer that logs no token count (TRL's CPO / ORPO / KTO) measures none: null, not 0 tokens/s
        tps = ([s.tokens_per_s for s in steps[1:]] or [s.tokens_per_s for s in steps]) if any(s.tokens for s in steps) else []
        return {
            "steps_run": len(steps),
            "loss_first": _num(losses[0]) if losses else None,
            "loss_last": _num(losses[-1]) if losses else None,
            "loss_fell": bool(len(finite) >= 2 and _tenth_mean(finite, last=True) < _tenth_mean(finite, last=False)),
            "clip_rate": sum(s.clipped for s in steps) / len(steps) if steps else None,
            "median_grad_norm": _num(statistics.median([s.grad_norm for s in steps])) if steps else None,
            "median_step_time_s": statistics.median(timed) if timed else None,
            "median_tokens_per_s": statistics.median(tps) if tps else None,
            "peak_allocated_gb": max((s.peak_allocated_gb for s in steps), default=None),
            "peak_reserved_gb": max((s.peak_reserved_gb for s in steps), default=None),
            "wall_time_s": self.result.wall_time_s,
            "load_time_s": self.result.load_time_s,
        }

    def method_summary(self) -> dict[str, Any] | None:
        """The method's own telemetry, first and last logged step (DPO's rewards, GRPO's reward and groups),
        by the series names the signal rules read; None for the LM-step probe."""
        if not self.result.logs:
            return None
        series = self.telemetry.series
        out: dict[str, Any] = {"trainer": self.result.trainer}
        for name in sorted(series):
            if name in STEP_SERIES or name in SKIP_SERIES or not series[name]:
                continue
            values = series[name]
            out[name] = {"first": _num(values[0]), "last": _num(values[-1]),
                         "mean": _num(sum(values) / len(values))}
        texts = [str(x["completion"]) for x in self.result.samples]
        if texts:
            out["distinct_2"] = _num(distinct_n(texts, 2))
            out["samples"] = len(texts)
        return out

    def projection(self) -> dict[str, Any] | None:
        step_time = self.summary()["median_step_time_s"]
        if self.plan.full_run_steps is None or step_time is None:
            return None
        seconds = self.plan.full_run_steps * step_time
        micro, accum = self.result.micro_batch_size, self.result.gradient_accumulation_steps
        return {"full_run_steps": self.plan.full_run_steps, "steps_from": self.plan.full_run_steps_source,
                "step_time_s": step_time, "seconds": seconds, "hours": seconds / 3600,  # not-knowledge: s per h
                "device": self.result.device_name or self.result.device,
                "micro_batch_size": micro, "gradient_accumulation_steps": accum, "effective_batch": micro * accum}

    def as_dict(self) -> dict[str, Any]:
        plan, res = self.plan, self.result
        ev_start, ev_end = res.eval_start, res.eval_end
        return {
            "advisor_version": __version__,
            "report": "probe",
            "verdict": self.verdict,
            "exit_code": self.exit_code,
            "fail_on": self.fail_on,
            "status": res.status,
            "stop_reason": res.stop_reason,
            "plan": plan_dict(plan),
            "device": {"kind": res.device, "name": res.device_name, "precision": res.precision,
                       "memory_capacity_gb": res.memory_capacity_gb, "memory_measured_as": res.memory_kind},
            "model": {"notes": res.model_notes, "trainable_params": res.trainable_params,
                      "total_params": res.total_params, "tokenizer": res.tokenizer},
            "data": {"source": plan.data.path or "built-in corpus", "notes": res.data_notes},
            "ran_with": {"micro_batch_size": res.micro_batch_size,
                         "gradient_accumulation_steps": res.gradient_accumulation_steps},
            "summary": self.summary(),
            "eval": {"start": ev_start.as_dict() if ev_start else None, "end": ev_end.as_dict() if ev_end else None},
            "evals": [e.as_dict() for e in res.evals],
            "steps": [s.as_dict() for s in res.steps],
            "memory": {"peak_reserved_gb": self.summary()["peak_reserved_gb"],
                       "capacity_gb": res.memory_capacity_gb,
                       "predicted": self.prediction.as_dict() if self.prediction else None,
                       "prediction_compared": bool(self.prediction is not None and res.device == "cuda")},
            "oom": res.oom.as_dict() if res.oom else None,
            "projection": self.projection(),
            "trainer": res.trainer,
            "method_telemetry": self.method_summary(),
            "samples": res.samples[:SAMPLES_IN_REPORT],
            "trainer_logs": res.logs,
            "findings": [f.as_dict() for f in self.findings],
            "signs": [s.as_dict() for s in self.signs],
            "not_judged": [u.as_dict() for u in self.not_judged],
            "notes": self.notes,
        }


def _num(v: float) -> float | str:
    return v if math.isfinite(v) else str(v)


def _tenth_mean(values: list[float], *, last: bool) -> float:
    n = max(1, round(len(values) / 10))  # not-knowledge: the same tenths the loss rules read
    part = values[-n:] if last else values[:n]
    return sum(part) / len(part)


def plan_dict(plan: ProbePlan) -> dict[str, Any]:
    lora = None if plan.peft == "full" else {
        "rank": plan.lora_rank, "alpha": plan.lora_alpha, "dropout": plan.lora_dropout,
        "target_modules": list(plan.lora_target_modules)}
    ran = plan_parameters(plan)
    return {
        "model": {"spec": plan.model.spec, "kind": plan.model.kind, "load_from": plan.model.load_from,
                  "random_init": plan.model.random_init, "name": plan.facts.name, "family": plan.facts.family,
                  "params_b": plan.facts.params_b},
        "method": plan.method, "method_given": plan.method_given, "variant": plan.variant, "peft": plan.peft,
        "learning_rate": plan.learning_rate, "steps": plan.steps, "seed": plan.seed,
        "micro_batch_size": plan.micro_batch_size, "gradient_accumulation_steps": plan.gradient_accumulation_steps,
        "effective_batch": plan.effective_batch, "sequences_per_example": plan.sequences_per_example,
        "seq_len": plan.seq_len, "lr_scheduler_type": plan.lr_scheduler_type, "warmup_steps": plan.warmup_steps,
        "schedule_steps": plan.schedule_total, "schedule": plan.schedule_words(),
        "max_grad_norm": plan.max_grad_norm, "optimizer": plan.optimizer, "weight_decay": plan.weight_decay,
        "lora": lora, "gradient_checkpointing": plan.gradient_checkpointing, "bf16": plan.bf16,
        "max_memory_gb": plan.max_memory_gb, "device": plan.device,
        "config": {"path": plan.config_path, "format": plan.config_format} if plan.config_path else None,
        "gpu": {"name": plan.gpu.name, "memory_gb": plan.gpu.memory_gb, "source": plan.gpu.source},
        "sources": {name: sourced.as_dict() for name, sourced in plan.sources.items()},
        # A knob that is also a plan field (max_seq_length: seq_len) is reported there, at the value the probe ran.
        "settings": {name: sourced.as_dict() for name, sourced in plan.settings.items() if name not in ran},
    }


def to_telemetry(plan: ProbePlan, result: ProbeResult) -> Telemetry:
    tel = Telemetry(source=f"probe of {plan.model.spec}", reader="probe")
    for s in result.steps:
        tel.add("loss", s.step, s.loss)
        tel.add("grad_norm", s.step, s.grad_norm)
        tel.add("learning_rate", s.step, s.learning_rate)
        tel.add("peak_memory_gb", s.step, s.peak_reserved_gb)
    for e in result.evals:
        tel.add("eval_loss", e.step, e.loss)
    for row in result.logs:  # a TRL trainer's own keys, named as `advisor diagnose` names them
        for key, value in row.items():
            name = series_name(key)
            if name is not None and name not in STEP_SERIES and not isinstance(value, bool):
                tel.add(name, int(row.get("step", 0)), value)
    return tel


STEP_SERIES = ("loss", "grad_norm", "learning_rate", "peak_memory_gb")  # one point per optimizer step
SKIP_SERIES = ("epoch", "num_tokens", "step_time")  # TRL's bookkeeping keys: not the method's telemetry
SAMPLES_IN_REPORT = 16  # not-knowledge: completions shown in probe-report.json (distinct-n reads them all)


def short_probe_warning(book: Rulebook, plan: ProbePlan) -> str | None:
    """Said before training: the signs --steps is too short to judge (None: every per-step sign can be).
    Signs on the evaluations (SIG002 needs 3; the probe evaluates at the start and end) depend on
    --eval-every rather than --steps: the report lists them as not judged, with the reason."""
    counts = dict.fromkeys(STEP_SERIES, plan.steps)
    short = [(rule.code, why) for rule in signal_rules(book)
             if rule.needs and all(series in counts for series, _ in rule.needs)
             and (why := unmet_need(rule, counts)) is not None]
    if not short:
        return None
    least = max(n for rule in signal_rules(book) for series, n in rule.needs if series in STEP_SERIES)
    return (f"--steps {plan.steps} is too short to judge {', '.join(f'{c} ({why})' for c, why in short)}: they will "
            f"be listed as not judged, not passed; --steps {least} or more judges every loss sign")


def make_report(book: Rulebook, plan: ProbePlan, result: ProbeResult, fail_on: str = "error",
                prediction: Prediction | None = None) -> ProbeReport:
    """Judge the run by the signal rules; the verdict follows ``fail_on`` (error | warning | never)."""
    if prediction is None:
        prediction = predicted_memory(book, plan, result.micro_batch_size or None, result.prompt_tokens)
    tel = to_telemetry(plan, result)
    facts = log_facts(tel, max_grad_norm=plan.max_grad_norm if plan.max_grad_norm is not None else math.inf)
    if result.memory_capacity_gb is not None:
        facts["log.memory_capacity_gb"] = result.memory_capacity_gb
    margin = memory_margin(book)
    if margin is not None:
        facts["log.memory_margin"] = margin
    if prediction is not None and result.device == "cuda":
        facts["log.predicted_memory_gb"] = prediction.reserved_gb
    texts = [str(x["completion"]) for x in result.samples]
    if texts:
        facts["log.distinct_2"] = distinct_n(texts, 2)  # the seeds' "outputs become repetitive" (SIG005)
    signs, unjudged = judge(book, facts, tel) if result.steps else ([], [])
    findings = plan_findings(book, plan)
    notes = list(plan.notes)
    spec = registries.method(plan.method)
    # What of the method's step the probe runs (rules/registry/methods.yaml): for its own TRL trainer, not a
    # variant's; a method SFTTrainer trains (continued pretraining) runs as the probe's own LM step, its loss
    lm_step = spec is not None and spec.trl_trainer == "SFTTrainer" and not result.trainer.startswith("trl.")
    if spec is not None and spec.probe_note and (spec.trl_trainer in result.trainer or lm_step):
        notes.insert(0, spec.probe_note)
    if result.trainer:
        notes.insert(0, f"trained by {result.trainer}")
    if spec is not None and spec.value_model:
        notes.append(f"{spec.name}'s value and reward models are neither trained nor measured here, and the memory "
                     "prediction counts the policy (and reference) only: add them to the memory you plan for")
    if prediction is None:
        notes.append("no memory prediction: the memory model (advisor.memory) is not available for this job")
    elif result.device != "cuda":
        notes.append("the memory model predicts GPU memory; on the CPU (fp32, no CUDA allocator) it is shown, not compared")
    if result.status == "no_fit":
        verdict, code = "could-not-run", Exit.COULD_NOT_RUN
    elif result.status == "interrupted":
        verdict, code = "interrupted", Exit.INTERRUPTED
    elif exit_code([*(s.severity for s in signs), *(f.severity for f in findings)], fail_on):
        verdict, code = "fail", Exit.FINDINGS
    elif _nothing_judged(book, facts, unjudged or [], {*STEP_SERIES, *(n for row in result.logs for k in row
                                                                         if (n := series_name(k)) is not None)}):
        verdict, code = "not-judged", Exit.OK
    else:
        verdict, code = "pass", Exit.OK
    return ProbeReport(plan=plan, result=result, telemetry=tel, signs=signs, not_judged=unjudged or [],
                       verdict=verdict, exit_code=code, fail_on=fail_on, prediction=prediction, notes=notes,
                       findings=findings)


LR_DIRECTIONS = ("lr-too-high", "lr-too-low")  # rules.schema.json directions of the signs that judge the LR


def _nothing_judged(book: Rulebook, facts: dict[str, Any], unjudged: list[Unjudged], per_step: set[str]) -> bool:
    """Nothing failed, and no LR sign that reads a per-step curve (a rule whose `needs` are series with a
    point every step) could be judged: too few steps for the run to say anything about the LR, so the verdict
    is "not judged", not a pass (warnings, the one-point signs such as NaN or clipping, and the start-to-end
    evaluation are still shown)."""
    curves = {r.code for r in applicable(book, facts)
              if r.direction in LR_DIRECTIONS and r.needs and all(series in per_step for series, _ in r.needs)}
    return curves <= {u.code for u in unjudged}


# --- outputs ------------------------------------------------------------------------------------

def _gb(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} GiB"


def _duration(seconds: float) -> str:
    if seconds < 120:  # not-knowledge: display units
        return f"{seconds:.0f} s"
    if seconds < 7200:  # not-knowledge: display units
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def headline(report: ProbeReport) -> list[str]:
    """The lines the terminal and the markdown summary share."""
    plan, res, s = report.plan, report.result, report.summary()
    name = plan.method_given or plan.method
    if plan.variant is not None and plan.variant not in (name, plan.method):  # a loss key picked it (--set loss_type)
        name = f"{name} ({plan.variant})"
    lines = [f"probe of {plan.model.spec}: {name} with {plan.peft}, "
             f"lr {fmt_number(plan.learning_rate)}, {s['steps_run']}/{plan.steps} steps, "
             f"micro-batch {res.micro_batch_size} x accumulation {res.gradient_accumulation_steps}, "
             f"seq {plan.seq_len}, on {res.device} ({res.device_name}, {res.precision})",
             f"LR schedule: {plan.schedule_words()}"]
    if plan.single_gpu_note:
        lines.append(plan.single_gpu_note)
    batch = [plan.sources.get(name) for name in ("micro_batch_size", "gradient_accumulation_steps")]
    if any(b is not None and b.source is not Source.FLAG for b in batch):  # not both the user's own flags
        lines.append(f"batch: micro-batch {plan.micro_batch_size} ({batch[0].describe() if batch[0] else '?'}), "
                     f"accumulation {plan.gradient_accumulation_steps} "
                     f"({batch[1].describe() if batch[1] else '?'}): effective batch {plan.effective_batch}")
    if plan.has_warmup and plan.steps < plan.warmup_steps:
        lines.append(f"the probe ends inside the warmup (step {plan.steps} of {plan.warmup_steps}): it trained at up "
                     f"to {(plan.steps - 1) / plan.warmup_steps:.0%} of the peak LR, so the verdict is on those first "
                     f"steps; "
                     f"--steps {plan.warmup_steps} reaches the peak")
    if s["loss_first"] is not None:
        # An RL loss is the policy-gradient surrogate (zero-mean advantages): its change means nothing, and
        # the loss signs skip such logs (rules/signals.yaml `when: log.reward missing`), so no fell / rose.
        rl = any("reward" in row for row in res.logs)
        loss = (f"{_fmt(s['loss_first'])} -> {_fmt(s['loss_last'])} (the policy-gradient surrogate, near zero by "
                "construction: the RL signs judge this run)") if rl else _loss_change(s["loss_first"], s["loss_last"])
        lines.append(f"loss {loss}; grad norm median "
                     f"{_fmt(s['median_grad_norm'])}, clipped in {_share(s['clip_rate'], s['steps_run'])}")
    lines += method_lines(report)
    ev0, ev1 = res.eval_start, res.eval_end
    if ev0 is not None and ev1 is not None:
        lines.append(f"held-out loss {_fmt(ev0.loss)} -> {_fmt(ev1.loss)}, token accuracy "
                     f"{ev0.token_accuracy:.1%} -> {ev1.token_accuracy:.1%}, perplexity {_fmt(ev1.perplexity)}")
    if s["median_step_time_s"] is not None:
        speed = "tokens/s not measured" if s["median_tokens_per_s"] is None else f"{s['median_tokens_per_s']:.0f} tokens/s"
        lines.append(f"{speed}, {s['median_step_time_s']:.3f} s/step; "
                     f"peak memory {_gb(s['peak_allocated_gb'])} allocated, {_gb(s['peak_reserved_gb'])} reserved"
                     + (f" of {_gb(res.memory_capacity_gb)}" if res.memory_capacity_gb else ""))
    if report.prediction is not None:
        lines.append(f"memory model: {_gb(report.prediction.reserved_gb)} reserved predicted"
                     + ("" if res.device == "cuda" else " (a GPU prediction: not compared on CPU)"))
    if res.oom is not None:
        o = res.oom
        tried = ", ".join(f"{a.micro_batch} {'fits' if a.fits else 'OOM'}"
                         + ("" if a.during == "check" else f" ({a.during})") for a in o.attempts)
        lines.append(f"out of memory at micro-batch {o.failed_micro_batch} ({o.sequences} x {o.seq_len} tokens, step "
                     f"{o.at_step}); tried {tried}")
        if o.largest_fit:
            lines.append(f"largest micro-batch that fits: {o.largest_fit}; accumulation {o.accumulation} keeps the "
                         f"effective batch at {o.effective_batch} (was {plan.effective_batch})")
        elif any(a.during != "check" for a in o.attempts):
            lines.append(f"no micro-batch held up in training: {res.stop_reason}; give the run headroom "
                         "(a smaller --micro-batch, or a --max-memory below the device's)")
        else:
            lines.append("not even a micro-batch of 1 fits: shorten --seq-len, turn on gradient checkpointing, or use QLoRA")
    proj = report.projection()
    if proj is not None:
        lines.append(f"projected full run: {proj['full_run_steps']} steps ({proj['steps_from']}) x "
                     f"{proj['step_time_s']:.3f} s = {_duration(proj['seconds'])} on this device, at micro-batch "
                     f"{proj['micro_batch_size']} x accumulation {proj['gradient_accumulation_steps']} "
                     f"(effective batch {proj['effective_batch']})")
    return lines


def _loss_change(first: Any, last: Any) -> str:
    """'7.63 -> 7.41 (fell 2.9%)': the change in words that match the printed numbers (a change the
    printed digits hide is shown with more of them)."""
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (first, last)):
        return f"{_fmt(first)} -> {_fmt(last)}"
    a, b = _fmt(first), _fmt(last)
    if a == b and first != last:
        a, b = f"{first:.6g}", f"{last:.6g}"
    if first == last or a == b:
        return f"{a} -> {b} (unchanged)"
    change = (last - first) / abs(first) if first else math.inf
    pct = abs(change) * 100
    return f"{a} -> {b} ({'fell' if last < first else 'rose'} {pct:.0f}%)" if pct >= 10 else \
        f"{a} -> {b} ({'fell' if last < first else 'rose'} {pct:.2g}%)"


def _share(rate: float | None, steps: int) -> str:
    """'3 of 24 steps (12%)', 'all 4 steps', 'none of the 4 steps'."""
    if rate is None or not steps:
        return "no steps"
    n = round(rate * steps)
    if n == 0:
        return f"none of the {steps} steps"
    if n == steps:
        return f"all {steps} steps" if steps > 1 else "the one step"
    return f"{n} of {steps} steps ({rate:.0%})"


def method_lines(report: ProbeReport) -> list[str]:
    """The method's own telemetry (a TRL run): DPO's rewards, GRPO's rewards, groups and completions."""
    m = report.method_summary()
    if m is None:
        return []
    out = [f"trainer: {m['trainer']}"]

    def span(name: str, label: str) -> str | None:
        v = m.get(name)
        return None if v is None else f"{label} {_fmt(v['first'])} -> {_fmt(v['last'])}"

    dpo = [x for x in (span("rewards_chosen", "chosen reward"), span("rewards_rejected", "rejected"),
                       span("rewards_margins", "margin"), span("rewards_accuracies", "reward accuracy")) if x]
    if dpo:
        out.append("preference: " + ", ".join(dpo))
    rl = [x for x in (span("reward", "reward mean"), span("reward_std", "std"),
                      span("frac_reward_zero_std", "zero-variance groups"), span("kl", "KL")) if x]
    if rl:
        out.append("RL: " + ", ".join(rl))
    if "entropy" in m:
        out.append(f"policy entropy {_fmt(m['entropy']['first'])} -> {_fmt(m['entropy']['last'])}")
    if "completions_mean_length" in m:
        length = m["completions_mean_length"]
        clipped = m.get("completions_clipped_ratio")
        out.append(f"completions: mean length {_fmt(length['mean'])} tokens"
                   + (f", {clipped['mean']:.0%} of them at the cap" if clipped and isinstance(clipped["mean"], float)
                      else "")
                   + (f", distinct-2 {_fmt(m['distinct_2'])} over {m['samples']}" if "distinct_2" in m else ""))
    for sample in report.result.samples[:2]:
        text = " ".join(str(sample["completion"]).split())[:80]  # not-knowledge: a line's worth
        out.append(f"  sample (step {sample['step']}, reward {_fmt(sample['reward'])}): {text!r}")
    return out


def _fmt(v: Any) -> str:
    return fmt_number(v) if isinstance(v, (int, float)) and math.isfinite(v) else str(v)


def verdict_lines(report: ProbeReport) -> list[str]:
    out = []
    for s in report.signs:
        out.append(f"{s.code} {s.severity}: {s.summary}")
        out.append(f"    measured: {s.evidence}")
        out.append(f"    advice: {s.advice} ({s.rule}, confidence {s.confidence})")
    for f in report.findings:
        out.append(f"{f.code} {f.severity} (config check): {f.message}")
        out.append(f"    from: {f.key}; expected: {f.expected}")
    out += unjudged_lines(report.not_judged)
    word = {"pass": "PASS", "fail": "FAIL", "could-not-run": "COULD NOT RUN", "interrupted": "INTERRUPTED",
            "not-judged": "NOT JUDGED"}[report.verdict]
    severities = [*(s.severity for s in report.signs), *(f.severity for f in report.findings)]
    warnings = severities.count("warning")
    errors = severities.count("error")
    out.append(f"verdict: {word} ({errors} error(s), {warnings} warning(s); fail on {report.fail_on})"
               + (f"; {report.result.stop_reason}" if report.result.stop_reason else "")
               + ("; too few steps to judge the LR by its curves: more --steps for a verdict" if word == "NOT JUDGED" else ""))
    return out


def render_text(report: ProbeReport, console: Any) -> None:
    for line in [*headline(report), *verdict_lines(report)]:
        console.print(line, highlight=False, markup=False)
    if report.written:
        console.print("wrote " + ", ".join(str(p) for p in report.written.values()), highlight=False, markup=False)


def to_json(report: ProbeReport) -> str:
    return json.dumps(report.as_dict(), indent=2) + "\n"


def _from(plan: ProbePlan, name: str) -> str:
    sourced = plan.sources.get(name)
    return sourced.describe() if sourced is not None else ""


def to_markdown(report: ProbeReport, plot: str | None) -> str:
    plan = report.plan
    lines = [f"# Probe: {plan.model.spec} ({plan.method_given or plan.method}, {plan.peft})", "",
             f"**Verdict: {report.verdict}** (exit code {report.exit_code})", ""]
    lines += [f"- {line}" for line in headline(report)]
    lines += ["", "## Signs", ""]
    if not report.signs and not report.findings:
        lines.append("No warning signs.")
    for s in report.signs:
        lines += [f"- **{s.code} {s.severity}**: {s.summary}", f"  - measured: {s.evidence}",
                  f"  - advice: {s.advice} (`{s.rule}`, confidence {s.confidence})"]
    for f in report.findings:
        lines += [f"- **{f.code} {f.severity}** (config check): {f.message}", f"  - from: {f.key}; expected: {f.expected}"]
    if report.not_judged:
        lines += ["", "Not judged:", "", *[f"- {u.code}: {u.reason}" for u in report.not_judged]]
    if plot:
        lines += ["", f"![loss and gradient norm]({plot})"]
    lines += ["", "## Settings", "", "| setting | value | from |", "| --- | --- | --- |"]
    pd = plan_dict(plan)
    for key in ("learning_rate", "lr_scheduler_type", "warmup_steps", "max_grad_norm", "optimizer", "micro_batch_size",
                "gradient_accumulation_steps", "seq_len", "gradient_checkpointing", "bf16", "steps", "seed"):
        src_key = {"seq_len": "max_seq_length", "warmup_steps": "warmup_ratio"}.get(key, key)
        lines.append(f"| {key} | {pd[key]} | {_from(plan, src_key)} |")
    if pd["lora"]:
        for key, value in pd["lora"].items():
            lines.append(f"| lora_{key} | {value} | {_from(plan, 'lora_' + key)} |")
    notes = [*report.notes, *report.result.model_notes, *report.result.data_notes, f"tokenizer: {report.result.tokenizer}"]
    lines += ["", "## Notes", "", *[f"- {n}" for n in notes if n], ""]
    return "\n".join(lines)


def write_outputs(report: ProbeReport, out_dir: Path) -> dict[str, Path]:
    """probe-report.json, probe-summary.md and probe-curves.png (when matplotlib is installed)."""
    from advisor.errors import AdvisorError

    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    plot_name: str | None = None
    if report.result.steps:
        from advisor.render.plot import png_lines

        curves = {k: report.telemetry.series[k] for k in ("loss", "grad_norm") if report.telemetry.series.get(k)}
        marks: dict[str, list[tuple[str, list[int]]]] = {}
        for s in report.signs:
            if s.marks is not None:
                marks.setdefault(s.marks[0], []).append((s.code, list(s.marks[1])))
        try:
            png_lines(out_dir / "probe-curves.png", curves, xlabel="optimizer step", ylabel="value", marks=marks,
                      title=f"probe of {report.plan.model.spec}: " + (", ".join(s.code for s in report.signs) or "no signs"))
            written["plot"] = out_dir / "probe-curves.png"
            plot_name = "probe-curves.png"
        except AdvisorError as exc:  # matplotlib missing: the report says so instead of failing the probe
            report.notes.append(f"no plot: {exc}")
    write_atomic(out_dir / "probe-report.json", json.dumps(report.as_dict(), indent=2) + "\n")
    written["json"] = out_dir / "probe-report.json"
    write_atomic(out_dir / "probe-summary.md", to_markdown(report, plot_name))
    if report.result.trainer_state is not None:  # TRL's own log, as a user's run writes it: `advisor diagnose` reads it
        write_atomic(out_dir / "trainer_state.json", json.dumps(report.result.trainer_state, indent=2) + "\n")
        written["trainer_state"] = out_dir / "trainer_state.json"
    written["markdown"] = out_dir / "probe-summary.md"
    return written

"""Run a sweep: the strategies (grid, range-test, halving) over probe runs as optuna trials.

``grid``: the given learning rates, each a probe run of the same steps and seed (seed 002's
experiment as a command). ``range-test``: one run whose LR rises exponentially (Smith's LR range
test), stopped when the smoothed loss diverges; its suggestion is fastai's ``minimum`` (a tenth
of the LR at the loss minimum, the default), fastai's ``valley`` or Lightning's ``steepest``.
``halving``: a range test, then candidates log-spaced over the band around its suggestion plus
the rulebook's LR, pruned by optuna's SuccessiveHalvingPruner.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError
from advisor.registries import check_flag
from advisor.rulebook.load import Rulebook
from advisor.sweep import analysis as an
from advisor.sweep import study as st
from advisor.sweep.records import RunRecord

STRATEGIES = ("halving", "grid", "range-test")
SUGGESTIONS = ("minimum", "valley", "steepest")
DEFAULT_SUGGESTION = SUGGESTIONS[0]  # fastai's lr_min; a grid stores it too, so a resumed study matches its spec
SPEC_VERSION = 1  # not-knowledge: bumps when the stored specification changes shape


@dataclass
class Events:
    """What the command line shows while a sweep runs (all optional)."""

    trial_start: Callable[[int, float], None] | None = None
    step: Callable[[float, Any], None] | None = None  # (lr, StepRecord)
    trial_end: Callable[[RunRecord], None] | None = None
    waiting: Callable[[int], None] | None = None
    message: Callable[[str], None] | None = None

    def say(self, text: str) -> None:
        if self.message is not None:
            self.message(text)


def file_digest(path: str | None) -> str | None:
    if path is None:
        return None
    p = Path(path)
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f.relative_to(p).as_posix().encode())
            h.update(f.read_bytes())
        return h.hexdigest()[:16]
    return hashlib.sha256(p.read_bytes()).hexdigest()[:16] if p.is_file() else None


def make_spec(*, strategy: str, probe: dict[str, Any], steps: int, eval_every: int, seed: int,
              lrs: list[float] | None, suggest: str, book: Rulebook) -> dict[str, Any]:
    """Everything a worker needs to run this sweep's trials; stored in the study."""
    if strategy not in STRATEGIES:
        raise AdvisorError(f"--strategy: unknown strategy {strategy!r}", hint=f"one of {', '.join(STRATEGIES)}")
    if suggest not in SUGGESTIONS:
        raise AdvisorError(f"--suggest: unknown rule {suggest!r}", hint=f"one of {', '.join(SUGGESTIONS)}")
    check_flag("--steps", steps)
    check_flag("--eval-every", eval_every)
    spec: dict[str, Any] = {
        "version": SPEC_VERSION, "strategy": strategy, "probe": probe, "steps": steps, "seed": seed,
        "suggest": suggest,
        "digests": {k: file_digest(probe.get(k)) for k in ("config", "data") if probe.get(k)},
    }
    if strategy == "grid":
        if not lrs:
            raise AdvisorError("--strategy grid needs learning rates", hint="--lrs 1e-5,2e-4,1e-3 or --lr-range LO:HI")
        spec["lrs"] = sorted(set(lrs))
        spec["eval_every"] = eval_every
    elif strategy == "halving":
        eta = int(book.coefficient("halving-reduction-factor"))
        first = max(1, round(steps * float(book.coefficient("halving-min-resource"))))
        spec.update(reduction_factor=eta, min_resource=first, eval_every=first,
                    candidates=int(book.coefficient("halving-candidates")))
    else:
        spec["eval_every"] = eval_every
    return spec


def pruner_for(spec: dict[str, Any]) -> Any:
    import optuna

    if spec["strategy"] == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec["min_resource"],
                                                       reduction_factor=spec["reduction_factor"])
    return optuna.pruners.NopPruner()


# --- probe runs ------------------------------------------------------------------------------

class Prober:
    """Runs probes for one sweep: the plan is built once and varied per trial (LR, steps, seed)."""

    def __init__(self, book: Rulebook, spec: dict[str, Any], events: Events) -> None:
        from advisor.probe import build_plan

        self.book = book
        self.spec = spec
        self.events = events
        for key, digest in spec.get("digests", {}).items():
            if file_digest(spec["probe"][key]) != digest:
                raise st.SweepError(f"{spec['probe'][key]}: differs from the file this sweep was started with",
                                    hint="workers must see the same config and data files")
        self.plan = build_plan(book, **plan_kwargs(spec["probe"]))
        if "plan" in spec:
            mine = plan_signature(self.plan)
            differ = sorted(k for k in set(mine) | set(spec["plan"]) if mine.get(k) != spec["plan"].get(k))
            if differ:
                raise st.SweepError(f"this worker would probe something else than the sweep's first process "
                                    f"({', '.join(differ)})",
                                    hint="run workers with the same advisor version, --rules and model files")
        self.partial: RunRecord | None = None

    def run(self, lr: float, *, steps: int, eval_every: int, on_eval: Callable[[Any], None] | None = None,
            lr_lambda: Callable[[int], float] | None = None,
            on_step: Callable[[Any], None] | None = None) -> RunRecord:
        """One probe run. When a callback raises (a pruned trial), ``self.partial`` holds what the run
        measured until then and the exception propagates."""
        from advisor.probe import make_report, run_probe

        plan = self.plan.with_(learning_rate=lr, steps=steps, schedule_steps=steps, seed=self.spec["seed"])
        steps_seen: list[Any] = []
        evals_seen: list[Any] = []

        def step_cb(rec: Any) -> None:
            steps_seen.append(rec)
            if self.events.step is not None:
                self.events.step(lr, rec)
            if on_step is not None:
                on_step(rec)

        def eval_cb(ev: Any) -> None:
            evals_seen.append(ev)
            if on_eval is not None:
                on_eval(ev)

        self.partial = None
        try:
            result = run_probe(plan, on_step=step_cb, on_eval=eval_cb, eval_every=eval_every, lr_lambda=lr_lambda)
        except BaseException:
            self.partial = to_record(lr, steps_seen, evals_seen, status="pruned", wall_s=sum(
                s.step_time_s for s in steps_seen))
            raise
        report = make_report(self.book, plan, result)
        record = to_record(lr, result.steps, result.evals, wall_s=sum(s.step_time_s for s in result.steps), status=(
            "complete" if result.status in ("completed", "diverged", "stopped") else "failed"))
        record.diverged = record.diverged or result.status == "diverged"
        record.signs = sorted({s.code for s in report.signs})
        record.note = result.stop_reason or ""
        return record


def plan_signature(plan: Any) -> dict[str, Any]:
    """What every trial of a sweep must share (all but the LR, steps and seed a trial varies), as JSON."""
    from advisor.probe.plan import shared_settings

    out = shared_settings(plan)
    out["lora_target_modules"] = list(out["lora_target_modules"])
    facts = plan.facts
    out["model"] = {k: getattr(facts, k) for k in ("name", "family", "params_b", "hidden_size", "num_layers",
                                                   "vocab_size", "max_position_embeddings")}
    out["data"] = {"path": plan.data.path, "packing": plan.data.packing, "eval_sequences": plan.data.eval_sequences}
    return dict(json.loads(json.dumps(out)))


def to_record(lr: float, steps: list[Any], evals: list[Any], *, status: str, wall_s: float) -> RunRecord:
    """A RunRecord from the probe's StepRecords and EvalRecords (the first eval is the start)."""
    return RunRecord(
        lr=lr,
        status=status,
        steps=[s.step for s in steps],
        loss=[s.loss for s in steps],
        grad_norm=[s.grad_norm for s in steps],
        learning_rate=[s.learning_rate for s in steps],
        eval_steps=[e.step for e in evals if e.step > 0],
        eval_loss=[e.loss for e in evals if e.step > 0],
        eval_loss_start=next((e.loss for e in evals if e.step == 0), None),
        eval_accuracy_end=next((e.token_accuracy for e in reversed(evals) if e.step > 0), None),
        wall_s=wall_s,
        tokens=sum(s.tokens for s in steps),
        diverged=any(not math.isfinite(s.loss) or not math.isfinite(s.grad_norm) for s in steps),
    )


# --- strategies ------------------------------------------------------------------------------

def range_test(prober: Prober, book: Rulebook, spec: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """One run with the LR rising exponentially; returns its summary (JSON-ready) and its steps."""
    from advisor.probe import StopProbe

    t = an.Thresholds.from_book(book)
    start, end = float(book.coefficient("range-test-start-lr")), float(book.coefficient("range-test-end-lr"))
    steps = spec["steps"]
    ratio = end / start
    lrs: list[float] = []
    losses: list[float] = []

    def lr_at(i: int) -> float:
        return float(start * ratio ** (min(i, steps - 1) / max(steps - 1, 1)))

    def on_step(rec: Any) -> None:
        lrs.append(rec.learning_rate)
        losses.append(rec.loss)
        sm = an.smooth(losses, t.smoothing)
        if an.diverged_at(sm, t.diverge) is not None:
            raise StopProbe("the smoothed loss diverged")

    prober.events.say(f"range test: LR {start:g} -> {end:g} over at most {steps} steps")
    prober.run(start, steps=steps, eval_every=0, on_step=on_step, lr_lambda=lambda i: lr_at(i) / start)
    analysis = an.analyse_range_test(lrs, losses, t, method=spec["suggest"],
                                     band_factor=float(book.coefficient("range-test-band")))
    summary = {
        "steps": len(lrs), "lrs": lrs, "losses": [x if math.isfinite(x) else None for x in losses],
        "smoothed": [x if math.isfinite(x) else None for x in an.smooth(losses, t.smoothing)],
        "method": spec["suggest"], "stopped": len(lrs) < steps,
        "suggestion": analysis.suggestion if analysis else None,
        "valley": analysis.valley_lr if analysis else None, "steepest": analysis.steepest_lr if analysis else None,
        "minimum": analysis.minimum_lr if analysis else None,
        "min_loss_lr": analysis.min_loss_lr if analysis else None,
        "band": list(analysis.band) if analysis else None,
    }
    return summary, len(lrs)


def halving_candidates(band: tuple[float, float], n: int, recommended: float | None) -> list[float]:
    """``n`` LRs log-spaced over the band plus the rulebook's LR, ordered for successive halving.

    A run is promoted at a rung only when it beats those that reached it before: the band's centre
    (the range test's suggestion) goes first so that the best guess gets the full budget and the
    outliers after it are pruned at the first rung."""
    lrs = an.log_space(band[0], band[1], n)
    centre = math.sqrt(band[0] * band[1])
    ordered = sorted(lrs, key=lambda x: abs(math.log(x / centre)))
    if recommended is not None and not any(an.same_lr(x, recommended) for x in ordered):
        ordered.insert(1, recommended)
    return ordered


def objective_for(prober: Prober, spec: dict[str, Any], events: Events) -> st.Objective:
    """The optuna objective: one probe run at the trial's LR; eval loss reported for pruning."""
    import optuna

    def objective(trial: Any, lr: float) -> float:
        def on_eval(ev: Any) -> None:
            if ev.step > 0 and math.isfinite(ev.loss):
                trial.report(ev.loss, ev.step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {ev.step}")

        try:
            record = prober.run(lr, steps=spec["steps"], eval_every=spec["eval_every"], on_eval=on_eval)
        except optuna.TrialPruned:
            if prober.partial is not None:
                prober.partial.trial = trial.number
                trial.set_user_attr(st.RESULT_ATTR, json.dumps(prober.partial.to_json()))
                if events.trial_end is not None:
                    events.trial_end(prober.partial)
            raise
        record.trial = trial.number
        trial.set_user_attr(st.RESULT_ATTR, json.dumps(record.to_json()))
        if events.trial_end is not None:
            events.trial_end(record)
        end = record.eval_loss_end
        return float(end) if end is not None and math.isfinite(end) and not record.diverged else math.inf

    return objective


# --- the whole sweep -------------------------------------------------------------------------

ENQUEUED_ATTR = "advisor_enqueued"


def _set_up(queue: st.Queue, prober: Prober, book: Rulebook, recommended: float | None, events: Events) -> None:
    """Once per study: the range test (range-test, halving) and the queue of learning rates."""
    spec = queue.spec
    attrs = queue.study.user_attrs
    if spec["strategy"] in ("range-test", "halving") and st.RANGE_ATTR not in attrs:
        summary, _ = range_test(prober, book, spec)
        queue.study.set_user_attr(st.RANGE_ATTR, json.dumps(summary))
        attrs = queue.study.user_attrs
    if attrs.get(ENQUEUED_ATTR):
        return
    if spec["strategy"] == "grid":
        st.enqueue(queue, spec["lrs"])
    elif spec["strategy"] == "halving":
        rt = json.loads(attrs[st.RANGE_ATTR])
        if rt["band"] is None:
            raise st.SweepError("the range test found no descending stretch of loss to suggest an LR from",
                                hint="try more --steps, or --strategy grid with --lrs")
        lrs = halving_candidates((rt["band"][0], rt["band"][1]), spec["candidates"], recommended)
        st.enqueue(queue, lrs)
        events.say(f"halving over {len(lrs)} candidates: {', '.join(f'{x:.3g}' for x in lrs)}")
    queue.study.set_user_attr(ENQUEUED_ATTR, True)


def collect(queue: st.Queue) -> tuple[list[RunRecord], dict[str, Any] | None, int]:
    """Every run the study holds (whoever ran it), the range test and its steps."""
    from optuna.trial import TrialState

    by_lr: dict[float, RunRecord] = {}
    for trial in queue.study.get_trials(deepcopy=False):
        raw = trial.user_attrs.get(st.RESULT_ATTR)
        if raw is None or "lr" not in trial.params:
            continue
        record = RunRecord.from_json(json.loads(raw))
        record.trial = trial.number
        if trial.state == TrialState.PRUNED:
            record.status = "pruned"
        elif trial.state == TrialState.FAIL and record.status == "complete":
            record.status = "failed"
        lr = float(trial.params["lr"])
        # A run resumed after a crash appears twice: the finished one wins.
        if lr not in by_lr or by_lr[lr].status == "failed":
            by_lr[lr] = record
    rt_raw = queue.study.user_attrs.get(st.RANGE_ATTR)
    rt = json.loads(rt_raw) if rt_raw else None
    return sorted(by_lr.values(), key=lambda r: r.lr), rt, (rt["steps"] if rt else 0)


def run_sweep(book: Rulebook, spec: dict[str, Any], *, out_dir: Path, storage_url: str | None, study_name: str,
              events: Events, recommended: float | None) -> st.Queue:
    """Create or resume the study, set it up and work its queue until every trial has run."""
    storage = st.open_storage(storage_url, out_dir)
    queue = st.create_or_load(storage, study_name, spec, pruner_for(spec),
                              where=storage_url or str(out_dir / st.JOURNAL_NAME))
    again = st.recover(queue)
    if again:
        events.say(f"resuming: {len(again)} interrupted run(s) queued again ({', '.join(f'{x:.3g}' for x in again)})")
    prober = Prober(book, queue.spec, events)
    _set_up(queue, prober, book, recommended, events)
    if queue.spec["strategy"] != "range-test":
        st.drain(queue, objective_for(prober, queue.spec, events), on_start=events.trial_start,
                 on_wait=events.waiting)
    return queue


def run_worker(book: Rulebook, *, storage_url: str, study_name: str, events: Events) -> tuple[st.Queue, int]:
    """Join a sweep another process created: run waiting trials until none is left."""
    storage = st.open_storage(storage_url, None)
    queue = st.load_for_worker(storage, study_name, pruner_for)
    st.recover(queue)
    prober = Prober(book, queue.spec, events)
    ran = st.work(queue, objective_for(prober, queue.spec, events), on_start=events.trial_start)
    return queue, ran


@dataclass
class Outcome:
    report: Any  # advisor.sweep.report.SweepReport
    written: list[Path]
    rule_file: Path | None
    queue: st.Queue
    out: Path | None = None

    def found(self) -> bool:
        """Whether the sweep answered: a best LR, or a range test's suggestion."""
        return bool(self.report.found())


def plan_kwargs(probe: dict[str, Any]) -> dict[str, Any]:
    """The stored probe inputs as build_plan's keywords (paths back to Path)."""
    out = dict(probe)
    for key in ("config", "data"):
        if out.get(key) is not None:
            out[key] = Path(out[key])
    return out


def recommended_lr(book: Rulebook, plan: Any) -> tuple[float | None, str | None]:
    """The rulebook's learning rate for the probe's facts (whatever the config says)."""
    from advisor.rulebook.resolve import recommend

    job = plan.job()
    rec = recommend(book, job.flat(), job.report())
    value = rec.parameters.get("learning_rate")
    if value is None:
        return None, None
    return float(value.value), f"{value.code} {value.rule}" if value.rule else None  # type: ignore[arg-type]


def start(book: Rulebook, *, out: Path, storage_url: str | None, study_name: str, strategy: str,
          lrs: list[float] | None, steps: int | None, eval_every: int | None, suggest: str, seed: int,
          probe: dict[str, Any], events: Events, plots: bool, write_rules: Path | None) -> Outcome:
    """`advisor sweep`: plan, queue, run (or resume), report, and optionally write the calibrated rule."""
    from advisor.probe.plan import build_plan
    from advisor.sweep import report as rp

    steps = steps if steps is not None else int(book.coefficient("sweep-steps"))
    if strategy == "grid" and eval_every is not None and not 1 <= eval_every <= steps:
        # a grid compares its runs' eval curves; rules/sweep.yaml's default may exceed a short run, a given N not
        check_flag("--eval-every", eval_every)
        if eval_every == 0:
            raise AdvisorError("--eval-every 0: a grid sweep compares its runs' eval curves, so it evaluates every N "
                               "steps", hint=f"--eval-every N, N from 1 to --steps ({steps}); rules/sweep.yaml's "
                                             f"default is {book.coefficient('sweep-eval-every'):g}")
        raise AdvisorError(f"--eval-every {eval_every}: above --steps ({steps}), a grid sweep would evaluate at its "
                           "start and end only, and it compares its runs' eval curves",
                           hint=f"--eval-every N, N from 1 to --steps ({steps})")
    eval_every = eval_every if eval_every is not None else int(book.coefficient("sweep-eval-every"))
    plan = build_plan(book, **plan_kwargs(probe), steps=max(steps, 2), seed=seed)
    if plan.single_gpu_note:
        events.say(plan.single_gpu_note)
    # Workers elsewhere must run the very same shape, whatever GPU they detect.
    probe = {**probe, "micro_batch": plan.micro_batch_size, "accumulation": plan.gradient_accumulation_steps,
             "seq_len": plan.seq_len, "detect_gpu": False, "gpu": probe.get("gpu"), "gpu_mem": probe.get("gpu_mem")}
    rec_lr, rec_rule = recommended_lr(book, plan)
    if strategy == "grid" and lrs is None:
        if rec_lr is None:
            raise AdvisorError("--strategy grid: no --lrs and no recommended LR to centre a grid on",
                               hint="--lrs 1e-5,2e-4,1e-3,5e-3")
        span = float(book.coefficient("sweep-grid-span"))
        lrs = an.log_space(rec_lr / span, rec_lr * span, int(book.coefficient("sweep-grid-points")))
    spec = make_spec(strategy=strategy, probe=probe, steps=steps, eval_every=eval_every, seed=seed, lrs=lrs,
                     suggest=suggest, book=book)
    spec["plan"] = plan_signature(plan)
    queue = run_sweep(book, spec, out_dir=out, storage_url=storage_url, study_name=study_name, events=events,
                      recommended=rec_lr)
    runs, rt, rt_steps = collect(queue)
    subject = f"{plan.facts.name}, {plan.method} with {plan.peft}" + (" (random init)" if plan.model.random_init else "")
    report = rp.build(runs, an.Thresholds.from_book(book), strategy=strategy, subject=subject, full_run_steps=steps,
                      recommended_lr=rec_lr, recommended_rule=rec_rule, range_test=rt, range_test_steps=rt_steps)
    written = rp.write(report, out, plots=plots)
    rule_file = None
    if write_rules is not None:
        best = report.best.lr if report.best else (rt or {}).get("suggestion")
        if best is None:
            raise AdvisorError("--write-rules: the sweep found no learning rate to write",
                               hint="no run finished cleanly; see the report")
        from advisor.sweep.calibrate import calibration_rule, capped, write_rule_file

        facts = plan.job().flat()
        rule = calibration_rule(book, facts=facts, best_lr=best, band=report.band,
                                random_init=plan.model.random_init, strategy=strategy, runs=len(runs), steps=steps,
                                study=queue.name)
        rule_file = write_rule_file(write_rules, rule)
        for warning in capped(write_rules, facts):  # said now, not discovered at the next recommend
            sys.stderr.write(f"advisor: warning: {warning}\n")
    return Outcome(report=report, written=written, rule_file=rule_file, queue=queue, out=out)

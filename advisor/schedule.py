"""Per-cycle learning rates for iterative self-training (RAFT), from the rulebook.

The starting LR and the decay come from rules (lr-raft, lr-raft-decay), and the per-cycle
values from the lr-raft-schedule rule itself: this module pins what the user chose and asks
the rulebook, so the command and `recommend` can never disagree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from advisor.errors import AdvisorError
from advisor.facts.task import TaskFacts
from advisor.output import fmt_number
from advisor.provenance import Source, Sourced
from advisor.recommendation import Recommendation
from advisor.registries import check_flag
from advisor.rulebook.load import Rulebook
from advisor.rulebook.model import Rule
from advisor.rulebook.resolve import recommend

STRATEGIES = ("constant", "exponential", "manual")


@dataclass
class Schedule:
    strategy: str
    cycles: int
    base_lr: float
    decay: float | None
    lrs: list[float]
    sources: dict[str, Sourced] = field(default_factory=dict)  # what set base_lr and decay: a flag or a rule
    steps_per_cycle: int | None = None
    within_cycle: dict[str, Any] = field(default_factory=dict)


RAFT = "raft"  # the method this module schedules (rules/registry/methods.yaml)


def raft_task(*, cycles: int, peft: str, sft_lr: float | None, strategy: str | None = None) -> dict[str, Any]:
    return TaskFacts(method=RAFT, peft=peft, cycles=cycles, sft_learning_rate=sft_lr, lr_strategy=strategy).as_facts()


def resolve_raft(book: Rulebook, *, cycles: int, peft: str = "lora", sft_lr: float | None = None,
                 pins: dict[str, Any] | None = None, strategy: str | None = None) -> Recommendation:
    return recommend(book, raft_task(cycles=cycles, peft=peft, sft_lr=sft_lr, strategy=strategy), {}, pins or {})


def parse_manual(text: str, cycles: int | None) -> list[float]:
    """'cycle_1=5e-5,cycle_2=4e-5' (or '5e-5,4e-5') -> [5e-5, 4e-5]."""
    values: dict[int, float] = {}
    for i, part in enumerate(p.strip() for p in text.split(",") if p.strip()):
        key, sep, raw = part.rpartition("=")
        m = re.fullmatch(r"(?:cycle_?)?(\d+)", key.strip()) if sep else None
        index = int(m.group(1)) if m else i + 1
        if sep and m is None:
            raise AdvisorError(f"--schedule: {part!r} is not cycle_N=LR", hint="e.g. cycle_1=5e-5,cycle_2=4e-5")
        try:
            lr = float(raw)
        except ValueError as exc:
            raise AdvisorError(f"--schedule: {raw!r} in {part!r} is not a learning rate") from exc
        if not 0 < lr < 1:
            raise AdvisorError(f"--schedule: {lr} in {part!r} is not a learning rate", hint="e.g. 5e-5")
        if index in values:  # a second cycle_2= would otherwise replace the first and drop a cycle
            raise AdvisorError(f"--schedule: cycle {index} is given twice ({part!r})",
                               hint="one cycle_N=LR per cycle, e.g. cycle_1=5e-5,cycle_2=4e-5")
        values[index] = lr
    if not values or sorted(values) != list(range(1, len(values) + 1)):
        raise AdvisorError(f"--schedule: {text!r} must give cycles 1..N without gaps")
    if cycles is not None and cycles != len(values):
        raise AdvisorError(f"--schedule gives {len(values)} cycles but --cycles is {cycles}")
    return [values[i] for i in sorted(values)]


def build(book: Rulebook, *, strategy: str, cycles: int | None, base_lr: float | None, decay: float | None,
          manual: str | None, peft: str, sft_lr: float | None, samples: int | None, micro_batch: int | None,
          accumulation: int | None) -> Schedule:
    if strategy not in STRATEGIES:
        raise AdvisorError(f"--strategy: unknown strategy {strategy!r}", hint=f"one of {', '.join(STRATEGIES)}")
    own = strategy == "manual" and manual is not None  # the user's schedule; else the rulebook's
    if own:
        for flag, given in (("--base-lr", base_lr), ("--sft-lr", sft_lr)):
            if given is not None:  # the schedule states every cycle's LR: a starting LR has nothing to set
                raise AdvisorError(f"{flag} goes with the rulebook's schedule, not with --schedule",
                                   hint=f"drop {flag}, or drop --schedule to have {flag} scale the seeds' schedule")
        lrs = parse_manual(manual or "", cycles)
        cycles = len(lrs)
    elif manual is not None:
        raise AdvisorError("--schedule goes with --strategy manual")
    if decay is not None and strategy != "exponential":  # constant holds one LR, manual lists each cycle's
        raise AdvisorError(f"--decay goes with --strategy exponential, not {strategy}",
                           hint="drop --decay, or give --strategy exponential")
    cycles = 5 if cycles is None else cycles
    check_flag("--cycles", cycles)
    check_flag("--decay", decay)
    check_flag("--base-lr", base_lr)
    pins: dict[str, Any] = {}
    if base_lr is not None:
        pins["learning_rate"] = base_lr
    if strategy == "constant":
        pins["lr_decay_factor"] = 1.0
    elif decay is not None:
        pins["lr_decay_factor"] = decay
    rec = resolve_raft(book, cycles=cycles, peft=peft, sft_lr=sft_lr, pins=pins, strategy=strategy)
    params = rec.parameters
    names = ("learning_rate_schedule",) if strategy == "manual" else ("learning_rate", "lr_decay_factor")
    flags = {"learning_rate": "--base-lr", "learning_rate_schedule": "--schedule",
            "lr_decay_factor": "--strategy constant" if strategy == "constant" else "--decay"}
    sources = {name: (Sourced(params[name].value, Source.FLAG, flags[name]) if own or params[name].set_by == "user"
                      else Sourced(params[name].value, Source.RULE, str(params[name].rule)))
               for name in names if name in params}
    if not own:
        lrs = [float(x) for x in params["learning_rate_schedule"].value]  # type: ignore[union-attr]
    schedule = Schedule(
        strategy=strategy, cycles=cycles, base_lr=lrs[0] if strategy == "manual" else params["learning_rate"].number(),
        decay=None if strategy == "manual" else params["lr_decay_factor"].number(), lrs=lrs, sources=sources,
    )
    if samples is None and (micro_batch is not None or accumulation is not None):
        raise AdvisorError("--micro-batch and --accumulation go with --samples (the steps per cycle)",
                           hint="add --samples N, the filtered samples per cycle")
    if samples is not None:
        for flag, count in (("--samples", samples), ("--micro-batch", micro_batch), ("--accumulation", accumulation)):
            check_flag(flag, count)
        schedule.steps_per_cycle = math.ceil(samples / ((micro_batch or 1) * (accumulation or 1)))
    for name in ("warmup_ratio", "lr_scheduler_type"):
        if name in params:
            schedule.within_cycle[name] = {"value": params[name].value, "rule": params[name].rule}
    return schedule


def compare(book: Rulebook, *, cycles: int, base_lr: float | None, peft: str, sft_lr: float | None,
            decay: float | None = None) -> list[dict[str, Any]]:
    """The seeds' decay-factor comparison: every decay the lr-raft-decay rule lists, over N cycles, and
    ``decay`` (the user's --decay) among them in its place, or marked on the preset it equals."""
    rule = book.rules["lr-raft-decay"]
    labels = rule.raw.get("choice_labels") or []
    factors: list[tuple[float, str]] = [(float(f), labels[i] if i < len(labels) else "")
                                        for i, f in enumerate(rule.raw.get("choices") or [])]
    if decay is not None and all(f != decay for f, _ in factors):
        # in the table's order (the rule lists the presets from the gentlest decay down)
        at = next((i for i, (f, _) in enumerate(factors) if f < decay), len(factors))
        factors.insert(at, (decay, ""))
    rows = []
    for factor, label in factors:
        pins: dict[str, Any] = {"lr_decay_factor": factor}
        if base_lr is not None:
            pins["learning_rate"] = base_lr
        rec = resolve_raft(book, cycles=cycles, peft=peft, sft_lr=sft_lr, pins=pins)
        rows.append({"factor": factor, "label": label, "yours": factor == decay,
                     "lrs": rec.parameters["learning_rate_schedule"].value})
    return rows


def seed_style(lr: float) -> str:
    """The seeds' notation: two significant figures at least, rounded half up (2.45e-5 -> 2.5e-5)."""
    from decimal import ROUND_HALF_UP, Decimal

    text = fmt_number(lr)
    mantissa, _, exp = text.partition("e")
    if not exp:
        return text
    digits = max(1, len(mantissa.partition(".")[2]))
    if digits >= 2:
        return text
    quantized = Decimal(mantissa).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{quantized}e{exp}"


def compare_cell(lr: float) -> str:
    """Two significant figures, half up, as the seeds' comparison table prints them."""
    from decimal import ROUND_HALF_UP, Decimal

    mantissa, _, exp = f"{lr:.2e}".partition("e")
    quantized = Decimal(mantissa).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{quantized}e{int(exp)}"


def to_yaml(schedule: Schedule, peft: str) -> str:
    """The config snippet as the seeds write it for the chosen strategy, under the `# advisor: job` line
    that tells `advisor validate` it is a RAFT schedule over these cycles (the seeds' keys do not say)."""
    # seed_style writes 5.0e-5, never 5e-5: YAML 1.1 loaders (PyYAML) read an exponent without a dot
    # as a string, and the snippet must read back as numbers.
    job = f"# advisor: job method={RAFT} peft={peft} cycles={schedule.cycles}\n"
    if schedule.strategy == "constant":
        return f"{job}training:\n  learning_rate: {seed_style(schedule.base_lr)}  # same all cycles\n"
    if schedule.strategy == "exponential":
        return (f"{job}training:\n  base_learning_rate: {seed_style(schedule.base_lr)}\n"
                f"  lr_decay_factor: {seed_style(schedule.decay or 1.0)}\n")
    rows = "".join(f"    cycle_{i}: {seed_style(lr)}\n" for i, lr in enumerate(schedule.lrs, 1))
    return f"{job}training:\n  learning_rate_schedule:\n{rows}"


def to_dict(schedule: Schedule) -> dict[str, Any]:
    return {
        "strategy": schedule.strategy, "cycles": schedule.cycles, "base_lr": schedule.base_lr,
        "decay": schedule.decay,
        "sources": {name: {"source": src.source.value, "detail": src.detail} for name, src in schedule.sources.items()},
        "per_cycle": [{"cycle": i, "learning_rate": lr} for i, lr in enumerate(schedule.lrs, 1)],
        "steps_per_cycle": schedule.steps_per_cycle, "within_cycle": schedule.within_cycle,
    }


@dataclass
class ScheduleResult:
    """What `advisor schedule` answers: the plan, and the comparison and advice when asked for."""

    plan: Schedule
    compare: list[dict[str, Any]] | None = None
    advice: dict[str, Any] | None = None
    samples: int | None = None
    micro_batch: int | None = None
    accumulation: int | None = None
    peft: str = "lora"  # what the plan was built for, written in the yaml snippet's job line

    def as_dict(self) -> dict[str, Any]:
        out = to_dict(self.plan)
        if self.compare is not None:
            out["compare"] = self.compare
        if self.advice is not None:
            out["advice"] = self.advice
        return out


SIGN_DIRECTIONS = ("lr-too-high", "lr-too-low")  # the seeds' decision tree: what to do when the LR is off
# What `advisor diagnose --cycles-dir` reads from a RAFT history besides the series: its cycle scores and the
# samples' repetitiveness. A RAFT cycle is an SFT run, so its logs carry the readers' named series and none of
# the keys TRL's DPO or GRPO trainers log.
RAFT_LOG_FACTS = ("cycle_score", "cycle_metric", "cycle_name", "distinct_2", "max_grad_norm")


def raft_signs(book: Rulebook, task: dict[str, Any]) -> list[Rule]:
    """The signal rules that apply to a RAFT run, by their own `when` as `diagnose` judges it: the signs
    scope themselves to a method by the series its log carries (rules/signals.yaml), so a plan stands in
    for its log with every series a RAFT history holds (a placeholder value: the plan has measured nothing)
    and the task facts of the plan."""
    from advisor.rulebook.judge import applies
    from advisor.rulebook.lookup import fact_lookup
    from advisor.telemetry import ALIASES

    log = {f"log.{name}": () for name in (*ALIASES, *RAFT_LOG_FACTS)}
    lookup = fact_lookup({**task, **log}, book=book)
    return sorted((r for r in book.rules.values() if r.kind == "signal" and applies(r, lookup)), key=lambda r: r.code)


def advice(book: Rulebook, plan: Schedule, *, peft: str, sft_lr: float | None) -> dict[str, Any]:
    """The seeds' starting point and decision tree for RAFT, read from the rules for the same adapter
    and SFT LR as the plan (full fine-tuning starts lower than LoRA)."""
    rec = resolve_raft(book, cycles=plan.cycles, peft=peft, sft_lr=sft_lr)
    lr, decay = rec.parameters["learning_rate"], rec.parameters["lr_decay_factor"]
    signals = raft_signs(book, raft_task(cycles=plan.cycles, peft=peft, sft_lr=sft_lr))
    scheduler = rec.parameters.get("lr_scheduler_type")
    notes = book.rules[scheduler.rule].notes if scheduler is not None and scheduler.rule in book.rules else ()
    return {
        "start": {"learning_rate": lr.number(), "lr_decay_factor": decay.number(), "rules": [lr.rule, decay.rule],
                  "confidence": [lr.confidence, decay.confidence]},
        "signs": {d: [{"code": r.code, "sign": r.sign, "advice": r.advice} for r in signals if r.direction == d]
                  for d in SIGN_DIRECTIONS},
        "within_cycle": [" ".join(str(n["text"]).split()) for n in notes],
    }


def run(book: Rulebook, *, strategy: str, cycles: int | None, base_lr: float | None, decay: float | None,
        manual: str | None, peft: str, sft_lr: float | None, samples: int | None, micro_batch: int | None,
        accumulation: int | None, compare_decays: bool, with_advice: bool) -> ScheduleResult:
    plan = build(book, strategy=strategy, cycles=cycles, base_lr=base_lr, decay=decay, manual=manual, peft=peft,
                 sft_lr=sft_lr, samples=samples, micro_batch=micro_batch, accumulation=accumulation)
    rows = (compare(book, cycles=plan.cycles, base_lr=plan.base_lr, peft=peft, sft_lr=sft_lr, decay=decay)
            if compare_decays else None)
    return ScheduleResult(plan, rows, advice(book, plan, peft=peft, sft_lr=sft_lr) if with_advice else None, samples,
                          micro_batch, accumulation, peft)

"""Resolve: facts in, a Recommendation out.

Precedence, written down once: a value the user pins (``--set``, ``--seq-len``) wins over
every rule. Otherwise each parameter runs through the stages in order: base -> refine
(replaces base) -> adjust (scales) -> constrain (clamps) -> derive (computes from other
parameters). In a setting stage exactly one rule may apply; an ``overrides`` declaration
decides between rules whose conditions overlap, and overlapping rules without one are a
load error. Parameters are resolved on demand, so a rule that reads ``params.X`` sees X's
final value; ``baseline.X`` is X as the rules alone would set it, ignoring every pin (also the
pins of the parameters X is computed from), so pinning an input moves what reads it.

Ranges move with their values: an adjustment scales the range by the same factor and a
constraint clamps it by the same bounds, so a value always lies inside its printed range. The
setting row's own range is kept beside it (``rule_range``), and the value is flagged when it
left that row's range.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from advisor.errors import FormulaError, ResolveError
from advisor.output import fmt_value
from advisor.provenance import Source
from advisor.recommendation import LeftOut, ParameterValue, Provenance, Recommendation, TraceStep, as_number
from advisor.rulebook import conditions as cond
from advisor.rulebook.formula import COEF, Formula, MissingFact, coefficient_id, sig
from advisor.rulebook.load import Rulebook
from advisor.rulebook.lookup import MISSING, Handler, fact_lookup
from advisor.rulebook.model import CALIBRATION_FAMILY, SETTING_STAGES, STAGES, Case, Parameter, Rule, weakest

FLAGS = {
    "gpu.memory_gb": "--gpu or --gpu-mem",
    "gpu.total_memory_gb": "--gpu or --gpu-mem",
    "gpu.usable_gib": "--gpu or --gpu-mem",
    "gpu.bf16": "--gpu",
    "gpu.name": "--gpu",
    "task.dataset_size": "--dataset-size",
    "task.cycles": "--cycles",
    "task.seq_len": "--seq-len",
    "task.sft_learning_rate": "--sft-lr",
}


@dataclass
class _State:
    value: Any = None
    range: list[Any] | None = None  # the range around the current value (moved by adjust / constrain)
    rule_range: list[Any] | None = None  # the setting row's own range, as the table gives it
    choices: list[Any] | None = None
    confidence: str | None = None
    rule: Rule | None = None
    trace: list[TraceStep] = field(default_factory=list)
    overridden: list[TraceStep] = field(default_factory=list)  # setting rows that matched and lost to an override


def coerce(param: Parameter, value: Any, where: str, exact: bool = False) -> Any:
    """Bring a value to its parameter's declared type (ints rounded, floats to 3 significant figures
    unless ``exact``: the evidence fit differentiates through the engine and needs every digit)."""
    kind = param.type
    try:
        if kind == "int":
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise TypeError
            return round(float(value))
        if kind == "float":
            if isinstance(value, bool) or not math.isfinite(float(value)):
                raise TypeError
            return float(value) if exact else sig(float(value))
        if kind == "bool":
            if not isinstance(value, bool):
                raise TypeError
            return value
        if kind == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind == "list_str":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TypeError
            return list(value)
        if kind == "list_float":
            if not isinstance(value, list):
                raise TypeError
            return [sig(float(v)) for v in value]
    except (TypeError, ValueError, OverflowError) as exc:
        article = "an" if kind[0] in "aeiou" else "a"
        hint = f"a YAML list, quoted for the shell: --set '{param.name}=[a, b]'" if kind.startswith("list") else None
        raise ResolveError(f"{where}: value {value!r} is not {article} {kind} (parameter {param.name!r})",
                           hint=hint) from exc
    raise ResolveError(f"{where}: parameter {param.name!r} has unknown type {kind!r}")


class Resolver:
    def __init__(self, book: Rulebook, facts: dict[str, Any], pins: dict[str, Any] | None = None,
                 exact: bool = False) -> None:
        self.book = book
        self.exact = exact
        self.facts = facts
        self.pins = dict(pins or {})
        for name in self.pins:
            if name not in book.parameters:
                raise ResolveError(f"--set: unknown parameter {name!r}",
                                   hint=f"known: {', '.join(sorted(book.parameters))}")
        self._done: dict[tuple[str, bool], _State | None] = {}
        self._active: list[tuple[str, bool]] = []
        self.left_out: dict[tuple[str, str], LeftOut] = {}
        self.coefficients_read: set[str] = set()  # every coefficient a rule read (the evidence fit's gradient)
        self.warnings: list[str] = []

    # -- lookups -----------------------------------------------------------------------
    def _lookup(self, current: _State | None, record: dict[str, Any] | None,
                use_pins: bool) -> Callable[[str], Any]:
        """Names as a rule sees them. In the baseline world (use_pins False) ``params.X`` is the
        baseline too: a parameter computed from a pinned one is then computed from its baseline."""
        def value(_: str) -> Any:
            return MISSING if current is None or current.value is None else current.value

        def parameter(world: str) -> Handler:
            def read(attr: str) -> Any:
                state = self.resolve(attr, use_pins=use_pins and world == "params")
                return MISSING if state is None else state.value
            return read

        plain = fact_lookup(self.facts, book=self.book, on_coefficient=self.coefficients_read.add,
                            namespaces={"value": value, "params": parameter("params"),
                                        "baseline": parameter("baseline")})

        def lookup(name: str) -> Any:
            found = plain(name)
            if record is not None:
                record[name] = found
            return found

        return lookup

    def _eval(self, f: Any, current: _State | None, record: dict[str, Any], rule: Rule, use_pins: bool) -> Any:
        if not isinstance(f, Formula):
            return f
        try:
            return f.evaluate(self._lookup(current, record, use_pins))
        except FormulaError as exc:
            raise ResolveError(f"{rule.file}: rule {rule.id!r}: {exc}") from exc

    def evaluate(self, f: Formula, where: str) -> Any:
        """A formula read as a rule would read it for this job (pins included): the evidence fit's
        ``per`` for a published run."""
        try:
            return f.evaluate(self._lookup(None, None, True))
        except FormulaError as exc:
            raise ResolveError(f"{where}: {exc}") from exc

    def _match(self, rule: Rule, current: _State | None, use_pins: bool) -> Case | None:
        """The first case of an applicable rule, None when it does not apply. MissingFact propagates."""
        lookup = self._lookup(current, None, use_pins)
        where = f"{rule.file}: rule {rule.id!r}"
        if not cond.holds(rule.when, lookup, where):
            return None
        return next((case for case in rule.cases if cond.holds(case.when, lookup, where)), None)

    # -- resolution ----------------------------------------------------------------------
    def resolve(self, name: str, use_pins: bool = True) -> _State | None:
        key = (name, use_pins)
        if key in self._done:
            return self._done[key]
        if key in self._active:
            chain = " -> ".join(n for n, _ in self._active[self._active.index(key):]) + f" -> {name}"
            raise ResolveError(f"rules read each other in a loop: {chain}")
        self._active.append(key)
        try:
            state = self._pinned(name) if use_pins and name in self.pins else self._run_rules(name, use_pins)
        finally:
            self._active.pop()
        self._done[key] = state
        return state

    def _pinned(self, name: str) -> _State:
        param = self.book.parameters[name]
        value = coerce(param, self.pins[name], f"--set {name}")
        if param.type in ("int", "float") and value < param.minimum:
            raise ResolveError(f"--set {name}: {value} is below the smallest meaningful value {param.minimum:g}")
        state = _State(value=value, trace=[TraceStep(stage="user", after=value)])
        # Constraints still speak about a pinned value, as warnings: the user's word stands.
        for rule in self.book.rules_for(name):
            if rule.stage != "constrain":
                continue
            try:
                case = self._match(rule, state, True)
                if case is None:
                    continue
                record: dict[str, Any] = {}
                hi = self._eval(case.max, state, record, rule, True)
                lo = self._eval(case.min, state, record, rule, True)
            except MissingFact:
                continue
            if (hi is not None and value > hi) or (lo is not None and value < lo):
                bound = f"at most {hi}" if hi is not None and value > hi else f"at least {lo}"
                self.warnings.append(
                    f"{name}={value} (set by you) breaks rule {rule.id} ({rule.code}): {case.label} says {bound}"
                )
        return state

    def applies(self, name: str) -> bool | None:
        """Whether a rule that sets ``name`` applies to these facts, ignoring pins; None when a
        fact it needs is unknown."""
        unknown = False
        for rule in self.book.rules_for(name):
            if rule.stage not in SETTING_STAGES:
                continue
            try:
                if self._match(rule, None, False) is not None:
                    return True
            except MissingFact:
                unknown = True
        return None if unknown else False

    def _skip(self, rule: Rule, missing: MissingFact) -> None:
        fact = missing.name
        if fact.startswith(("params.", "baseline.")) or fact == "value":
            return  # a consequence of another parameter being left out, reported there
        self.left_out.setdefault((rule.id, fact), LeftOut(
            rule=rule.id, parameter=rule.parameter, missing_fact=fact, flag=FLAGS.get(fact)))

    def _run_rules(self, name: str, use_pins: bool) -> _State | None:
        param = self.book.parameters[name]
        rules = self.book.rules_for(name)
        state = _State()
        for stage in STAGES:
            if stage in ("adjust", "constrain") and state.value is None:
                continue  # nothing to scale or clamp
            matched: list[tuple[Rule, Case]] = []
            for rule in (r for r in rules if r.stage == stage):
                try:
                    case = self._match(rule, state, use_pins)
                except MissingFact as missing:
                    self._skip(rule, missing)
                    continue
                if case is not None:
                    matched.append((rule, case))
            if stage in SETTING_STAGES:
                won = self._winner(matched)
                for rule, case in matched:
                    if (rule, case) not in won:
                        self._record_overridden(param, state, rule, case, won[0][0], use_pins)
                matched = won
            for rule, case in matched:
                try:
                    self._apply(param, state, rule, case, use_pins)
                except MissingFact as missing:
                    self._skip(rule, missing)
        if state.value is None:
            return None
        if param.grid and not self.exact and state.rule is not None and state.rule.stated_on_grid:
            self._round(param, state)
        return state

    def _round(self, param: Parameter, state: _State) -> None:
        """State the value on its parameter's grid (1, 2, 3, 5 x 10^k): the trace keeps the fit's own."""
        value = param.on_grid(state.value)
        if value == state.value:
            return
        state.range = _fit_range(param, state.range, value, param.name)
        state.trace.append(TraceStep(**{
            "stage": "round", "before": state.value, "after": value, "range": state.range,
            "case": f"stated on the {'-'.join(f'{g:g}' for g in param.grid)} x 10^k grid (rules/parameters.yaml)",
        }))
        state.value = value

    def _record_overridden(self, param: Parameter, state: _State, rule: Rule, case: Case, winner: Rule,
                           use_pins: bool) -> None:
        """Keep the row an override set aside, with the value it would have given, so a seed row the
        evidence replaced stays visible (``--explain``, JSON ``overridden``)."""
        record: dict[str, Any] = {}
        try:
            raw = self._eval(case.formula, state, record, rule, use_pins) if case.formula is not None else case.default
            value = coerce(param, raw, f"{rule.file}: rule {rule.id!r}", self.exact)
        except (MissingFact, ResolveError):
            return  # a row that lost cannot give a value here: nothing to show, and no reason to fail
        state.overridden.append(TraceStep(**{
            "stage": rule.stage, "rule": rule.id, "code": rule.code, "case": case.label, "after": value,
            "confidence": case.confidence, "source": [dict(x) for x in case.sources],
            "inputs": {**record, "overridden_by": winner.id},
        }))

    def _winner(self, matched: list[tuple[Rule, Case]]) -> list[tuple[Rule, Case]]:
        if len(matched) <= 1:
            return matched
        overridden = {t for rule, _ in matched for t in rule.overrides}
        left = [(r, c) for r, c in matched if r.id not in overridden]
        if len(left) != 1:
            ids = ", ".join(r.id for r, _ in matched)
            raise ResolveError(f"rules {ids} all apply to {matched[0][0].parameter!r} with no precedence")
        return left

    def _apply(self, param: Parameter, state: _State, rule: Rule, case: Case, use_pins: bool) -> None:
        where = f"{rule.file}: rule {rule.id!r} ({case.label})"
        record: dict[str, Any] = {}
        before, before_range = state.value, state.range
        step = TraceStep(**{
            "stage": rule.stage, "rule": rule.id, "code": rule.code, "case": case.label, "before": before,
            "confidence": case.confidence, "source": [dict(s) for s in case.sources],
        })
        if rule.stage in SETTING_STAGES:
            raw = (self._eval(case.formula, state, record, rule, use_pins) if case.formula is not None
                   else case.default)
            value = coerce(param, raw, where, self.exact)
            probe = _State(value=value)
            rng = None
            if case.range is not None:
                bounds = [self._eval(b, probe, record, rule, use_pins) for b in case.range]
                rng = [coerce(param, b, where, self.exact) for b in bounds] if param.type in ("int", "float") else bounds
            # A derived value is no surer than the parameters it was computed from (an optional
            # input, read through given(), excepted: its fallback is stated).
            confidence = case.confidence
            soft = case.formula.soft if isinstance(case.formula, Formula) else frozenset()
            for read in record:
                if read.startswith("params.") and read not in soft:
                    dep = self.resolve(read.split(".", 1)[1], use_pins)
                    if dep is not None and dep.confidence is not None:
                        confidence = weakest(confidence, dep.confidence)
            state.value, state.range, state.rule_range, state.rule = value, rng, rng, rule
            state.choices = list(case.choices) if case.choices is not None else None
            state.confidence = confidence
        elif rule.stage == "adjust":
            factor = self._eval(case.factor, state, record, rule, use_pins)
            value = coerce(param, state.value * factor, where, self.exact)
            moved = None if state.range is None else [b * factor for b in state.range]
            state.range = _fit_range(param, moved, value, where, self.exact)
            confidence = weakest(state.confidence or case.confidence, case.confidence)
            # a factor of 1 is still a step when it lowers the confidence: the trace says why
            if value == before and state.range == before_range and confidence == state.confidence:
                return
            state.value = value
            state.confidence = confidence
            step.inputs["factor"] = sig(float(factor), 4)
        else:  # constrain
            hi = self._eval(case.max, state, record, rule, use_pins)
            lo = self._eval(case.min, state, record, rule, use_pins)
            value = coerce(param, _clamp(state.value, lo, hi), where, self.exact)
            moved = None if state.range is None else [_clamp(b, lo, hi) for b in state.range]
            state.range = _fit_range(param, moved, value, where, self.exact)
            if value == before and state.range == before_range:
                return
            state.value = value
        step.after = state.value
        step.range = state.range
        step.formula = next((f.text for f in (case.formula, case.factor, case.max, case.min)
                             if isinstance(f, Formula)), None)
        step.inputs.update(record)
        state.trace.append(step)


def _clamp(x: Any, lo: Any, hi: Any) -> Any:
    if hi is not None and x > hi:
        x = hi
    if lo is not None and x < lo:
        x = lo
    return x


def _fit_range(param: Parameter, bounds: list[Any] | None, value: Any, where: str,
               exact: bool = False) -> list[Any] | None:
    """A moved range in the parameter's type, never below its smallest meaningful value, and
    holding the value (rounding an integer range can otherwise step past it)."""
    if bounds is None:
        return None
    lo, hi = sorted(coerce(param, b, where, exact) for b in bounds)
    lo, hi = max(lo, type(lo)(param.minimum)), max(hi, type(hi)(param.minimum))
    return [min(lo, value), max(hi, value)]


def _outside(value: Any, rng: list[Any] | None) -> bool:
    if rng is None or not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    return bool(value < rng[0] or value > rng[1])


def _batch_consistency(params: dict[str, ParameterValue], facts: dict[str, Any], warnings: list[str]) -> None:
    """Say so when the batch split does not multiply back to the effective batch (e.g. 3 GPUs)."""
    needed = ("micro_batch_size", "gradient_accumulation_steps", "effective_batch_size")
    if not all(n in params for n in needed):
        return
    actual = int(params["micro_batch_size"].number() * params["gradient_accumulation_steps"].number()
                 * int(facts.get("gpu.count", 1)))
    if actual != params["effective_batch_size"].value:
        warnings.append(
            f"micro_batch_size x gradient_accumulation_steps x GPUs = {actual}, not the effective batch "
            f"{params['effective_batch_size'].value}: pick a micro-batch or GPU count that divides it")
    if "num_generations" in params and actual % params["num_generations"].number():
        warnings.append(f"the generation batch {actual} is not divisible by num_generations "
                        f"{params['num_generations'].value} (TRL refuses to start)")


def _held_back(name: str, pv: ParameterValue, warnings: list[str]) -> None:
    """Say so when a constraint takes back part of what an adjustment did (e.g. a batch you
    raised wanted a higher LR than the method's band allows): the trace alone is easy to miss."""
    adjusted = [s for s in pv.trace if s.stage == "adjust" and s.before != s.after]
    if not adjusted:
        return
    start, peak = as_number(adjusted[0].before), as_number(adjusted[-1].after)
    for step in pv.trace[pv.trace.index(adjusted[-1]) + 1:]:
        if step.stage != "constrain" or step.before == step.after:
            continue
        if (peak - start) * (as_number(step.after) - as_number(step.before)) < 0:
            codes = ", ".join(str(s.code) for s in adjusted)
            warnings.append(
                f"{name}: {codes} moved it from {fmt_value(start)} to {fmt_value(peak)}; {step.code} {step.rule} "
                f"holds it at {fmt_value(step.after)} ({step.case})")


def _calibration_held(name: str, pv: ParameterValue, book: Rulebook, warnings: list[str]) -> None:
    """Say so when a later rule changes a value a sweep calibrated (--write-rules): a constraint
    that caps it takes the measurement back, silently otherwise."""
    rule = book.rules.get(pv.rule or "")
    if rule is None or rule.family != CALIBRATION_FAMILY:
        return
    setting = [s for s in pv.trace if s.rule == rule.id]
    if not setting:
        return
    measured = setting[-1].after
    for step in pv.trace[pv.trace.index(setting[-1]) + 1:]:
        if step.stage == "constrain" and step.before != step.after:
            warnings.append(f"{name}: the calibrated value {fmt_value(measured)} ({rule.id}) is held at "
                            f"{fmt_value(step.after)} by {step.code} {step.rule} ({step.case}); the calibration has "
                            f"no effect there")


def _inapplicable_pins(resolver: Resolver, facts: dict[str, Any]) -> None:
    """A pinned parameter that no rule sets for this job (e.g. lora_rank with full fine-tuning)
    does not apply here: keep the user's value, and say so instead of passing it silently."""
    for name, value in resolver.pins.items():
        setters = [r for r in resolver.book.rules_for(name) if r.stage in SETTING_STAGES]
        if not setters or resolver.applies(name) is not False:
            continue  # read-only parameters (validate) or rules that may apply
        job = " with ".join(str(facts[k]) for k in ("task.method", "task.peft") if k in facts)
        resolver.warnings.append(
            f"--set {name}={fmt_value(value)}: {name} does not apply to {job or 'this job'} (none of "
            f"{', '.join(r.code for r in setters)} sets it here); kept as you gave it")


def _unknown_optimizer_pin(resolver: Resolver) -> None:
    """A pinned optimizer the registry does not hold is passed through (trainers know more than advisor
    does), but the memory model then counts AdamW's states and the LR bands are AdamW's: say so."""
    name = resolver.pins.get("optimizer")
    if name is None or str(name).lower() in resolver.book.optimizers:
        return
    near = difflib.get_close_matches(str(name).lower(), list(resolver.book.optimizers), n=1)
    resolver.warnings.append(
        f"--set optimizer={name}: not an optimizer advisor knows (rules/registry/optimizers.yaml"
        f"{f'; did you mean {near[0]}?' if near else ''}): the memory model counts AdamW's states for it, "
        "and the trainer may refuse the name")


def _provenance(book: Rulebook, setter: Rule | None, *, pinned: bool) -> Provenance:
    """A pin's, a rule's, or the evidence's: a rule whose formulas read coefficients fitted to the
    evidence set (a coefficient with a `fit:`) sets its value from the published runs."""
    if pinned or setter is None:
        return Provenance(source=Source.PIN.value, detail="--set")
    fitted = any("fit" in book.coefficients.get(coefficient_id(name), {})
                 for name in setter.reads() if name.startswith(f"{COEF}."))
    return Provenance(source=(Source.EVIDENCE if fitted else Source.RULE).value, detail=setter.id)


def recommend(book: Rulebook, facts: dict[str, Any], fact_sources: dict[str, dict[str, Any]],
              pins: dict[str, Any] | None = None) -> Recommendation:
    resolver = Resolver(book, facts, pins)
    parameters: dict[str, ParameterValue] = {}
    for name, param in book.parameters.items():
        state = resolver.resolve(name)
        if state is None:
            continue
        setter = state.rule
        parameters[name] = ParameterValue(
            value=state.value,
            unit=param.unit,
            range=state.range,
            rule_range=state.rule_range,
            outside_rule_range=_outside(state.value, state.rule_range),
            choices=state.choices,
            confidence=state.confidence,  # type: ignore[arg-type]
            set_by="user" if name in resolver.pins else "rule",
            provenance=_provenance(book, setter, pinned=name in resolver.pins),
            rule=setter.id if setter else None,
            code=setter.code if setter else None,
            source=[dict(s) for s in setter.sources] if setter else [],
            notes=[dict(n) for n in setter.notes] if setter else [],
            trace=state.trace,
            overridden=state.overridden,
        )
        _held_back(name, parameters[name], resolver.warnings)
        _calibration_held(name, parameters[name], book, resolver.warnings)
    _inapplicable_pins(resolver, facts)
    _unknown_optimizer_pin(resolver)
    _batch_consistency(parameters, facts, resolver.warnings)
    left_out = sorted(resolver.left_out.values(), key=lambda x: (x.missing_fact, x.parameter, x.rule))
    return Recommendation(facts=fact_sources, parameters=parameters, left_out=left_out,
                          warnings=resolver.warnings)

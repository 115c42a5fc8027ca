"""Fit the rulebook's coefficients to the evidence rows, through the engine itself.

The learning-rate model is written in the rules (LR008's formulas, LR009's factors), not here.
This module only knows the kinds of ``fit:`` a coefficient declares (rules/lr_fit.yaml):

- ``log-scale`` and ``exponent`` coefficients are fitted together by weighted ridge least squares
  on log10 of the target. The engine is the model: each row runs through a Resolver in exact mode,
  and the derivative of its log LR by each coefficient it reads is taken by central differences.
  The formulas are products of powers, so log LR is linear in (log10 scale, exponent) and one
  Gauss-Newton step is the solution; a second step checks it.
- ``band``: the factor either side of the value holding ``quantile`` of the leave-one-source-out
  residuals of the rows it selects, clamped to [min, max].
- ``cover-min`` / ``cover-max``: the smallest / largest model size among the rows it selects.
- ``span-min`` / ``span-max``: an end of the LRs the selected rows published that two independent
  source groups stand behind (see ``_span_end``); with ``per``, each LR divided by that formula for its
  run first (the span stated at LoRA alpha 16, where the LR's alpha term is 1).

A source's rows in one setting (method, full | LoRA, variant) together weigh the square root of
their count there, so one source with many rows (a sweep table) informs the fit without outvoting
the others, and a source's one ORPO row counts as much as another source's one ORPO row, however
many SFT rows either also holds. A ridge is a prior worth that many such rows, and for a scale or a
factor (log10 LR units, like a row's error) it is robust the same way a row is: past the Huber
threshold its pull stops growing. Otherwise a quadratic prior outweighs any number of rows that
agree with each other and not with it (three published ORPO runs at 7x the DPO LR moved ORPO's
factor to 1.3x).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from advisor.errors import ResolveError
from advisor.evidence.rows import EvidenceRow
from advisor.rulebook.formula import sig
from advisor.rulebook.load import Rulebook

LEAST_SQUARES = ("log-scale", "exponent")
SELECTED = ("band", "cover-min", "cover-max", "span-min", "span-max")  # computed over the rows a `select` picks
STEP = 1e-3  # not-knowledge: central-difference step in fitted units (log10 for a scale)
TINY = 1e-12  # not-knowledge: a pivot or residual this small is zero
CONVERGED = 1e-9  # not-knowledge: IRLS stops when no coefficient moves more than this
HUBER = "fit-huber"  # the coefficient: log10 residual past which a row's pull stops growing
IRLS_STEPS = 30
INNER_IRLS_STEPS = 8  # the bands' nested leave-one-source-out fits: residual quantiles, not defaults
# evidence row field -> parameter it pins (the run's own settings, as a config would state them)
PINNED = (("effective_batch", "effective_batch_size"), ("epochs", "num_train_epochs"), ("lora_rank", "lora_rank"),
          ("lora_alpha", "lora_alpha"), ("beta", "beta"), ("group_size", "num_generations"),
          ("temperature", "temperature"), ("seq_len", "max_seq_length"))


def row_job(row: EvidenceRow, leave_out: Sequence[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """The facts and pins that describe a published run to the engine (a param in ``leave_out``
    is not pinned, so the rules recommend it)."""
    from advisor.facts.task import TaskFacts

    facts: dict[str, Any] = {
        "model.name": row.model_id, "model.params_b": row.params_b,
        "model.active_params_b": row.active_params_b or row.params_b, "model.hidden_size": row.hidden_size,
        **TaskFacts(method=row.method, peft=row.peft, dataset_size=row.dataset_size,
                    variant=row.variant).as_facts(),
    }
    pins = {param: getattr(row, key) for key, param in PINNED if getattr(row, key) is not None}
    # The run length as the engine derives it (DUR004 / DUR008: dataset x epochs / batch, or the
    # seeds' common steps when the run states neither), so the fit sees what a user's job would.
    if row.max_steps is not None:
        pins["max_steps"] = row.max_steps
    if facts["task.is_rl"] and row.effective_batch is not None and row.group_size:
        pins["prompts_per_step"] = max(1, row.effective_batch // row.group_size)  # completions -> prompts
    for name in leave_out:
        pins.pop(name, None)
    return facts, pins


@dataclass
class Placed:
    """A row as the engine places it: its predicted value, range, confidence and matching row."""

    row: EvidenceRow
    value: float
    range: tuple[float, float] | None
    confidence: str | None
    rule: str | None
    case: str | None
    seed_value: float | None  # the first (base) step's value: the seed table read literally
    reads: frozenset[str]  # the coefficient ids the value was computed from

    @property
    def log_error(self) -> float:
        return math.log10(self.value / self.row.learning_rate)


def place(book: Rulebook, row: EvidenceRow, *, exact: bool = False, target: str = "learning_rate") -> Placed:
    from advisor.errors import FactError
    from advisor.facts.task import check_variant
    from advisor.rulebook.resolve import Resolver

    try:
        check_variant(book.variants, row.method, row.variant)
    except FactError as exc:
        raise ResolveError(f"{row.file}: row {row.id!r} key 'variant': {exc.message}", hint=exc.hint) from exc
    facts, pins = row_job(row)
    pins.pop(target, None)
    resolver = Resolver(book, facts, pins, exact=exact)
    state = resolver.resolve(target)
    if state is None or not isinstance(state.value, (int, float)):
        raise ResolveError(f"{row.file}: row {row.id!r}: the rules give no {target} for this run")
    reads = frozenset(resolver.coefficients_read)
    setting = [s for s in state.trace if s.stage in ("base", "refine", "derive")]
    rng = (float(state.range[0]), float(state.range[1])) if state.range else None
    base = state.trace[0].after if state.trace and state.trace[0].stage == "base" else None
    return Placed(row=row, value=float(state.value), range=rng, confidence=state.confidence,
                  rule=setting[-1].rule if setting else None, case=setting[-1].case if setting else None,
                  seed_value=float(base) if isinstance(base, (int, float)) else None, reads=reads)


# --- the linear algebra (a few dozen unknowns: plain Python) ------------------------------

def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Gaussian elimination with partial pivoting; a singular system is a ResolveError."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < TINY:
            raise ResolveError("the evidence fit is singular: a fitted coefficient is informed by no row and has no ridge")
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            f = m[r][col] / m[col][col]
            if f:
                for c in range(col, n + 1):
                    m[r][c] -= f * m[col][c]
    x = [0.0] * n  # not-knowledge
    for r in range(n - 1, -1, -1):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


@dataclass
class Design:
    """Every row's log error and its gradient by each fitted coefficient, at the book's values."""

    ids: list[str]  # the fitted (least-squares) coefficient ids, in order
    theta0: list[float]  # their values in fitted units (log10 for a scale)
    priors: list[float]
    ridges: list[float]
    robust: list[bool]  # the prior is a Huber pseudo-row: a scale or factor, in log10 LR units like a row's error
    placed: list[Placed]  # rows at the book's values (exact)
    huber: float  # rules/lr_fit.yaml fit-huber
    grads: list[list[float]] = field(default_factory=list)  # d log10(LR) / d theta, per row
    nonzero: list[list[tuple[int, float]]] = field(default_factory=list)  # (j, gradient) where it is not 0

    def _cell(self, i: int) -> tuple[str, str, bool, str]:
        row = self.placed[i].row
        return row.source_id, row.method, row.adapter, row.variant

    def weights(self, rows: Iterable[int]) -> dict[int, float]:
        counts: dict[tuple[str, str, bool, str], int] = {}
        idx = list(rows)
        for i in idx:
            counts[self._cell(i)] = counts.get(self._cell(i), 0) + 1
        return {i: 1 / math.sqrt(counts[self._cell(i)]) for i in idx}

    def _pull(self, residual: float) -> float:
        """IRLS weight factor of a Huber loss: 1 up to the threshold, then threshold / |residual|."""
        return min(1, self.huber / max(abs(residual), TINY))

    def solve(self, rows: Iterable[int], steps: int | None = None) -> list[float]:
        """theta minimising the Huber loss of ``rows``' weighted log errors plus the ridge penalties,
        by iteratively reweighted least squares: a row further than HUBER (log10) from the fit counts
        linearly, so a few house-style outliers (a full SFT at 1e-3) do not drag every default. A
        scale's or factor's prior is reweighted the same way, so it stays worth its ridge in rows."""
        base = self.weights(rows)
        theta = self._solve_weighted(base, self.ridges)
        for _ in range(IRLS_STEPS if steps is None else steps):
            w = {i: wi * self._pull(self.log_error(i, theta)) for i, wi in base.items()}
            ridges = [r * self._pull(t - p) if robust else r
                      for r, t, p, robust in zip(self.ridges, theta, self.priors, self.robust, strict=True)]
            nxt = self._solve_weighted(w, ridges)
            done = max(abs(a - b) for a, b in zip(nxt, theta, strict=True)) < CONVERGED if nxt else True
            theta = nxt
            if done:
                break
        return theta

    def _solve_weighted(self, w: dict[int, float], ridges: Sequence[float]) -> list[float]:
        n = len(self.ids)
        a = [[0.0] * n for _ in range(n)]  # not-knowledge
        b = [0.0] * n  # not-knowledge
        for i, wi in w.items():
            r = -self.placed[i].log_error  # log10(published) - log10(predicted), at theta0
            nz = self.nonzero[i]
            for j, gj in nz:
                b[j] += wi * gj * r
                row = a[j]
                for k, gk in nz:
                    row[k] += wi * gj * gk
        for j in range(n):
            a[j][j] += ridges[j]
            b[j] += ridges[j] * (self.priors[j] - self.theta0[j])
        delta = _solve(a, b)
        return [t + d for t, d in zip(self.theta0, delta, strict=True)]

    def log_error(self, i: int, theta: Sequence[float]) -> float:
        """Row i's log10(predicted / published) at ``theta`` (exact for products of powers)."""
        return self.placed[i].log_error + sum(g * (theta[j] - self.theta0[j]) for j, g in self.nonzero[i])


def _to_theta(raw: dict[str, Any]) -> float:
    value = float(raw["value"])
    return math.log10(value) if raw["fit"]["kind"] == "log-scale" else value


def _from_theta(raw: dict[str, Any], theta: float) -> float:
    return 10 ** theta if raw["fit"]["kind"] == "log-scale" else theta


def fitted(book: Rulebook, kinds: Sequence[str], target: str = "learning_rate") -> list[str]:
    return [cid for cid, raw in book.coefficients.items()
            if raw.get("fit", {}).get("kind") in kinds and raw["fit"].get("target", target) == target]


def design(book: Rulebook, rows: Sequence[EvidenceRow], target: str = "learning_rate") -> Design:
    ids = fitted(book, LEAST_SQUARES, target)
    raws = [book.coefficients[c] for c in ids]
    priors = [_to_theta({**r, "value": r["fit"].get("prior", r["value"])}) for r in raws]
    d = Design(ids=ids, theta0=[_to_theta(r) for r in raws], priors=priors,
               ridges=[float(r["fit"].get("ridge", 0)) for r in raws],
               robust=[r["fit"]["kind"] == "log-scale" for r in raws], huber=float(book.coefficient(HUBER)),
               placed=[place(book, row, exact=True, target=target) for row in rows])
    index = {c: j for j, c in enumerate(ids)}
    for p in d.placed:
        grad = [0.0] * len(ids)  # not-knowledge
        for cid in p.reads & set(index):
            j, raw = index[cid], book.coefficients[cid]
            kept = raw["value"]
            try:
                ends = []
                for sign in (1, -1):
                    raw["value"] = _from_theta(raw, d.theta0[j] + sign * STEP)
                    ends.append(math.log10(place(book, p.row, exact=True, target=target).value))
            finally:
                raw["value"] = kept
            grad[j] = (ends[0] - ends[1]) / (2 * STEP)
        d.grads.append(grad)
        d.nonzero.append([(j, g) for j, g in enumerate(grad) if g])
    return d


def _selected(p: Placed, select: dict[str, Any]) -> bool:
    return (p.row.method == select.get("method", p.row.method)
            and p.row.adapter == select.get("adapter", p.row.adapter)
            and p.row.params_b >= select.get("min_b", p.row.params_b)
            and ("max_b" not in select or p.row.params_b < select["max_b"]))


def _quantile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)


@dataclass
class Fit:
    values: dict[str, float]
    rows: dict[str, list[str]]  # coefficient id -> ids of the rows that informed it
    sources: dict[str, list[str]]


def fit(book: Rulebook, d: Design, rows: Sequence[int], target: str = "learning_rate") -> Fit:
    """Every fitted coefficient from the rows ``rows`` (indices into the design) alone."""
    theta = d.solve(rows)
    values = {c: _from_theta(book.coefficients[c], t) for c, t in zip(d.ids, theta, strict=True)}
    informed: dict[str, list[int]] = {c: [i for i in rows if d.grads[i][j]] for j, c in enumerate(d.ids)}
    by_group: dict[str, list[int]] = {}
    for i in rows:
        by_group.setdefault(d.placed[i].row.group, []).append(i)
    held_out: dict[int, float] = {}  # each row's residual with its own source group left out of the fit
    for grp, own in by_group.items():
        others = [i for i in rows if d.placed[i].row.group != grp]
        if not others:
            continue
        inner = d.solve(others, steps=INNER_IRLS_STEPS)
        for i in own:
            held_out[i] = d.log_error(i, inner)
    for cid in fitted(book, SELECTED, target):
        spec = book.coefficients[cid]["fit"]
        chosen = [i for i in rows if _selected(d.placed[i], spec.get("select", {}))]
        informed[cid] = chosen
        if spec["kind"] == "band":
            errors = [abs(held_out[i]) for i in chosen if i in held_out]
            factor = 10 ** _quantile(errors, float(spec["quantile"])) if errors else float(spec["max"])
            values[cid] = min(max(factor, float(spec.get("min", 1))), float(spec.get("max", math.inf)))
        elif spec["kind"].startswith("cover"):  # no run: 0, so no size is inside and the extrapolated row applies
            sizes = [d.placed[i].row.params_b for i in chosen]
            values[cid] = float(min(sizes) if spec["kind"] == "cover-min" else max(sizes)) if sizes else 0
        else:
            lrs = {i: d.placed[i].row.learning_rate for i in chosen}
            if "per" in spec:
                lrs = {i: lr / f for (i, lr), f in zip(lrs.items(), _per_run(book, d, chosen, cid, values), strict=True)}
            values[cid] = _span_end(d, lrs, low=spec["kind"] == "span-min")
    return Fit(values=values,
               rows={c: [d.placed[i].row.id for i in idx] for c, idx in informed.items()},
               sources={c: sorted({d.placed[i].row.source_id for i in idx}) for c, idx in informed.items()})


def _per_run(book: Rulebook, d: Design, chosen: Sequence[int], cid: str, values: dict[str, float]) -> list[float]:
    """A span's ``per`` formula for each chosen run, as the rules read it for that run at the fitted
    coefficients (the LoRA alpha term of LR008 for a run at alpha 128: its LR is stated at alpha 16)."""
    from advisor.rulebook.formula import parse
    from advisor.rulebook.resolve import Resolver

    per = parse(book.coefficients[cid]["fit"]["per"])
    where = f"{book.coefficients[cid]['_file']}: coefficient {cid!r} key 'fit.per'"
    out = []
    with Applied(book, {c: values[c] for c in d.ids}):
        for i in chosen:
            facts, pins = row_job(d.placed[i].row)
            pins.pop(book.coefficients[cid]["fit"].get("target", "learning_rate"), None)
            factor = Resolver(book, facts, pins, exact=True).evaluate(per, f"{where} (row {d.placed[i].row.id!r})")
            if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not factor > 0:
                raise ResolveError(f"{where}: gives {factor!r} for row {d.placed[i].row.id!r}, not a positive number")
            out.append(float(factor))
    return out


def _span_end(d: Design, lrs: dict[int, float], *, low: bool) -> float:
    """An end of what published runs used that two independent source groups stand behind: the second-lowest
    of the source groups' lowest LRs (or second-highest of their highest), so no one lab's house style
    stretches the span. 0 (no span) with fewer than two groups.

    With exactly two groups whose LRs do not overlap (Tulu 3's 70B SFT at 2e-6 to 1e-5, OlympicCoder-32B's
    4e-5), no LR has both behind it and those ends would cross; each end is then the one group that
    published there, the whole of what the two used (with three or more groups the ends cannot cross)."""
    lows: dict[str, float] = {}
    highs: dict[str, float] = {}
    for i, lr in lrs.items():
        group = d.placed[i].row.group
        lows[group] = min(lows.get(group, lr), lr)
        highs[group] = max(highs.get(group, lr), lr)
    if len(lows) < 2:
        return 0
    lo, hi = sorted(lows.values())[1], sorted(highs.values(), reverse=True)[1]
    if lo > hi:
        lo, hi = min(lows.values()), max(highs.values())
    return float(lo if low else hi)


def rounded(cid: str, value: float, book: Rulebook) -> float:
    """How a fitted value is written: 4 significant figures (sizes as given)."""
    spec = book.coefficients[cid]["fit"]
    published = spec["kind"].startswith("cover") or (spec["kind"].startswith("span") and "per" not in spec)
    return value if published else sig(value, 4)


class Applied:
    """Set coefficient values on a book for a block, and put the old ones back after."""

    def __init__(self, book: Rulebook, values: dict[str, float]) -> None:
        self.book, self.values = book, values
        self.kept: dict[str, Any] = {}

    def __enter__(self) -> Rulebook:
        for cid, value in self.values.items():
            self.kept[cid] = self.book.coefficients[cid]["value"]
            self.book.coefficients[cid]["value"] = rounded(cid, value, self.book)
        return self.book

    def __exit__(self, *exc: object) -> None:
        for cid, value in self.kept.items():
            self.book.coefficients[cid]["value"] = value


HEADER = ("# Written by `advisor rules fit` from rules/evidence/*.yaml: edit the evidence or the `fit` declarations,\n"
          "# then refit; `advisor rules fit --check` fails when this file is stale.\n")


def refit_text(book: Rulebook, rows: Sequence[EvidenceRow], path: Any, target: str = "learning_rate") -> str:
    """The coefficients file at ``path`` with every fitted value, row count and source list set from
    the tuned rows: what `advisor rules fit` writes, and what `--check` compares with the file."""
    import yaml

    from advisor.rulebook.load import read_yaml

    tuned = [r for r in rows if r.tuned]
    d = design(book, tuned, target)
    result = fit(book, d, list(range(len(tuned))), target)
    data = read_yaml(path)
    for raw in data.get("coefficients", ()):
        cid = raw["id"]
        if cid not in result.values or "fit" not in raw:
            continue
        raw["value"] = rounded(cid, result.values[cid], book)
        raw["fit"]["rows"] = len(result.rows[cid])
        raw["fit"]["sources"] = result.sources[cid]
    return HEADER + yaml.safe_dump(data, sort_keys=False, width=110, allow_unicode=True)

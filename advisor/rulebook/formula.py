"""A tiny, safe formula language for derived values in rules.

Formulas are Python expression syntax parsed with ``ast`` and checked against a whitelist:
numbers, strings, lists, arithmetic, comparisons, ``x if c else y``, dotted fact names
(``model.hidden_size``, ``params.lora_rank``, ``baseline.lora_rank``, ``task.cycles``),
the bare name ``value`` (the value the parameter has when the rule runs) and a closed set
of functions. Nothing is ever passed to ``eval``.
"""

from __future__ import annotations

import ast
import bisect
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from advisor.errors import FormulaError
from advisor.safeio import clip, clip_path

NAMESPACES = ("model", "gpu", "task", "memory", "params", "baseline", "config", "trained", "lo", "hi", "log", "coef")
PARAM_NAMESPACES = ("params", "baseline", "config", "trained", "lo", "hi")  # names after the dot are parameters
COEF = "coef"  # coef.lr_sft_full reads the coefficient lr-sft-full (a name cannot hold '-')


def coefficient_id(name: str) -> str:
    """The coefficient id a ``coef.*`` name reads: coef.lr_sft_full -> lr-sft-full."""
    return name.partition(".")[2].replace("_", "-")


def coefficient_name(cid: str) -> str:
    """How a formula names a coefficient: lr-sft-full -> coef.lr_sft_full."""
    return f"{COEF}.{cid.replace('-', '_')}"
BARE_NAMES = ("value",)
MAX_EXPONENT = 64
MAX_LIST = 4096
# Bounds on what a formula may be and compute (the shipped rules: 483 characters, depth 10): a rule
# file is data from anyone, and `(10**64)**64` or `'a' * 10**9` must fail at once, not after minutes.
MAX_TEXT = 2000  # not-knowledge: characters in one formula
MAX_DEPTH = 40  # not-knowledge: nesting of one formula's syntax tree
MAX_INT_BITS = 2048  # not-knowledge: an integer result past float's range (1024 bits) is a runaway
MAX_STR = 10_000  # not-knowledge: characters in a string result


class TooLarge(FormulaError):
    """A formula whose result (or the work to get it) is past the bounds above."""


def _clamp(x: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, x))


def _pow2_floor(x: float) -> int:
    if x < 1:
        return 1
    return 1 << math.floor(math.log2(x))


def _pow2_ceil(x: float) -> int:
    if x <= 1:
        return 1
    return 1 << math.ceil(math.log2(x))


def sig(x: float, digits: int = 3) -> float:
    """Round to ``digits`` significant figures (how advisor states every float)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def _geometric(start: float, factor: float, n: int) -> list[float]:
    if not 0 < n <= MAX_LIST:
        raise FormulaError(f"geometric(): n must be between 1 and {MAX_LIST}, got {n}")
    return [sig(start * factor**i) for i in range(int(n))]


def _scale(xs: list[Any], factor: float) -> list[float]:
    return [float(x) * factor for x in xs]


def _pad_to(xs: list[Any], n: int) -> list[Any]:
    """The first n items; past the end, the last item repeated."""
    if not xs or not 1 <= n <= MAX_LIST:
        raise FormulaError(f"pad_to(): needs a non-empty list and n between 1 and {MAX_LIST}, got {n}")
    return [xs[min(i, len(xs) - 1)] for i in range(int(n))]


def _nth(xs: list[Any], n: int) -> Any:
    """The n-th item, counting from 1 (cycle numbers)."""
    if not 1 <= n <= len(xs):
        raise FormulaError(f"nth(): no item {n} in a list of {len(xs)}")
    return xs[int(n) - 1]


def _pick(xs: list[Any], positions: list[Any]) -> list[Any]:
    """The items at these 1-based positions (the cycles that ``drops`` numbers, by name)."""
    if not isinstance(xs, list) or not isinstance(positions, list):
        raise FormulaError("pick(): needs a list and a list of positions")
    for n in positions:
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(xs):
            raise FormulaError(f"pick(): no item {clip(repr(n))} in a list of {len(xs)}")
    return [xs[n - 1] for n in positions]


def _members(xs: list[Any]) -> Any:
    """A set to test membership in (linear, not quadratic), or the list when its items cannot hash."""
    try:
        return set(xs)
    except TypeError:
        if len(xs) > MAX_LIST:
            raise TooLarge(f"a list of {len(xs)} unhashable items is too long to compare") from None
        return xs


def _subset(items: list[Any], of: list[Any]) -> bool:
    members = _members(of)
    return all(x in members for x in items)


def _difference(items: list[Any], minus: list[Any]) -> list[Any]:
    members = _members(minus)
    return [x for x in items if x not in members]


# --- series statistics for signal rules (telemetry); thresholds stay in the rules ----------

def _finite(xs: list[Any]) -> list[float]:
    return [float(x) for x in xs if isinstance(x, (int, float)) and math.isfinite(x)]


def _mean(xs: list[Any]) -> float:
    vals = _finite(xs)
    if not vals:
        raise FormulaError("mean() of an empty series")
    return sum(vals) / len(vals)


def _median(xs: list[Any]) -> float:
    return _middle(sorted(_finite(xs)))


def _middle(vals: list[float]) -> float:
    """The median of values already sorted."""
    if not vals:
        raise FormulaError("median() of an empty series")
    mid = len(vals) // 2
    return vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2


def _head(xs: list[Any], frac: float) -> list[Any]:
    return xs[: max(1, round(len(xs) * frac))]


def _tail(xs: list[Any], frac: float) -> list[Any]:
    return xs[len(xs) - max(1, round(len(xs) * frac)):]


def _rel_change(xs: list[Any], frac: float) -> float:
    """How much the series fell from its first to its last ``frac`` (0.1: -10%..+10%); > 0 is a fall."""
    start, end = _mean(_head(xs, frac)), _mean(_tail(xs, frac))
    return (start - end) / abs(start) if start else 0.0


def _frac_at_least(xs: list[Any], threshold: float) -> float:
    vals = _finite(xs)
    return sum(v >= threshold for v in vals) / len(vals) if vals else 0.0


def _spikes(xs: list[Any], ratio: float, window: int) -> list[int]:
    """Positions (1-based, in ``xs``) where a value exceeds ``ratio`` x the median of the ``window``
    finite values before it. NaN / inf points are passed over, not dropped: a position after one is
    still the series' own, so it names the same log row as the points around it."""
    finite = [(i, float(x)) for i, x in enumerate(xs) if isinstance(x, (int, float)) and math.isfinite(x)]
    width = int(window)
    if width < 1:  # no value before any point
        if len(finite) > 3:
            _middle([])  # raises: the median of nothing
        return []
    out = []
    # The window before point k, kept sorted as it slides: one pass over a run of 10^6 steps, not a sort per point.
    before: list[float] = []
    for k, (i, value) in enumerate(finite):
        if k >= 3 and value > ratio * _middle(before):
            out.append(i + 1)
        bisect.insort(before, value)
        if k >= width:
            del before[bisect.bisect_left(before, finite[k - width][1])]
    return out


def _zigzag(xs: list[Any], rel: float) -> float:
    """Share of interior points where the series reverses direction with both moves larger than
    ``rel`` of the value (oscillation, as opposed to noise around a trend)."""
    vals = _finite(xs)
    if len(vals) < 3:
        return 0.0
    turns = 0
    for i in range(1, len(vals) - 1):
        a, b = vals[i] - vals[i - 1], vals[i + 1] - vals[i]
        big = abs(a) > rel * abs(vals[i]) and abs(b) > rel * abs(vals[i])
        turns += a * b < 0 and big
    return turns / (len(vals) - 2)


def _where_at_least(xs: list[Any], threshold: float) -> list[int]:
    return [i + 1 for i, x in enumerate(xs) if isinstance(x, (int, float)) and x >= threshold]


def _slope(xs: list[Any]) -> float:
    vals = _finite(xs)
    n = len(vals)
    if n < 2:
        raise FormulaError("slope() needs two points")
    mx, my = (n - 1) / 2, sum(vals) / n
    den = sum((i - mx) ** 2 for i in range(n))
    return sum((i - mx) * (v - my) for i, v in enumerate(vals)) / den


def _drops(xs: list[Any]) -> list[int]:
    """1-based positions whose value is lower than the one before (cycle N+1 worse than N)."""
    return [i + 1 for i in range(1, len(xs)) if xs[i] < xs[i - 1]]


def _longest_flat(xs: list[Any], tol: float) -> int:
    """Most consecutive values that each differ from the previous by less than ``tol`` (relative)."""
    best = run = 1 if xs else 0
    for i in range(1, len(xs)):
        prev = xs[i - 1]
        change = abs(xs[i] - prev) / abs(prev) if prev else abs(xs[i])
        run = run + 1 if change < tol else 1
        best = max(best, run)
    return best


def _nonfinite(xs: list[Any]) -> int:
    return sum(1 for x in xs if isinstance(x, float) and not math.isfinite(x))


def _finite_count(xs: list[Any]) -> int:
    """How many points the series statistics (mean, frac_at_least, ...) measure: NaN / inf are passed over."""
    return len(_finite(xs))


def _largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` that is at most ``at_most`` (at least 1): a micro-batch that divides
    a batch, so that micro-batch x accumulation gives it exactly."""
    n, at_most = int(n), int(at_most)
    return max((d for d in range(1, max(1, min(n, at_most)) + 1) if n % d == 0), default=1)


def _given(x: Any, fallback: Any) -> Any:
    return x  # never called: _eval evaluates given() lazily (see GIVEN)


GIVEN = "given"  # given(x, fallback): x, or fallback when a fact x reads is unknown

FUNCTIONS: dict[str, Callable[..., Any]] = {
    GIVEN: _given,
    "mean": _mean,
    "median": _median,
    "head": _head,
    "tail": _tail,
    "rel_change": _rel_change,
    "frac_at_least": _frac_at_least,
    "where_at_least": _where_at_least,
    "zigzag": _zigzag,
    "spikes": _spikes,
    "slope": _slope,
    "drops": _drops,
    "longest_flat": _longest_flat,
    "nonfinite": _nonfinite,
    "finite_count": _finite_count,
    "subset": _subset,
    "difference": _difference,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "int": int,
    "float": float,
    "len": len,
    "ceil": math.ceil,
    "floor": math.floor,
    "sqrt": math.sqrt,
    "log2": math.log2,
    "clamp": _clamp,
    "pow2_floor": _pow2_floor,
    "pow2_ceil": _pow2_ceil,
    "largest_divisor": _largest_divisor,
    "gcd": math.gcd,
    "sig": sig,
    "geometric": _geometric,
    "scale": _scale,
    "pad_to": _pad_to,
    "nth": _nth,
    "pick": _pick,
}

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}


class MissingFact(Exception):
    """Raised by a lookup when a fact the formula needs is not known."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)


@dataclass(frozen=True)
class Formula:
    """A parsed, checked formula and the dotted names it reads."""

    text: str
    tree: ast.Expression
    names: frozenset[str]
    # names read only as given()'s first argument: optional inputs with a stated fallback, whose
    # confidence does not bound the result's (the engine's weakest-input rule skips them). The LR is
    # stated for the run length advisor recommends: that max_steps is the seeds' low-confidence
    # default does not make the LR for it less sure, and its weight is the fitted exponent.
    soft: frozenset[str] = frozenset()

    def evaluate(self, lookup: Callable[[str], Any]) -> Any:
        try:
            return _eval(self.tree.body, lookup)
        except MissingFact:
            raise
        except FormulaError as exc:  # a function's or a bound's complaint: say which formula it came from
            if exc.message.startswith("formula "):
                raise
            raise type(exc)(f"formula {clip(self.text)}: {exc.message}", hint=exc.hint) from exc
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise FormulaError(f"formula {clip(self.text)} failed: {clip(str(exc), 120)}") from exc
        except RecursionError as exc:
            raise TooLarge(f"formula {clip(self.text)} nests too deeply") from exc


def parse(text: str) -> Formula:
    """Parse and whitelist-check ``text``; raise FormulaError naming the offending part."""
    text = str(text)
    if len(text) > MAX_TEXT:
        raise TooLarge(f"formula {clip(text)} is longer than {MAX_TEXT} characters", hint="split it into parameters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, MemoryError, RecursionError) as exc:  # ValueError: a NUL byte
        raise FormulaError(f"formula {clip(text)} is not valid syntax: {getattr(exc, 'msg', exc)}") from exc
    _check_depth(tree, text)
    names: set[str] = set()
    for node in ast.walk(tree):
        _check_node(node, text, names)
    _fold_constants(tree.body, text)
    inside: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == GIVEN and node.args:
            for sub in ast.walk(node.args[0]):
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                    inside.add(f"{sub.value.id}.{sub.attr}")
    hard: set[str] = set()
    _hard_names(tree.body, hard)
    return Formula(text=str(text), tree=tree, names=frozenset(names), soft=frozenset(inside - hard))


def _check_depth(tree: ast.AST, text: str) -> None:
    """Refuse a syntax tree deeper than MAX_DEPTH before anything walks it recursively."""
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TooLarge(f"formula {clip(text)} nests deeper than {MAX_DEPTH} levels", hint="simplify it")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _reads_nothing(node: ast.AST) -> bool:
    return not any(isinstance(n, (ast.Name, ast.Attribute)) and not (isinstance(n, ast.Name) and n.id in FUNCTIONS)
                   for n in ast.walk(node))


def _fold_constants(node: ast.AST, text: str) -> None:
    """Evaluate every part that reads no fact now, so that a runaway constant (``(10**64)**64``,
    ``'a' * 10**9``) or one that cannot be computed (``1/0``, ``sqrt(-1)``, ``1e308 * 10``) is a load
    error, and `rules check` reports it; where a fact meets a constant, the bounds evaluation puts on
    that constant (an exponent, a divisor) are checked too."""
    if not isinstance(node, ast.expr):
        return  # an operator or a context: nothing to compute
    if _reads_nothing(node):
        part = clip_path(ast.get_source_segment(text.strip(), node) or "a constant part")
        try:
            value = _eval(node, _no_lookup)
        except TooLarge as exc:
            raise TooLarge(f"formula {clip(text)}: {exc.message}", hint="a formula's values must stay small") from exc
        except MissingFact as exc:  # the only name a part that reads no fact can hold is a function's
            raise FormulaError(f"formula {clip(text)}: {exc.name} is a function, not a value",
                               hint=f"call it: {exc.name}(...)") from exc
        except (FormulaError, ArithmeticError, TypeError, ValueError, IndexError, KeyError) as exc:
            detail = exc.message if isinstance(exc, FormulaError) else str(exc)
            raise FormulaError(f"formula {clip(text)}: {part} cannot be computed: {clip(detail, 120)}",
                               hint="a part that reads no fact is computed when the rule loads") from exc
        if isinstance(value, float) and not math.isfinite(value):
            raise FormulaError(f"formula {clip(text)}: {part} is {value!r}, not a finite number",
                               hint="a part that reads no fact is computed when the rule loads")
        return
    for child in node.args if isinstance(node, ast.Call) else ast.iter_child_nodes(node):
        _fold_constants(child, text)  # a call's function is its name, not a value
    if isinstance(node, ast.BinOp) and _reads_nothing(node.right):
        right = _eval(node.right, _no_lookup)  # computed without error just above
        try:
            _check_binop(node.op, _UNKNOWN, right)
        except TooLarge as exc:
            raise TooLarge(f"formula {clip(text)}: {exc.message}", hint="a formula's values must stay small") from exc
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0 and not isinstance(right, str):
            raise FormulaError(f"formula {clip(text)}: divides by {right!r}", hint="a divisor must not be zero")


_UNKNOWN = object()  # the value of a part that reads facts, to the load-time bound checks


def _no_lookup(name: str) -> Any:
    raise MissingFact(name)


def _bounded(value: Any, inputs: Sequence[Any] = ()) -> Any:
    """``value``, or TooLarge when it is past the result bounds. A function's list may be as long as its
    longest list argument: every list function selects from a series (spikes, subset, where_at_least),
    so it holds no more than the log it was given, however long that run was."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TooLarge(f"an integer of {value.bit_length()} bits is larger than a formula may compute")
    if isinstance(value, str) and len(value) > MAX_STR:
        raise TooLarge(f"a string of {len(value)} characters is longer than a formula may compute")
    if isinstance(value, list) and len(value) > max([MAX_LIST, *(len(x) for x in inputs if isinstance(x, list))]):
        raise TooLarge(f"a list of {len(value)} items is longer than a formula may compute ({MAX_LIST})")
    return value


def _size(x: Any) -> int:
    """The size an operation scales: bits of an int, length of a string or list, 1 otherwise."""
    if isinstance(x, bool):
        return 1
    if isinstance(x, int):
        return max(x.bit_length(), 1)
    if isinstance(x, (str, list)):
        return len(x)
    return 1


def _check_binop(op: ast.operator, left: Any, right: Any) -> None:
    """Refuse an operation whose result would be past the bounds before computing it."""
    if isinstance(op, ast.Pow) and isinstance(right, (int, float)) and not isinstance(right, bool):
        if abs(right) > MAX_EXPONENT:
            raise TooLarge(f"exponent {clip(right)} is larger than {MAX_EXPONENT}")
        if isinstance(left, int) and abs(left) > 1 and right > 0 and _size(left) * right > MAX_INT_BITS:
            raise TooLarge(f"{_size(left)}-bit integer ** {right} is larger than a formula may compute")
    elif isinstance(op, ast.Mult):
        seqs = [x for x in (left, right) if isinstance(x, (str, list))]
        counts = [x for x in (left, right) if isinstance(x, int) and not isinstance(x, bool)]
        if seqs and counts:
            limit = MAX_STR if isinstance(seqs[0], str) else MAX_LIST
            if len(seqs[0]) * counts[0] > limit:
                raise TooLarge(f"repeating {len(seqs[0])} items {clip(counts[0])} times is past the limit {limit}")
        elif len(counts) == 2 and _size(left) + _size(right) > MAX_INT_BITS:
            raise TooLarge("an integer product larger than a formula may compute")
    elif isinstance(op, ast.Mod) and isinstance(left, str):
        raise TooLarge("string formatting with % is not part of the formula language")


def _hard_names(node: ast.AST, out: set[str]) -> None:
    """Names read outside any given()'s first argument."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == GIVEN and node.args:
        for arg in node.args[1:]:
            _hard_names(arg, out)
        return
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        out.add(f"{node.value.id}.{node.attr}")
        return
    for child in ast.iter_child_nodes(node):
        _hard_names(child, out)


def _check_node(node: ast.AST, text: str, names: set[str]) -> None:
    allowed = (
        ast.Expression, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare, ast.IfExp,
        ast.Constant, ast.Name, ast.Attribute, ast.Call, ast.List, ast.Tuple, ast.Load,
        ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd, *_BINOPS, *_CMPOPS,
    )
    if not isinstance(node, allowed):
        raise FormulaError(f"formula {clip(text)} uses {type(node).__name__}, which is not allowed")
    if isinstance(node, ast.Attribute):
        if not (isinstance(node.value, ast.Name) and node.value.id in NAMESPACES):
            raise FormulaError(
                f"formula {clip(text)}: only one-level names like model.hidden_size are allowed",
                hint=f"namespaces: {', '.join(NAMESPACES)}",
            )
        if node.attr.startswith("_"):
            raise FormulaError(f"formula {clip(text)}: private name {node.attr!r} is not allowed")
        names.add(f"{node.value.id}.{node.attr}")
    elif isinstance(node, ast.Name) and not isinstance(getattr(node, "ctx", None), ast.Store):
        if node.id in BARE_NAMES:
            names.add(node.id)
        elif node.id not in NAMESPACES and node.id not in FUNCTIONS:
            raise FormulaError(f"formula {clip(text)}: unknown name {node.id!r}")
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            raise FormulaError(
                f"formula {clip(text)}: only these functions may be called: {', '.join(sorted(FUNCTIONS))}"
            )
        if node.keywords:
            raise FormulaError(f"formula {clip(text)}: keyword arguments are not allowed")
        if node.func.id == GIVEN and len(node.args) != 2:
            raise FormulaError(f"formula {clip(text)}: given() takes two arguments: a value and its fallback")
    elif isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str, bool, type(None))):
        raise FormulaError(f"formula {clip(text)}: constant {node.value!r} is not allowed")


def _eval(node: ast.AST, lookup: Callable[[str], Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Attribute):
        assert isinstance(node.value, ast.Name)
        return lookup(f"{node.value.id}.{node.attr}")
    if isinstance(node, ast.Name):
        return lookup(node.id)
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, lookup), _eval(node.right, lookup)
        _check_binop(node.op, left, right)
        return _bounded(_BINOPS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, lookup)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.UAdd):
            return +operand
        return not operand
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result: Any = True
            for v in node.values:
                result = _eval(v, lookup)
                if not result:
                    return result
            return result
        result = False
        for v in node.values:
            result = _eval(v, lookup)
            if result:
                return result
        return result
    if isinstance(node, ast.Compare):
        left = _eval(node.left, lookup)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, lookup)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.IfExp):
        return _eval(node.body, lookup) if _eval(node.test, lookup) else _eval(node.orelse, lookup)
    if isinstance(node, (ast.List, ast.Tuple)):
        return _bounded([_eval(e, lookup) for e in node.elts])
    if isinstance(node, ast.Call):
        assert isinstance(node.func, ast.Name)
        if node.func.id == GIVEN:
            if len(node.args) != 2:
                raise FormulaError("given() takes two arguments: a value and its fallback")
            try:
                return _eval(node.args[0], lookup)
            except MissingFact:
                return _eval(node.args[1], lookup)
        args = [_eval(a, lookup) for a in node.args]
        return _bounded(FUNCTIONS[node.func.id](*args), args)
    raise FormulaError(f"cannot evaluate {type(node).__name__}")  # unreachable after parse()

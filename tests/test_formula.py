from __future__ import annotations

from typing import Any

import pytest

from advisor.errors import FormulaError
from advisor.rulebook import formula
from advisor.rulebook.formula import MissingFact

FACTS: dict[str, Any] = {"model.hidden_size": 4096, "params.lora_rank": 128, "baseline.lora_rank": 32, "value": 2.0}


def lookup(name: str) -> Any:
    if name not in FACTS:
        raise MissingFact(name)
    return FACTS[name]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10 * (2000 / model.hidden_size) * 1e-4", 10 * (2000 / 4096) * 1e-4),
        ("clamp((baseline.lora_rank / params.lora_rank) ** 0.25, 0.7, 1)", (32 / 128) ** 0.25),
        ("value * 3", 6.0),
        ("max(1, pow2_floor(value * 8 / 70))", 1),
        ("pow2_floor(37)", 32),
        ("pow2_ceil(37)", 64),
        ("ceil(500 / (2 * 16))", 16),
        ("geometric(5e-5, 0.85, 3)", [5e-5, 4.25e-5, 3.61e-5]),
        ("1 if params.lora_rank > 64 else 0", 1),
        ("params.lora_rank > baseline.lora_rank and value < 3", True),
        ("sig(0.000488281, 3)", 0.000488),
        ("['a', 'b'] + ['c']", ["a", "b", "c"]),
    ],
)
def test_evaluates(text: str, expected: Any) -> None:
    assert formula.parse(text).evaluate(lookup) == pytest.approx(expected)


def test_records_the_names_it_reads() -> None:
    f = formula.parse("clamp((baseline.lora_rank / params.lora_rank) ** 0.25, 0.7, value)")
    assert f.names == {"baseline.lora_rank", "params.lora_rank", "value"}


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "model.__class__",
        "model.hidden_size.real",
        "open('x')",
        "(lambda: 1)()",
        "[x for x in [1]]",
        "os.path",
        "undefined_name + 1",
        "max(1, key=abs)",
        "a = 1",
        "1 +",
        "{'a': 1}",
        "b'bytes'",
    ],
)
def test_rejects_anything_outside_the_language(text: str) -> None:
    with pytest.raises(FormulaError):
        formula.parse(text)


def test_unknown_fact_is_a_missing_fact_not_an_error() -> None:
    with pytest.raises(MissingFact) as err:
        formula.parse("task.dataset_size / 16").evaluate(lookup)
    assert err.value.name == "task.dataset_size"


def test_huge_exponents_are_refused() -> None:
    with pytest.raises(FormulaError, match="exponent"):
        formula.parse("10 ** 100000").evaluate(lookup)


def test_runtime_errors_become_formula_errors() -> None:
    with pytest.raises(FormulaError, match="division by zero"):
        formula.parse("params.lora_rank / (value - 2)").evaluate(lookup)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("1 / 0", "1 / 0 cannot be computed: 'division by zero'"),
        ("sqrt(-1)", "sqrt(-1) cannot be computed: 'math domain error'"),
        ("1e308 * 10", "1e308 * 10 is inf, not a finite number"),
        ("model.hidden_size * (1 / 0)", "1 / 0 cannot be computed"),
        ("value if model.hidden_size > 1 else mean([])", "mean([]) cannot be computed: 'mean() of an empty series'"),
        ("model.hidden_size ** 1000", "exponent 1000 is larger than 64"),
        ("model.hidden_size ** (2 * 40)", "exponent 80 is larger than 64"),
        ("model.hidden_size / 0", "divides by 0"),
        ("model.hidden_size % (1 - 1)", "divides by 0"),
        ("model.hidden_size + sqrt", "sqrt is a function, not a value"),
    ],
)
def test_what_evaluation_would_refuse_of_a_constant_is_refused_when_parsed(text: str, needle: str) -> None:
    """A part that reads no fact is computed at load, and the bounds evaluation puts on a constant
    exponent or divisor beside a fact are checked there: `advisor rules check` reports them."""
    with pytest.raises(FormulaError) as err:
        formula.parse(text)
    assert needle in str(err.value)


def test_constants_beside_facts_within_bounds_parse() -> None:
    for text in ("model.hidden_size ** 64", "model.hidden_size / 2", "max(1, sqrt(model.hidden_size)) ** 0.5",
                 "given(task.cycles, 3) // 2"):
        formula.parse(text)


def test_finite_count_is_the_points_the_series_statistics_measure() -> None:
    """frac_at_least and mean pass over NaN / inf: finite_count is the number of points they measured,
    which a sign's evidence names ("55.6% of the 90 steps with a finite ...")."""
    series = {"log.grad_norm": [1.0, float("nan"), 0.5, float("inf"), 1.0, float("-inf"), 2]}

    def read(name: str) -> Any:
        return series[name]

    def value(text: str) -> Any:
        return formula.parse(text).evaluate(read)

    assert value("finite_count(log.grad_norm)") == 4
    assert value("frac_at_least(log.grad_norm, 1.0) * finite_count(log.grad_norm)") == pytest.approx(3)
    assert value("finite_count(log.grad_norm) + nonfinite(log.grad_norm)") == value("len(log.grad_norm)")
    assert value("finite_count([])") == 0


def test_a_list_function_may_return_as_many_items_as_its_series_but_no_formula_may_grow_one() -> None:
    # spikes() of a long run selects from the run's own points, so it is bounded by the series it read;
    # a formula that builds a list (repetition) is bounded by MAX_LIST whatever it reads.
    series = [1.0, 2.0] * formula.MAX_LIST  # every other point doubles: MAX_LIST spikes
    read = {"log.loss": series}.__getitem__
    assert len(formula.parse("spikes(log.loss, 1.2, 2)").evaluate(read)) == formula.MAX_LIST - 1
    assert len(formula.parse("difference(log.loss, [3.0])").evaluate(read)) == len(series)
    with pytest.raises(formula.TooLarge):
        formula.parse("log.loss * 2").evaluate(read)

from __future__ import annotations

import re
from typing import Any

import pytest

from advisor.errors import FormulaError
from advisor.rulebook import conditions as cond
from advisor.rulebook.formula import MissingFact


def c(raw: dict[str, Any]) -> cond.Condition:
    return cond.parse(raw)


FACTS = {"task.method": "sft", "model.params_b": 8.0, "task.adapter": True}


def lookup(name: str) -> Any:
    if name not in FACTS:
        raise MissingFact(name)
    return FACTS[name]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"fact": "task.method", "op": "eq", "value": "sft"}, True),
        ({"fact": "task.method", "op": "in", "value": ["dpo", "grpo"]}, False),
        ({"fact": "model.params_b", "op": "between", "value": [5, 10.5]}, True),
        ({"fact": "model.params_b", "op": "between", "value": [8, 10]}, True),
        ({"fact": "model.params_b", "op": "between", "value": [1, 8]}, False),
        ({"fact": "task.dataset_size", "op": "missing"}, True),
        ({"fact": "task.method", "op": "exists"}, True),
        ({"not": {"fact": "task.adapter", "op": "eq", "value": True}}, False),
        (
            {"any": [{"fact": "task.method", "op": "eq", "value": "dpo"}, {"fact": "model.params_b", "op": "lt", "value": 9}]},
            True,
        ),
        ({"expr": "model.params_b * 2 > 15"}, True),
    ],
)
def test_evaluate(raw: dict[str, Any], expected: bool) -> None:
    assert cond.evaluate(c(raw), lookup) is expected


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"fact": "model.params_b", "op": "between", "value": [10]}, "between takes a list of two numbers"),
        ({"fact": "model.params_b", "op": "between", "value": [10, 20, 30]}, "between takes a list of two numbers"),
        ({"fact": "model.params_b", "op": "between", "value": 10}, "between takes a list of two numbers"),
        ({"fact": "model.params_b", "op": "between", "value": ["a", "b"]}, "between takes a list of two numbers"),
        ({"fact": "model.params_b", "op": "between", "value": [20, 10]}, "lo 20 is not below hi 10"),
        ({"fact": "model.params_b", "op": "between", "value": [10, 10]}, "lo 10 is not below hi 10"),
        ({"fact": "model.params_b", "op": "lt", "value": "abc"}, "lt compares numbers"),
        ({"fact": "model.params_b", "op": "gte", "value": float("nan")}, "gte compares numbers"),
        ({"fact": "model.params_b", "op": "gt"}, "gt needs a value"),
        ({"fact": "model.params_b", "op": "in", "value": 5}, "in takes a list of values"),
        ({"fact": "task.method", "op": "not_in", "value": "sft"}, "not_in takes a list of values"),
        ({"fact": "task.method", "op": "eq", "value": ["sft", "dpo"]}, "eq takes one value"),
        ({"any": [{"fact": "task.method", "op": "eq", "value": "sft"},
                  {"fact": "model.params_b", "op": "between", "value": [1]}]}, "between takes a list"),
    ],
)
def test_an_operand_its_operator_cannot_take_is_refused_when_parsed(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(FormulaError, match=re.escape(needle)):
        c(raw)


KINDS = {"task.method": "word", "model.params_b": "number", "task.adapter": "flag", "model.linear_modules": "list"}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"fact": "task.method", "op": "lt", "value": 5}, "task.method is a word, and lt compares numbers"),
        ({"fact": "task.adapter", "op": "between", "value": [0, 1]}, "task.adapter is a flag, and between"),
        ({"fact": "task.method", "op": "eq", "value": 5}, "task.method is a word, so 5 never matches"),
        ({"fact": "model.params_b", "op": "in", "value": [8, "8b"]}, "model.params_b is a number, so '8b' never"),
        ({"not": {"fact": "task.adapter", "op": "eq", "value": "yes"}}, "task.adapter is a flag, so 'yes' never"),
        ({"fact": "model.params_b", "op": "eq", "value": True}, "model.params_b is a number, so True never"),
    ],
)
def test_a_value_of_another_kind_than_its_fact_is_refused(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(FormulaError, match=re.escape(needle)):
        cond.check_kinds(c(raw), KINDS.__getitem__)


def test_values_of_their_facts_kind_pass() -> None:
    for raw in ({"fact": "task.method", "op": "in", "value": ["sft", "dpo"]},
                {"fact": "model.params_b", "op": "between", "value": [5, 10.5]},
                {"fact": "model.params_b", "op": "eq", "value": 8},
                {"fact": "task.adapter", "op": "ne", "value": False},
                {"fact": "model.linear_modules", "op": "exists"},
                {"expr": "model.params_b > 5"}):
        cond.check_kinds(c(raw), KINDS.__getitem__)


def test_unknown_fact_raises_missing() -> None:
    with pytest.raises(MissingFact):
        cond.evaluate(c({"fact": "task.dataset_size", "op": "lt", "value": 10}), lookup)


@pytest.mark.parametrize(
    ("a", "b", "disjoint"),
    [
        ({"fact": "task.method", "op": "eq", "value": "sft"}, {"fact": "task.method", "op": "eq", "value": "dpo"}, True),
        (
            {"fact": "task.method", "op": "in", "value": ["sft", "dpo"]},
            {"fact": "task.method", "op": "in", "value": ["dpo"]},
            False,
        ),
        ({"fact": "task.method", "op": "in", "value": ["sft"]}, {"fact": "task.method", "op": "not_in", "value": ["sft"]}, True),
        ({"fact": "model.params_b", "op": "lt", "value": 5}, {"fact": "model.params_b", "op": "gte", "value": 5}, True),
        ({"fact": "model.params_b", "op": "lte", "value": 5}, {"fact": "model.params_b", "op": "gte", "value": 5}, False),
        (
            {"fact": "model.params_b", "op": "between", "value": [5, 10]},
            {"fact": "model.params_b", "op": "between", "value": [10, 20]},
            True,
        ),
        ({"fact": "task.dataset_size", "op": "missing"}, {"fact": "task.dataset_size", "op": "lt", "value": 10}, True),
        ({"fact": "task.adapter", "op": "eq", "value": True}, {"fact": "task.method", "op": "eq", "value": "sft"}, False),
        (
            {"all": [{"fact": "task.adapter", "op": "eq", "value": True}, {"fact": "task.method", "op": "eq", "value": "sft"}]},
            {"all": [{"fact": "task.adapter", "op": "eq", "value": False}]},
            True,
        ),
        # not/any/expr are opaque to the analysis: never claimed disjoint
        (
            {"not": {"fact": "task.method", "op": "eq", "value": "sft"}},
            {"fact": "task.method", "op": "eq", "value": "sft"},
            False,
        ),
    ],
)
def test_disjoint(a: dict[str, Any], b: dict[str, Any], disjoint: bool) -> None:
    assert cond.disjoint(c(a), c(b)) is disjoint
    assert cond.disjoint(c(b), c(a)) is disjoint


def test_a_fact_of_another_kind_when_run_is_a_formula_error_not_a_crash() -> None:
    """The load checks a condition against its fact's catalogue kind; should a fact still come with another
    one, the comparison is an advisor error naming the condition, never a TypeError."""
    with pytest.raises(FormulaError, match=r"condition task\.method lt 5 on 'sft' failed"):
        cond.evaluate(cond.Atom("task.method", "lt", 5), lookup)



def test_a_condition_that_fails_when_a_rule_runs_names_the_rule_file() -> None:
    """Should a fact reach the engine with another kind than its catalogue's (a size as text), the
    error names the rule file and rule whose condition compared it, as a formula's error does."""
    from advisor.errors import ResolveError
    from advisor.facts.task import TaskFacts
    from advisor.rulebook.load import load_rulebook
    from advisor.rulebook.resolve import Resolver

    facts = {"model.name": "x", "model.params_b": "8", "model.active_params_b": "8", "model.hidden_size": 4096,
             **TaskFacts(method="sft", peft="lora").as_facts()}
    with pytest.raises(ResolveError, match=r"rules/\S+\.yaml: rule '[a-z0-9-]+' key 'when': (condition|formula) .*failed"):
        Resolver(load_rulebook(), facts).resolve("learning_rate")


def test_the_memory_cross_checks_condition_that_fails_when_it_runs_names_its_file() -> None:
    """The seed-table cross-check's `when` (rules/memory.yaml) compares model.params_b with a number: a size
    that reaches it as text is an advisor error naming the file, cross_check and key 'when', never a TypeError."""
    from advisor.errors import ResolveError
    from advisor.memory.fit import cross_check
    from advisor.rulebook.load import load_rulebook

    book = load_rulebook()
    facts = {"task.adapter": True, "model.params_b": "8"}
    with pytest.raises(ResolveError, match=r"rules/memory\.yaml: cross_check \(rule '[a-z-]+'\) key 'when': "
                                           r"condition model\.params_b gte 6 on '8' failed"):
        cross_check(book, facts, 4, 64)
    assert cross_check(book, {**facts, "model.params_b": 8.0}, 4, 64) is not None  # the same facts, a number

"""How every evaluator reads a dotted name: resolve (recommend), check (validate) and judge
(diagnose, probe) all build their lookup here, so a name means the same in each."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from advisor.rulebook.formula import COEF, MissingFact, coefficient_id

if TYPE_CHECKING:
    from advisor.rulebook.load import Rulebook

MISSING = object()  # what a namespace handler returns for a name it does not have

Handler = Callable[[str], Any]


def fact_lookup(facts: Mapping[str, Any], *, book: Rulebook | None = None,
                namespaces: Mapping[str, Handler] | None = None,
                on_coefficient: Callable[[str], None] | None = None) -> Callable[[str], Any]:
    """A name is, in order: a namespace the evaluator owns (``params.``, ``config.``, ``value``, ...),
    given the part after the dot; a coefficient (``coef.NAME``); a fact that is not None. Anything
    else raises MissingFact, which the rules' ``missing`` conditions and the evaluators handle."""
    owned = namespaces or {}

    def lookup(name: str) -> Any:
        ns, _, attr = name.partition(".")
        if ns in owned:
            value = owned[ns](attr)
            if value is MISSING:
                raise MissingFact(name)
            return value
        if ns == COEF and book is not None:
            cid = coefficient_id(name)
            if on_coefficient is not None:
                on_coefficient(cid)
            return book.coefficient(cid)
        if facts.get(name) is not None:
            return facts[name]
        raise MissingFact(name)

    return lookup

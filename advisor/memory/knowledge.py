"""The memory model's knowledge, read from the rulebook (rules/memory.yaml): coefficients with
their sources, optimizer state sizes and per-architecture module shapes. Nothing here is a number.

The coefficients it reads are the ones rules/memory.yaml's `requires: memory:` names (the load checks
each is defined) and the ones its optimizer and architecture tables name (checked at load too)."""

from __future__ import annotations

from functools import cache
from typing import Any

from advisor.errors import FormulaError, RuleFileError
from advisor.registries import optimizer_table
from advisor.rulebook import formula as fml
from advisor.rulebook.load import Rulebook
from advisor.rulebook.model import Coefficient

GIB = 2**30  # not-knowledge: the unit (GPU memory is stated in GiB)
CONSUMER = "memory"  # the name its `requires:` list goes by (rules/memory.yaml)


@cache
def _parse(text: str) -> fml.Formula:
    return fml.parse(text)


def evaluate(raw: Any, facts: dict[str, Any], where: str) -> Any:
    """A number, or a formula over ``facts`` (dotted names such as model.hidden_size)."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return raw

    def lookup(name: str) -> Any:
        if name in facts and facts[name] is not None:
            return facts[name]
        raise FormulaError(f"{where}: unknown name {name!r}")

    try:
        return _parse(str(raw)).evaluate(lookup)
    except fml.MissingFact as exc:
        raise FormulaError(f"{where}: unknown name {exc.name!r}") from exc


class Knowledge:
    """rules/memory.yaml as the model uses it."""

    def __init__(self, book: Rulebook) -> None:
        mem = book.memory
        # The optimizer registry as this rulebook layers it (rules/registry/optimizers.yaml); an
        # optimizer without states counts as AdamW, like an unknown name.
        table = optimizer_table(book.optimizers.values())
        self.optimizers: dict[str, str] = {n: o.states for n, o in table.items() if o.states}
        self.optimizer_steps: dict[str, str] = {n: o.step for n, o in table.items() if o.states and o.step}
        self.optimizer_paged: dict[str, bool] = {n: o.paged for n, o in table.items() if o.states}
        self.optimizer_eight_bit: dict[str, bool] = {n: o.eight_bit for n, o in table.items() if o.states}
        self.optimizer_param_dtype: dict[str, bool] = {n: o.param_dtype_states for n, o in table.items() if o.states}
        self.architectures: dict[str, dict[str, Any]] = dict(mem.get("architectures", {}))
        self.cross_check: dict[str, Any] = dict(mem.get("cross_check", {}))
        # the adapter recommend uses instead of the default one when the default does not fit (none: no change)
        self.fit_to_gpu: dict[str, Any] = dict(mem.get("fit_to_gpu", {}))
        named = {*self.optimizers.values(), *self.optimizer_steps.values(),
                 *(a["logits"] for a in self.architectures.values() if "logits" in a)}
        # The load checked that each of these is defined: what is left is a lookup.
        self.coefficients: dict[str, Coefficient] = {
            cid: book.coefficient_info(cid) for cid in sorted(book.required(CONSUMER) | named)}
        self.gpus = book.gpus

    def __getitem__(self, cid: str) -> float:
        if cid not in self.coefficients:  # a bug, not bad input: the code reads an id it did not declare
            raise KeyError(f"the memory model reads coefficient {cid!r}, which no `requires: {CONSUMER}:` "
                           "list names (rules/memory.yaml)")
        return float(self.coefficients[cid].value)

    def architecture(self, family: str, is_moe: bool) -> dict[str, Any]:
        fallback = "unknown-moe" if is_moe else "unknown"
        for wanted in (family, fallback):
            for arch in self.architectures.values():
                if wanted in arch["families"]:
                    return arch
        raise RuleFileError(f"memory model: no architecture in rules/memory.yaml covers family {family!r}",
                            hint=f"add one whose families list {fallback!r}")

    def optimizer_states(self, name: str | None) -> str:
        """The coefficient id of an optimizer's state bytes; unknown names count as AdamW."""
        return self.optimizers.get(name or "", "adamw-state-bytes")

    def eight_bit(self, name: str | None) -> bool:
        """Whether an optimizer quantizes its states to 8 bits (bitsandbytes); unknown names count as AdamW."""
        return self.optimizer_eight_bit.get(name or "", False)

    def paged(self, name: str | None) -> bool:
        """Whether an optimizer keeps its states in CUDA managed memory (outside torch's allocator)."""
        return self.optimizer_paged.get(name or "", False)

    def states_in_param_dtype(self, name: str | None) -> bool:
        """Whether an optimizer keeps its states in the parameter's dtype (torch's AdamW) rather than its
        own (bitsandbytes: fp32 or 8-bit whatever the parameter). Unknown names count as torch's AdamW."""
        if name and name in self.optimizers:
            return self.optimizer_param_dtype.get(name, False)
        return self.optimizer_param_dtype.get("adamw_torch", False)

    def optimizer_step(self, name: str | None) -> str | None:
        """The coefficient id of what an optimizer's step allocates beyond its states (None: nothing).
        Unknown names count as torch's AdamW, like their states."""
        if name and name in self.optimizers:
            return self.optimizer_steps.get(name)
        return self.optimizer_steps.get("adamw_torch")


_BOOKS: dict[int, Knowledge] = {}


def knowledge(book: Rulebook) -> Knowledge:
    """One Knowledge per loaded rulebook (the micro-batch search builds many estimates)."""
    key = id(book)
    cached = _BOOKS.get(key)
    if cached is None or cached.gpus is not book.gpus:
        cached = _BOOKS[key] = Knowledge(book)
    return cached

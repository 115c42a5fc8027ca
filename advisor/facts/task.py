"""Task facts: the method, the adapter, the data and what it is for."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from advisor.errors import FactError
from advisor.registries import check_flag, completion_capped_method_ids, generating_method_ids, method_ids, methods
from advisor.safeio import clip
from advisor.suggest import one_of

METHODS = method_ids()  # rules/registry/methods.yaml
PEFTS = ("lora", "qlora", "full")
USE_CASES = ("short-qa", "chat", "long-documents", "code")
SITUATIONS = ("new-domain", "safety", "strong-baseline", "weak-baseline")
LR_STRATEGIES = ("constant", "exponential", "manual")
RL_METHODS = generating_method_ids()  # task.is_rl: the trainer samples completions in its step
CAPPED_METHODS = completion_capped_method_ids()  # task.completion_cap: max_seq_length caps the completion
# The flag that sets each method-only fact. Which methods a fact belongs to is the method registry's
# `facts`; a flag given for another method is reported, not dropped silently.
FACT_FLAGS = {"situation": "--situation", "cycles": "--cycles", "sft_learning_rate": "--sft-lr"}
METHOD_FLAGS = tuple((name, flag, tuple(m.id for m in methods().values() if name in m.facts))
                     for name, flag in FACT_FLAGS.items())
_SUFFIX = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
MAX_COUNT = 10**15  # not-knowledge: a sanity bound far past any data set or step count


def parse_count(text: str, flag: str) -> int:
    """'12000', '12k', '1.5M', '50_000' -> int; anything else is a FactError."""
    m = re.fullmatch(r"\s*([0-9][0-9_,]*(?:\.[0-9]+)?)\s*([kKmMbB]?)\s*", text)
    if not m:
        raise FactError(f"{flag}: {clip(text)} is not a count", hint="e.g. 12000, 12k or 1.5M")
    value = float(m.group(1).replace("_", "").replace(",", "")) * _SUFFIX[m.group(2).lower()]
    if not value <= MAX_COUNT:  # 400 nines reads as inf
        raise FactError(f"{flag}: {clip(text)} is not a plausible count (at most {MAX_COUNT:.0e})",
                        hint="e.g. 12000, 12k or 1.5M")
    if value < 1 or value != int(value):
        raise FactError(f"{flag}: {clip(text)} must be a whole number of at least 1", hint="e.g. 12000, 12k or 1.5M")
    return int(value)


@dataclass(frozen=True)
class TaskFacts:
    method: str | None  # None: a config's method the rulebook does not cover (validate only)
    peft: str
    dataset_size: int | None = None
    seq_len: int | None = None
    cycles: int | None = None
    use_case: str = "chat"
    situation: str | None = None  # DPO only; None: not given (the beta rule then takes its standard row)
    sft_learning_rate: float | None = None
    lr_strategy: str | None = None  # RAFT per-cycle schedule: constant | exponential | manual
    variant: str | None = None  # the method's loss variant (rules/variants.yaml); None: the method's own

    def __post_init__(self) -> None:
        checks = [("method", "--method", METHODS), ("peft", "--peft", PEFTS), ("use_case", "--use-case", USE_CASES),
                  ("situation", "--situation", SITUATIONS), ("lr_strategy", "--strategy", LR_STRATEGIES)]
        for field_name, flag, allowed in checks:
            value = getattr(self, field_name)
            if value is None:
                continue
            # Words are matched loosely (Safety, long_documents): the user's intent is not in doubt.
            norm = str(value).strip().lower().replace("_", "-")
            if norm not in allowed:
                raise FactError(f"{flag}: unknown value {value!r}", hint=one_of(value, allowed))
            object.__setattr__(self, field_name, norm)
        check_flag("--cycles", self.cycles)
        check_flag("--seq-len", self.seq_len)
        check_flag("--sft-lr", self.sft_learning_rate)

    def unused_flags(self) -> list[str]:
        """Warnings for flags given with a method they do not apply to."""
        if self.method is None:
            return []
        return [f"{flag} {getattr(self, name)} does not apply to {self.method} (only to {', '.join(methods)}): ignored"
                for name, flag, methods in METHOD_FLAGS
                if getattr(self, name) is not None and self.method not in methods]

    def as_facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task.peft": self.peft,
            "task.is_rl": self.method in RL_METHODS,
            "task.completion_cap": self.method in CAPPED_METHODS,
            "task.adapter": self.peft in ("lora", "qlora"),
            "task.use_case": self.use_case,
        }
        for key in ("method", "dataset_size", "seq_len", "cycles", "sft_learning_rate", "situation", "lr_strategy"):
            value = getattr(self, key)
            if value is not None:
                out[f"task.{key}"] = value
        if self.method is not None:
            out["task.variant"] = self.variant or self.method
        return out


def check_variant(variants: dict[str, dict[str, Any]], method: str | None, variant: str | None) -> str | None:
    """A --variant as the registry (rules/variants.yaml) knows it, for this method; None stays None."""
    if variant is None:
        return None
    norm = variant.strip().lower().replace("-", "_")
    if norm not in variants:
        raise FactError(f"--variant: unknown variant {variant!r}", hint=f"one of {', '.join(sorted(variants))}")
    owner = variants[norm]["method"]
    if method is not None and owner != method:
        mine = sorted(v for v, raw in variants.items() if raw["method"] == method)
        raise FactError(f"--variant: {norm} is a variant of {owner}, not of {method}",
                        hint=f"for {method}: {', '.join(mine)}")
    return norm


def variant_of(variants: dict[str, dict[str, Any]], method: str | None, loss_type: Any) -> str | None:
    """The variant a trainer's loss key names (TRL loss_type, LLaMA-Factory pref_loss), or None."""
    if method is None or not isinstance(loss_type, str):
        return None
    name = loss_type.strip().lower()
    for vid, raw in variants.items():
        if raw["method"] == method and (name == vid or name in [t.lower() for t in raw.get("loss_types", ())]):
            return vid
    return None

"""One provenance type: every value a command reads or shows says where it came from.

``PRECEDENCE`` is written once and every command resolves with it: a flag beats a ``--set`` pin,
a pin beats the config file, the config beats the rulebook, and the rulebook beats a command's
own default.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


class Source(str, Enum):
    FLAG = "flag"  # a command-line option (detail: the flag)
    PIN = "pin"  # --set KEY=VALUE
    CONFIG = "config"  # a training config (detail: the key path as the file writes it; line)
    EVIDENCE = "evidence"  # a rule whose numbers are fitted to the evidence set (detail: the rule id)
    RULE = "rule"  # a rule (detail: the rule id)
    DERIVED = "derived"  # computed from other values (detail: how)
    DEFAULT = "default"  # a command's own default (detail: why)


PRECEDENCE: tuple[Source, ...] = (Source.FLAG, Source.PIN, Source.CONFIG, Source.EVIDENCE, Source.RULE,
                                  Source.DERIVED, Source.DEFAULT)


@dataclass(frozen=True)
class Sourced:
    value: Any
    source: Source
    detail: str = ""
    line: int | None = None

    def describe(self) -> str:
        """How a report words it: '--set', 'config lora_r (line 12)', 'rule lr-evidence', 'default (...)'."""
        if self.source is Source.FLAG:
            return self.detail
        if self.source is Source.PIN:
            return "--set"
        if self.source is Source.CONFIG:
            return f"config {self.detail}" + (f" (line {self.line})" if self.line else "")
        if self.source in (Source.RULE, Source.EVIDENCE):
            return f"rule {self.detail}" if self.detail else "recommendation"
        return self.detail or self.source.value

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "source": self.source.value, "detail": self.detail}
        if self.line is not None:
            out["line"] = self.line
        return out


def pick(*candidates: Sourced | None) -> Sourced | None:
    """The candidate that wins by PRECEDENCE (None values and missing candidates never win)."""
    present = [c for c in candidates if c is not None and c.value is not None]
    return min(present, key=lambda c: PRECEDENCE.index(c.source), default=None)

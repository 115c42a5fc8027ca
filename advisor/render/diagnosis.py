"""`advisor diagnose` for people (text) and machines (json)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from advisor.diagnose import Diagnosis


def to_json(result: Diagnosis) -> str:
    return json.dumps(result.as_dict(), indent=2) + "\n"


def render_text(result: Diagnosis, console: Console) -> None:
    from advisor.rulebook.judge import unjudged_lines

    def say(text: str) -> None:
        console.print(text, highlight=False, markup=False)

    tel = result.telemetry
    what = ", ".join(f"{n} {k}" for k, n in result.points().items())
    say(f"{tel.source} ({tel.reader}): {what}" + (f"; {len(tel.cycles)} cycles" if tel.cycles else ""))
    if not result.signs:
        say("no warning signs")
    for s in result.signs:
        say(f"{s.code} {s.severity}: {s.summary}")
        say(f"    measured: {s.evidence}")
        say(f"    advice: {s.advice} ({s.rule}, confidence {s.confidence})")
    for line in unjudged_lines(result.not_judged):
        say(line)

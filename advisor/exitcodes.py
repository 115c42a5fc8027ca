"""One exit-code table and one ``--fail-on`` vocabulary, for every command (the README's table)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from advisor.errors import AdvisorError


class Exit(IntEnum):
    OK = 0
    FINDINGS = 1  # findings or signs at --fail-on or above; the job does not fit; no LR found
    BAD_INPUT = 2  # usage, input or internal error
    COULD_NOT_RUN = 3  # the probe could not run (no device, out of memory at micro-batch 1, missing extra)
    INTERRUPTED = 130


SEVERITIES = ("info", "warning", "error")  # ascending; what a finding or a sign can be
FAIL_ON = ("error", "warning", "info", "never")


def check_fail_on(value: str) -> str:
    if value not in FAIL_ON:
        raise AdvisorError(f"--fail-on: unknown level {value!r}", hint=f"one of {', '.join(FAIL_ON)}")
    return value


def at_or_above(severity: str, fail_on: str) -> bool:
    """Whether one finding of ``severity`` trips ``--fail-on``."""
    return fail_on != "never" and SEVERITIES.index(severity) >= SEVERITIES.index(fail_on)


def exit_code(severities: Iterable[str], fail_on: str) -> int:
    """1 when any severity is at or above ``fail_on``, else 0."""
    return int(Exit.FINDINGS) if any(at_or_above(s, fail_on) for s in severities) else int(Exit.OK)

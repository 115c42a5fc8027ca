"""`advisor rules list | show | check`: the rulebook itself (`rules fit` lives in commands/evidence.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from advisor.commands import options as o
from advisor.commands.params import Argument, Option

LISTING, VIEW, CHECK = "advisor.listings.RuleListing", "advisor.listings.RuleView", "advisor.listings.RuleCheck"
SHOW_EPILOG = "Examples:\n\n  advisor rules show LR002\n\n  advisor rules show lora-rank-rl"
CHECK_EPILOG = "Example:\n\n  advisor rules check ./my-rules"


def rules_list(
    rules: o.Rules = [],  # noqa: B006
    parameter: Annotated[Optional[str], Option(
        "--parameter", "-p", help="Only rules that set this parameter.")] = None,
    fmt: Annotated[str, o.format_option(LISTING)] = "text",
    output: o.Output = None,
) -> None:
    """List every rule: code, id, kind, stage, parameter, summary (json adds confidence and file)."""
    from advisor.listings import list_rules
    from advisor.render.emit import check_format, emit

    check_format(fmt, LISTING)
    emit(list_rules(o.book(rules), parameter), fmt, output)


def rules_show(
    key: Annotated[str, Argument(
        help="A rule id (lora-rank-rl), a code (LORA002) or a coefficient id (sweep-steps).")],
    rules: o.Rules = [],  # noqa: B006
    fmt: Annotated[str, o.format_option(VIEW)] = "text",
    output: o.Output = None,
) -> None:
    """Explain one rule: summary, why, rows, sources and notes."""
    from advisor.listings import show_rule
    from advisor.render.emit import check_format, emit

    check_format(fmt, VIEW)
    emit(show_rule(o.book(rules), key), fmt, output)


def rules_check(
    directories: Annotated[list[Path], Argument(help="Directories of rule files to check.")],
    fmt: Annotated[str, o.format_option(CHECK)] = "text",
    output: o.Output = None,
) -> None:
    """Validate rule directories against the schema and check them layered over the built-in rules."""
    from advisor.listings import check_rules
    from advisor.render.emit import check_format, emit

    check_format(fmt, CHECK)
    emit(check_rules(directories), fmt, output)

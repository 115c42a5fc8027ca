"""`advisor models`: the models advisor knows, with their architecture numbers."""

from __future__ import annotations

from typing import Annotated

from advisor.commands import options as o

RESULT = "advisor.listings.ModelListing"
EPILOG = "Example:\n\n  advisor models --format json"


def models(
    rules: o.Rules = [],  # noqa: B006
    fmt: Annotated[str, o.format_option(RESULT)] = "text",
    output: o.Output = None,
) -> None:
    """List the models advisor knows, with their architecture numbers."""
    from advisor.listings import ModelListing
    from advisor.render.emit import check_format, emit

    check_format(fmt, RESULT)
    emit(ModelListing(o.book(rules)), fmt, output)

"""`advisor models`: the models advisor knows, with their architecture numbers; one model's facts."""

from __future__ import annotations

from typing import Annotated, Optional

from advisor.commands import options as o
from advisor.commands.params import Argument

RESULT = "advisor.listings.ModelListing"
VIEW = "advisor.listings.ModelView"
EPILOG = "Examples:\n\n  advisor models --format json\n\n  advisor models qwen2.5-7b\n\n  advisor models ./my-model/config.json"


def models(
    model: Annotated[Optional[str], Argument(
        help="One model to show in full: a registry id or alias, a hub id, a directory or a config.json.")] = None,
    rules: o.Rules = [],  # noqa: B006
    fmt: Annotated[str, o.format_option(RESULT)] = "text",
    output: o.Output = None,
) -> None:
    """List the models advisor knows, with their architecture numbers (or one model's facts, as the rules read them)."""
    from advisor.listings import ModelListing, ModelView
    from advisor.render.emit import check_format, emit

    check_format(fmt, RESULT)
    book = o.book(rules)
    if model is None:
        emit(ModelListing(book), fmt, output)
        return
    from advisor.facts.model import resolve_model

    emit(ModelView(book, resolve_model(model, book)), fmt, output)

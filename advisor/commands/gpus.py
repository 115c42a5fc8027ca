"""`advisor gpus`: the GPUs advisor knows."""

from __future__ import annotations

from typing import Annotated

from advisor.commands import options as o

RESULT = "advisor.listings.GpuListing"
EPILOG = "Example:\n\n  advisor gpus"


def gpus(
    rules: o.Rules = [],  # noqa: B006
    fmt: Annotated[str, o.format_option(RESULT)] = "text",
    output: o.Output = None,
) -> None:
    """List the GPUs advisor knows: memory as stated (GB) and as the board reports it (GiB), and bf16 support."""
    from advisor.listings import GpuListing
    from advisor.render.emit import check_format, emit

    check_format(fmt, RESULT)
    emit(GpuListing(o.book(rules)), fmt, output)

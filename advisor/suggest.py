"""'Did you mean' suggestions for unknown names (models, GPUs, rules)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

SIMILARITY_CUTOFF = 0.4  # not-knowledge: difflib ratio below which a name is not suggested


def closest(word: str, choices: Iterable[str], n: int = 5) -> list[str]:
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=SIMILARITY_CUTOFF)


def one_of(value: object, allowed: Iterable[str]) -> str:
    """The hint for an unknown word among ``allowed``: the closest first, then them all."""
    words = list(allowed)
    close = closest(str(value).lower(), words, n=1)
    return (f"did you mean {close[0]!r}? " if close else "") + f"one of {', '.join(words)}"

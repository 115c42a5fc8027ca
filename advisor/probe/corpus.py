"""The built-in corpus: Python's own help topics (PSF licence; see data/PROVENANCE.md).

Real English prose with code, shipped in the wheel, so a probe always has text to train on.
Every HELD_OUT_EVERY-th topic (in name order) is held out for the eval loss.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "data" / "pydoc_topics.jsonl.gz"
HELD_OUT_EVERY = 10  # not-knowledge: a tenth of the topics for evaluation
NAME = "built-in corpus: CPython 3.11 pydoc help topics (PSF licence)"


@cache
def corpus_texts() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training texts, held-out texts)."""
    with gzip.open(CORPUS, "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    train = tuple(r["text"] for i, r in enumerate(rows) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1)
    held = tuple(r["text"] for i, r in enumerate(rows) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1)
    return train, held

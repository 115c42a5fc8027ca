"""Keys still holding the placeholder `recommend --format` writes where a value is the user's to give
(rules/registry/formats.yaml `placeholder`): the trainer reads the word as a dataset, a path or a function
name and stops, or trains on the wrong thing, so validate names each (VCF009)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from advisor.configs.document import Document
from advisor.configs.model import ReadAs
from advisor.registries import placeholder


def _held(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    """The key paths under ``path`` whose value holds the word; a list is its key's (datasets[0].path is datasets)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _held(sub, (*path, str(key)))
    elif isinstance(value, list):
        if any(next(_held(item, path), None) is not None for item in value):
            yield path
    elif isinstance(value, str) and placeholder() in value and path:
        yield path


def placeholder_keys(doc: Document) -> list[ReadAs]:
    word = placeholder()
    return [ReadAs(".".join(path), doc.line_of(path), f"key '{'.'.join(path)}' still holds the placeholder {word}",
                   rule="check-config-placeholder") for path in _held(doc.data, ())]

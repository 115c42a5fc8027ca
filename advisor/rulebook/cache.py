"""The built rulebook, kept in the user cache directory by content hash.

Reading the rule files, checking them against their schemas and building the typed rules is most
of `advisor recommend`'s own time; unpickling the built book takes a tenth of it. The key holds
everything the book is built from: the bytes and relative paths of every rule file in every layered
directory, the schemas' bytes, and the source of the modules that build it (so a changed, added or
removed file, or a new advisor, builds afresh). One file per set of directories: a new key replaces
the old entry instead of piling up beside it.

The cache is a convenience, never a source of errors: an entry that is unreadable, truncated, from
another key or another Python is ignored and rebuilt, and one that cannot be written is skipped.
Writers write a temporary file beside the entry and rename it over, so concurrent runs never see
half a file. ``ADVISOR_NO_CACHE=1`` turns it off; ``$XDG_CACHE_HOME`` moves it (default ~/.cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from advisor.paths import cache_dir, schemas_dir, write_cache

if TYPE_CHECKING:
    from advisor.rulebook.load import Rulebook

FORMAT = b"advisor-rulebook-cache 1\n"  # bump when the entry's layout changes
KEEP = 16  # entries kept, one per set of rules directories (about 0.5 MB each)
_PKG = Path(__file__).resolve().parent.parent
# The modules a built book's objects and checks come from (a test keeps this in step with what
# loading imports): an edit to any of them may change what the same rule files build to.
# recommendation, provenance and output: what resolve's coerce, which loading's value checks use, imports.
SOURCES = ("__init__.py", "errors.py", "paths.py", "suggest.py", "registries.py", "safeio.py", "facts/__init__.py",
           "facts/catalogue.py", "rulebook", "recommendation.py", "provenance.py", "output.py")


def _source_files() -> list[Path]:
    out: list[Path] = []
    for name in SOURCES:
        path = _PKG / name
        out.extend(sorted(path.glob("*.py")) if path.is_dir() else [path])
    return out


def _where(directories: Sequence[Path], builtin: bool) -> bytes:
    """The directories as given and as resolved (built rules name their file by the path given)."""
    return "\0".join([str(builtin), *(f"{d}\0{d.resolve()}" for d in directories)]).encode()


def content_key(directories: Sequence[Path], files: Sequence[Sequence[Path]], builtin: bool) -> bytes:
    """The digest of everything a book built from these directories (and their rule files) depends on.

    ``builtin``: whether the first directory is the built-in one (reports name its files differently)."""
    h = hashlib.sha256(FORMAT)
    h.update(f"{sys.implementation.cache_tag}\0{pickle.HIGHEST_PROTOCOL}\0".encode())
    h.update(_where(directories, builtin))

    def add(label: str, data: bytes) -> None:  # length-prefixed, so no two inputs run together
        h.update(f"{label}\0{len(data)}\0".encode())
        h.update(data)

    for path in _source_files():
        add(f"src {path.relative_to(_PKG).as_posix()}", path.read_bytes())
    for path in sorted(schemas_dir().glob("*.json")):
        add(f"schema {path.name}", path.read_bytes())
    for directory, paths in zip(directories, files, strict=True):
        add("dir", str(directory).encode())
        for path in paths:
            add(f"file {path.relative_to(directory).as_posix()}", path.read_bytes())
    return h.digest()


def _entry(directories: Sequence[Path], builtin: bool) -> Path | None:
    base = cache_dir()
    if base is None:
        return None
    return base / "rulebook" / f"{hashlib.sha256(_where(directories, builtin)).hexdigest()[:32]}.pickle"


def _read(entry: Path, key: bytes) -> Rulebook | None:
    from advisor.rulebook.load import Rulebook

    try:
        blob = entry.read_bytes()
    except OSError:
        return None
    head = FORMAT + key
    if not blob.startswith(head):
        return None  # another key (a rule file or advisor changed) or not an entry at all
    import gc

    collecting = gc.isenabled()
    gc.disable()  # the collector would walk the young objects of the book again and again (~a third of loading)
    try:
        book = pickle.loads(blob[len(head):])  # a file in the user's own cache, written by _write below
    except Exception:  # a truncated or garbled entry is rebuilt, whatever pickle makes of it
        return None
    finally:
        if collecting:
            gc.enable()
    return book if isinstance(book, Rulebook) else None


def _write(entry: Path, key: bytes, book: Rulebook) -> None:
    try:
        data = FORMAT + key + pickle.dumps(book, protocol=pickle.HIGHEST_PROTOCOL)
    except pickle.PicklingError:
        return  # an unpicklable user rule costs the next run a build, nothing else
    if write_cache(entry, data):
        _prune(entry.parent)


def _prune(folder: Path) -> None:
    """Keep the KEEP entries used last (a hit touches its entry): each set of --rules directories has one."""
    by_use = sorted(folder.glob("*.pickle"), key=lambda p: p.stat().st_mtime_ns, reverse=True)
    for stale in by_use[KEEP:]:
        stale.unlink(missing_ok=True)


def cached_rulebook(directories: Sequence[Path], files: Sequence[Sequence[Path]], builtin: bool,
                    build: Callable[[], Rulebook]) -> Rulebook:
    """The book ``build`` makes from these directories, from the cache when nothing it reads changed.

    ``files``: each directory's rule files, as loading lists them (evidence/ left out)."""
    entry = _entry(directories, builtin)
    if entry is None:
        return build()
    key = content_key(directories, files, builtin)
    book = _read(entry, key)
    if book is None:
        book = build()
        _write(entry, key, book)
    else:
        with contextlib.suppress(OSError):
            os.utime(entry)  # used now: pruning keeps it
    return book

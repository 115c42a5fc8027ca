"""Where the shipped rules/ and schemas/ live.

In a wheel they are packaged inside ``advisor/`` (see pyproject's force-include); in a
source checkout or editable install they sit at the repository's top level.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent
EVIDENCE_DIR = "evidence"  # the folder of a rules directory that holds published runs, not rules


def _data_dir(name: str) -> Path:
    for candidate in (_PKG / name, _PKG.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"advisor is installed without its {name}/ directory (looked in {_PKG})")


def rules_dir() -> Path:
    return _data_dir("rules")


def schemas_dir() -> Path:
    return _data_dir("schemas")


def shown_path(path: Path) -> str:
    """How reports name a rule file: a built-in one by its place in the package, not this machine's path."""
    try:
        return f"built-in rules/{path.resolve().relative_to(rules_dir().resolve()).as_posix()}"
    except ValueError:
        return str(path)


def cache_dir() -> Path | None:
    """advisor's folder in the user cache directory; None when caching is off or there is no home."""
    import os

    if os.environ.get("ADVISOR_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or (str(Path.home() / ".cache") if Path.home().is_dir() else "")
    return Path(base) / "advisor" if base else None


def write_cache(path: Path, data: bytes) -> bool:
    """Put ``data`` at ``path`` in the cache atomically (a reader sees the old entry or the new one,
    never half); False when it cannot be written, which costs the next run its work, nothing else."""
    import os
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    return True

"""Writing results: atomically (a reader never sees half a file) and numbers people can read."""

from __future__ import annotations

import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError


def check_target(path: Path) -> Path:
    """Refuse, in one line, an output path an atomic write cannot or must not replace: a directory,
    a device, a FIFO or a socket (`-o /dev/full` must not turn the device into a file), a missing
    or read-only directory. Returns the file the rename replaces: ``path``, or where a symbolic link
    at ``path`` leads, so the write lands in the link's target and the link stays a link."""
    from advisor.safeio import check_name, clip_path, file_kind

    shown = clip_path(path)
    if not str(path) or str(path) == ".":
        raise AdvisorError(f"output path {shown} is empty or the current directory", hint="give a file name")
    check_name(str(path), "output path")
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise AdvisorError(f"{shown}: cannot write: {exc.strerror}") from exc
    target = Path(os.path.realpath(path)) if os.path.islink(path) else path
    if target != path:
        shown = f"{shown} (a link to {clip_path(target)})"
    if info is not None and not stat.S_ISREG(info.st_mode):
        kind = file_kind(info.st_mode)
        raise AdvisorError(f"{shown}: is {kind}; advisor writes only regular files",
                           hint="give a file path" + (" inside it" if stat.S_ISDIR(info.st_mode) else ""))
    directory = target.parent
    if not directory.is_dir():
        raise AdvisorError(f"{shown}: directory {clip_path(directory)} does not exist",
                           hint="create it first or pick another path")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise AdvisorError(f"{shown}: directory {clip_path(directory)} is not writable",
                           hint="pick another path")
    return target


def check_out_dir(path: Path, flag: str) -> None:
    """Refuse, in one line and before any work, an output directory that cannot be made or written: a file, a
    device or a link to one at ``path``, or no writable directory above it (a probe trains for minutes first)."""
    from advisor.safeio import check_name, clip_path, file_kind

    shown = f"{flag} {clip_path(path)}"
    check_name(str(path), flag)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise AdvisorError(f"{shown}: cannot use: {exc.strerror}", hint="give a directory path") from exc
    if info is not None and not stat.S_ISDIR(info.st_mode):
        kind = "a file" if stat.S_ISREG(info.st_mode) else file_kind(info.st_mode)
        raise AdvisorError(f"{shown}: is {kind}, not a directory", hint="give a directory path")
    existing = Path(os.path.abspath(path))
    while not existing.exists():  # the nearest directory that exists: the one mkdir(parents=True) writes into
        existing = existing.parent
    if not existing.is_dir():
        raise AdvisorError(f"{shown}: {clip_path(existing)} is not a directory", hint="give a directory path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AdvisorError(f"{shown}: directory {clip_path(existing)} is not writable", hint="pick another path")


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename.
    Only a regular file (or nothing) at ``path`` is replaced (check_target); through a symbolic link
    both the temporary file and the rename are in the target's directory, since renaming over the
    link itself would replace the link with a file and leave its target untouched."""
    target = check_target(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise AdvisorError(f"{path}: cannot write: {exc.strerror}", hint="pick another path") from exc
    try:
        # mkstemp makes the file private (0600); a new result is as readable as any file the user writes, and a
        # replaced one keeps its own mode (a 0600 file must not become world-readable by being rewritten).
        try:
            mode = stat.S_IMODE(os.stat(target).st_mode)
        except FileNotFoundError:
            mask = os.umask(0)
            os.umask(mask)
            mode = 0o666 & ~mask
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8") if isinstance(text, str) else text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise AdvisorError(f"{path}: cannot write: {exc.strerror}", hint="check the disk and the path") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def yaml_scalar(value: Any) -> str:
    """One value as inline YAML (flow style for lists)."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def gib_digits(a: float, b: float) -> int:
    """Decimals for two GiB figures compared in one line: 2 where they read the same at one (21.62 above 21.59,
    never "21.6 above 21.6"), else 1. The figures are taken at the 0.01 GiB the memory report keeps."""
    return 2 if f"{round(a, 2):.1f}" == f"{round(b, 2):.1f}" else 1


def fmt_gib(x: float, beside: float | None = None) -> str:
    """A GiB figure as the memory line prints it: at the report's 0.01 GiB first, so one figure reads the same in
    the line and the warnings (88.149 is 88.15 there, so 88.2, never 88.1); ``beside``: the figure it is compared
    with (gib_digits)."""
    return f"{round(x, 2):.{1 if beside is None else gib_digits(x, beside)}f}"


def fmt_number(v: float) -> str:
    """2e-4 -> '2e-4', 4.8828e-4 -> '4.88e-4', 0.85 -> '0.85', 16 -> '16'."""  # not-knowledge
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return str(v)
    if v == 0:
        return "0"
    if not math.isfinite(v):  # a log's inf / nan losses reach the evidence text
        return str(v)
    if abs(v) < 1e-2 or abs(v) >= 1e6:  # not-knowledge: when to switch to scientific notation
        mantissa, exp = f"{v:.2e}".split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{int(exp)}"
    text = f"{v:.3g}"
    return text


def fmt_count(n: float) -> str:
    """A parameter count: 8.03e9 -> '8.03B', 8.81e7 -> '88.1M', 2.4e4 -> '24.0K' (a test model from a config)."""
    if n >= 1e8:  # not-knowledge: display thresholds
        return f"{n / 1e9:.2f}B"
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


def fmt_value(v: Any) -> str:
    if isinstance(v, list):
        return ", ".join(fmt_value(x) for x in v)
    if isinstance(v, (int, float)):
        return fmt_number(v)
    if v is None:
        return "-"
    return str(v)


def fmt_source(source: dict[str, str]) -> str:
    if "seed" in source:
        table = f", {source['table']}" if "table" in source else ""
        return f"seed {source['seed']}{table}"
    for key in ("paper", "repo", "doc", "url"):
        if key in source:
            return source[key]
    return source.get("derived", "?")

"""Bounded reading of anything a user hands advisor: files, names, YAML and numbers.

Every reader (configs, rule files, logs, model config.json) goes through here, so each bound is
stated once: regular files only, read with a size cap that holds for devices and FIFOs too, names
the file system can hold, YAML whose aliases and nesting cannot explode, and error lines that
never echo more than a few hundred characters of the input.
"""

from __future__ import annotations

import codecs
import errno
import math
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError

MAX_NAME = 255  # not-knowledge: the longest file name (one path component) POSIX file systems hold
MAX_PATH = 4096  # not-knowledge: Linux's PATH_MAX
MAX_ECHO = 200  # not-knowledge: the most characters of user input one error line repeats
MAX_DEPTH = 64  # not-knowledge: nesting levels; a training config or rule file uses about 10
MAX_ALIAS_NODES = 100_000  # not-knowledge: values YAML aliases may add; a real file repeats a few blocks
MAX_DIGITS = 400  # not-knowledge: a number with more digits than this is not a setting (float has 309)

Error = type[AdvisorError]


def clip(value: Any, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` cut to ``limit`` characters, saying how long it was."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def clip_path(path: Any, limit: int = MAX_ECHO) -> str:
    """A path (or any name) as text, cut to ``limit`` characters: errors name their file unquoted."""
    text = str(path)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_name(name: str, what: str, error: Error = AdvisorError) -> None:
    """Refuse a path whose components the file system cannot hold (ENAMETOOLONG), in one line."""
    longest = max((len(part) for part in str(name).split(os.sep)), default=0)
    if len(str(name)) > MAX_PATH:
        raise error(f"{what}: {clip(name)} is not a file name or a model name: {len(str(name))} characters "
                    f"is longer than a path holds ({MAX_PATH})", hint="check the value")
    if longest > MAX_NAME:
        raise error(f"{what}: {clip(name)} is not a file name or a model name: a name of {longest} characters "
                    f"is longer than a file system holds ({MAX_NAME})", hint="check the value")


def _os_error(path: Path, exc: OSError, error: Error) -> AdvisorError:
    shown = clip_path(path)
    if exc.errno == errno.ELOOP:
        return error(f"{shown}: symbolic link loop", hint="the link points (through others) back at itself")
    if exc.errno == errno.ENAMETOOLONG:
        return error(f"{shown}: file name too long", hint=f"a name holds at most {MAX_NAME} characters")
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return error(f"{shown}: no such file")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return error(f"{shown}: permission denied", hint="check the file's permissions")
    return error(f"{shown}: cannot read: {exc.strerror or type(exc).__name__}")


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def stat_path(path: Path, what: str = "file", error: Error = AdvisorError) -> os.stat_result:
    """``os.stat(path)``, its failures (missing, a link loop, a name too long) as one ``error`` line."""
    check_name(str(path), what, error)
    try:
        return os.stat(path)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        if isinstance(exc, ValueError):
            raise error(f"{clip_path(path)}: not a file name (it holds a NUL byte)") from exc
        raise _os_error(path, exc, error) from exc


def _open_regular(path: Path, *, limit: int, what: str, error: Error) -> int:
    """A read-only descriptor of the regular file ``path``, refused when its size claims more than
    ``limit``. Opened non-blocking: a FIFO swapped in after the stat cannot hang the read."""
    info = stat_path(path, what, error)
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{clip_path(path)}: is a directory", hint=f"give the {what} itself")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{clip_path(path)}: is {file_kind(info.st_mode)}, not a regular file",
                    hint=f"give a {what} on disk")
    if info.st_size > limit:
        raise error(f"{clip_path(path)}: {info.st_size} bytes is too large for a {what} (limit {limit})")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise _os_error(path, exc, error) from exc
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced between the stat and the open
        os.close(fd)
        raise error(f"{clip_path(path)}: not a regular file", hint=f"give a {what} on disk")
    return fd


def _too_large(path: Path, limit: int, what: str, error: Error) -> AdvisorError:
    return error(f"{clip_path(path)}: more than {limit} bytes is too large for a {what}")


def read_bytes(path: Path, *, limit: int, what: str = "file", error: Error = AdvisorError) -> bytes:
    """At most ``limit`` bytes of the regular file ``path``; anything else is one ``error`` line.

    Read to ``limit + 1`` bytes whatever its size claims (/proc files and devices report 0)."""
    fd = _open_regular(path, limit=limit, what=what, error=error)
    try:
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise _os_error(path, exc, error) from exc
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > limit:
        raise _too_large(path, limit, what, error)
    return raw


def _binary(path: Path, what: str, error: Error, binary_hint: str | None) -> AdvisorError:
    return error(f"{clip_path(path)}: binary file, not a {what}", hint=binary_hint)


def _not_utf8(path: Path, start: int, error: Error) -> AdvisorError:
    return error(f"{clip_path(path)}: not UTF-8 text (byte {start})", hint="save the file as UTF-8")


def read_text(path: Path, *, limit: int, what: str = "file", error: Error = AdvisorError,
              binary_hint: str | None = None) -> str:
    """``read_bytes`` decoded as UTF-8 (a byte-order mark is dropped: spreadsheets write one)."""
    raw = read_bytes(path, limit=limit, what=what, error=error)
    if b"\x00" in raw:
        raise _binary(path, what, error, binary_hint)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _not_utf8(path, exc.start, error) from exc


def read_lines(path: Path, *, limit: int, what: str = "file", error: Error = AdvisorError,
               binary_hint: str | None = None) -> Iterator[str]:
    """``read_text(...).splitlines()`` one line at a time, holding one line: a log of millions of rows
    is never in memory whole. A fault of the bytes (past ``limit``, a NUL, not UTF-8) is read_text's
    error, and the one read_text would raise wherever in the file it is: it is raised when the lines
    run out. A caller that meets a bad line keeps its error and reads on to the end, so that a fault
    of the file as a whole comes first, as it does with read_text."""
    fd = _open_regular(path, limit=limit, what=what, error=error)
    fault: AdvisorError | None = None  # the first; a NUL anywhere comes before bytes that are not UTF-8
    total = 0  # bytes read, toward ``limit``
    offset = 0  # where the line starts in the text read_text decodes (a byte-order mark is not in it)
    try:
        with os.fdopen(fd, "rb") as file:
            raw = file.readline(limit + 1)
            total = len(raw)
            if raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            while raw:
                if total > limit:
                    raise _too_large(path, limit, what, error)
                if b"\x00" in raw:
                    fault = _binary(path, what, error, binary_hint)
                elif fault is None:
                    try:
                        text = raw.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        fault = _not_utf8(path, offset + exc.start, error)
                    else:
                        yield from text.splitlines()  # \r, \x85, U+2028 end lines too, as in read_text
                offset += len(raw)
                raw = file.readline(limit + 1 - total)
                total += len(raw)
    except OSError as exc:
        raise _os_error(path, exc, error) from exc
    if fault is not None:
        raise fault


def finite(value: Any) -> float | None:
    """``value`` as a finite float, or None (a string, a bool, NaN, inf, an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def at_path(data: Any, dotted: str) -> Any:
    """The value at a dotted key path of parsed YAML / JSON (``trl.beta``: data["trl"]["beta"]), or None
    where a part is missing or not a mapping."""
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


# --- JSON and YAML ------------------------------------------------------------------------

def check_depth(data: Any, where: str, error: Error = AdvisorError, limit: int = MAX_DEPTH) -> None:
    """Refuse data nested deeper than ``limit`` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                raise error(f"{where}: nested more than {limit} levels deep", hint="flatten the file")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def load_json(text: str, where: str, error: Error = AdvisorError, expected: str = "valid JSON") -> Any:
    """``json.loads`` with its failures (syntax, depth, digits) as one ``error`` line."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not {expected}: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError as exc:
        raise error(f"{where}: nested too deeply to read", hint="flatten the file") from exc
    except ValueError as exc:  # int() of more than sys.get_int_max_str_digits() digits
        raise error(f"{where}: a number too large to read: {str(exc)[:120]}") from exc
    check_depth(data, where, error)
    return data


def _depth_bound(text: str) -> int:
    """An upper bound of the nesting depth of a YAML text, in one pass over its lines: the running
    depth of flow brackets plus each line's indentation and indicators. Quoted brackets only raise
    the bound (the exact check then runs), never lower it."""
    lines = text.splitlines()
    opens = text.count("[") + text.count("{")
    if max(map(len, lines), default=0) + opens + 1 <= MAX_DEPTH:  # every level takes a character
        return max(map(len, lines), default=0) + opens + 1
    flow = worst = 0
    for line in lines:
        stripped = line.lstrip(" ")
        block = len(line) - len(stripped) + stripped.count("- ") + stripped.count("? ") + stripped.count(": ") + 1
        up = stripped.count("[") + stripped.count("{")
        worst = max(worst, block + flow + up)
        flow = max(0, flow + up - stripped.count("]") - stripped.count("}"))
    return worst


def _event_depth(text: str, loader_cls: type[Any], limit: int) -> int | None:
    """The first event depth past ``limit`` (None: the text stays within it), without composing."""
    import yaml

    depth = 0
    loader = loader_cls(text)
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > limit:
                    return depth
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    finally:
        loader.dispose()
    return None


def check_nodes(root: Any, where: str, error: Error = AdvisorError) -> None:
    """Bound a composed YAML node graph: no alias cycle, depth at most MAX_DEPTH, and at most
    MAX_ALIAS_NODES values added by aliases (a "billion laughs" file composes to a few nodes and
    expands to 10^9). Iterative, and linear in the number of distinct nodes."""
    import yaml

    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = [] if isinstance(node, yaml.ScalarNode) else (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else list(node.value))
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] - 1 > MAX_ALIAS_NODES + len(size):
                raise error(f"{where}: YAML aliases expand to more than {MAX_ALIAS_NODES} values",
                            hint="an alias bomb? repeat the block, or use fewer nested aliases")
            if depth[key] > MAX_DEPTH:
                raise error(f"{where}: nested more than {MAX_DEPTH} levels deep", hint="flatten the file")
            continue
        if key in size:
            continue
        if key in on_path:
            line = node.start_mark.line + 1 if node.start_mark is not None else "?"
            raise error(f"{where}: line {line}: an alias refers to the value that holds it (a recursive alias)",
                        hint="YAML aliases must point at a finished value")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)
    return None


def compose_yaml(text: str, loader_cls: type[Any], where: str, error: Error = AdvisorError) -> tuple[Any, Any]:
    """(loader, root node) for ``text``, bounded in depth and alias expansion before anything is
    constructed. The caller constructs from the node and disposes of the loader."""
    if _depth_bound(text) > MAX_DEPTH:
        deep = _event_depth(text, loader_cls, MAX_DEPTH)
        if deep is not None:
            raise error(f"{where}: nested more than {MAX_DEPTH} levels deep", hint="flatten the file")
    loader = loader_cls(text)
    try:
        node = loader.get_single_node()
        if node is not None and "*" in text:  # no alias without a '*': nothing can expand or recur
            check_nodes(node, where, error)
    except BaseException:
        loader.dispose()
        raise
    return loader, node


# Python exceptions PyYAML's constructors let out for a bad tagged value: `!!bool maybe` (KeyError),
# `!!float x` / `!!int x` / 5000 digits (ValueError), `? !!set {a}` as a key (TypeError).
CONSTRUCT_ERRORS = (KeyError, ValueError, TypeError, OverflowError, RecursionError, AttributeError, IndexError)


def construct(build: Callable[[], Any], at: list[Any], where: str, error: Error = AdvisorError) -> Any:
    """Run a PyYAML construction; a value its tag cannot take (``at[0]``, the node being built) is
    one ``error`` line."""
    try:
        return build()
    except CONSTRUCT_ERRORS as exc:
        node = at[0]
        line = node.start_mark.line + 1 if getattr(node, "start_mark", None) is not None else "?"
        tag = str(getattr(node, "tag", "")).rsplit(":", 1)[-1]
        value = getattr(node, "value", None)
        shown = clip(value) if isinstance(value, str) else "this value"
        reason = "too many digits" if "digits" in str(exc) else f"not a valid {tag or 'value'}"
        raise error(f"{where}: line {line}: {shown} is {reason}",
                    hint="drop the !!tag or fix the value") from exc


def load_yaml_value(text: str, where: str, error: Error = AdvisorError) -> Any:
    """One YAML value (a --set VALUE), within the same bounds as a file."""
    import yaml

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        loader, node = compose_yaml(text, loader_cls, where, error)
        try:
            return None if node is None else construct(lambda: loader.construct_document(node), [node], where, error)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise error(f"{where}: value is not a number, word or [list]") from exc

"""Parse a YAML or JSON config keeping the line of every value (for findings and --fix)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from advisor.errors import AdvisorError
from advisor.safeio import clip_path, compose_yaml, construct, load_json, read_text

MAX_CONFIG_BYTES = 5_000_000  # not-knowledge: a training config is kilobytes; larger is a mistake

KeyPath = tuple[Any, ...]


class ConfigError(AdvisorError):
    """A config file that cannot be read as a training config."""


@dataclass(frozen=True)
class Duplicate:
    """A key given twice in one mapping. The value kept is the last, as yaml.safe_load (which Axolotl, TRL's
    HfArgumentParser and open-instruct read configs with) keeps it; ``earlier`` is the value it replaced."""

    key: str
    first: int
    again: int
    differs: bool = False
    earlier: Any = None
    value: Any = None


@dataclass
class Document:
    path: Path
    text: str
    data: dict[str, Any]
    lines: dict[KeyPath, int] = field(default_factory=dict)  # key path -> 1-based line of its value
    syntax: str = "yaml"  # yaml | flow | json (_syntax: how --fix writes it back)
    duplicates: list[Duplicate] = field(default_factory=list)
    quoted_paths: frozenset[KeyPath] = frozenset()  # the key paths of scalars written quoted or as block text

    def line_of(self, path: KeyPath) -> int | None:
        return self.lines.get(path)

    def quoted(self, path: KeyPath) -> bool:
        """Whether the value at ``path`` was written as text ("2e-4", as every JSON string is) or sits in a block
        given as one string of JSON: a loader that types only plain scalars (OmegaConf's) keeps it a str."""
        return self.syntax == "json" or any(path[:i] in self.quoted_paths for i in range(1, len(path) + 1))

    def source_line(self, line: int) -> str:
        rows = self.text.splitlines()
        return rows[line - 1] if 0 < line <= len(rows) else ""


_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _walk(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], loader: Any, at: list[yaml.Node],
          dups: list[Duplicate], quoted: set[KeyPath]) -> Any:
    """The node's value, recording the line of every key path and every key given twice. ``at`` holds the
    node being built, for the error line when a tagged value cannot be constructed."""
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            at[0] = key_node
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (dict, list, set, tuple)) or key is None:
                raise ConfigError(f"line {line}: a mapping key must be a plain word or number", hint="quote the key")
            child = (*path, key)
            value = _walk(value_node, child, lines, loader, at, dups, quoted)
            if key in out:
                first = lines.get(child, line)
                dotted = ".".join(map(str, child))
                if out[key] == value:  # the same value twice is harmless: keep the first line
                    dups.append(Duplicate(dotted, first, line))
                    continue
                # Two values are a mistake, but the trainer still runs: it keeps the last, and so does advisor
                # (validate's VCF004 error names both lines).
                dups.append(Duplicate(dotted, first, line, differs=True, earlier=out[key], value=value))
            lines[child] = line
            out[key] = value
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = (*path, i)
            lines[child] = item.start_mark.line + 1
            items.append(_walk(item, child, lines, loader, at, dups, quoted))
        return items
    at[0] = node
    if isinstance(node, yaml.ScalarNode) and node.style:  # '"', "'", or block text ('|', '>'); plain: None or ''
        quoted.add(path)
    return loader.construct_object(node, deep=True)


def _syntax(text: str, node: yaml.Node | None, looks_json: bool) -> str:
    """How --fix writes the file back: `json`, text JSON itself reads (dumped again as JSON); `flow`, YAML whose
    top mapping is written inline ({a: 1, b: 2}: one line holds every key, so it is dumped again whole); `yaml`,
    edited line by line so comments and layout survive."""
    if looks_json:
        try:
            json.loads(text)
            return "json"
        except ValueError:
            pass
    return "flow" if isinstance(node, yaml.MappingNode) and node.flow_style else "yaml"


def read_document(path: Path, text: str | None = None) -> Document:
    """Read ``path`` as YAML (JSON is read as YAML too, to keep lines), or ``text`` as the file at
    ``path`` (an export read back before it is written). Errors are ConfigError, one line."""
    if text is None:
        text = read_text(path, limit=MAX_CONFIG_BYTES, what="training config", error=ConfigError,
                         binary_hint="a YAML or JSON config is text")
    if not text.strip():
        raise ConfigError(f"{clip_path(path)}: empty file")
    looks_json = path.suffix == ".json" or text.lstrip().startswith("{")
    syntax = "yaml"
    lines: dict[KeyPath, int] = {}
    dups: list[Duplicate] = []
    quoted: set[KeyPath] = set()
    where = clip_path(path)
    try:
        loader, node = compose_yaml(text, _Loader, where, ConfigError)
        syntax = _syntax(text, node, looks_json)
        try:
            at: list[yaml.Node] = [node]
            data = construct(lambda: _walk(node, (), lines, loader, at, dups, quoted), at, where, ConfigError) if node else None
        except ConfigError as exc:
            raise exc if exc.message.startswith(where) else ConfigError(f"{where}: {exc.message}",
                                                                        hint=exc.hint) from exc
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        if looks_json:  # JSON that YAML cannot read (tabs, some escapes): no lines, still checked
            data, syntax = load_json(text, where, ConfigError), "json"
        else:
            mark = getattr(exc, "problem_mark", None)
            line_at = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "syntax error"
            raise ConfigError(f"{where}: not valid YAML{line_at}: {clip_path(problem)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of settings, got {type(data).__name__}",
                          hint="a training config is a YAML or JSON object")
    return Document(path=path, text=text, data=data, lines=lines, syntax=syntax, duplicates=dups,
                    quoted_paths=frozenset(quoted))

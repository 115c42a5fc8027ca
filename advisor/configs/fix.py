"""--fix: write the config again with the rulebook's values where a finding has a fix.

YAML is edited line by line so comments and layout survive; JSON is loaded and dumped.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import yaml

from advisor.configs.document import Document
from advisor.configs.model import TrainingConfig
from advisor.output import yaml_scalar
from advisor.registries import formats
from advisor.rulebook.check import Finding

_KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[^\s:#][^:#]*?)(?P<sep>\s*:\s*)(?P<value>[^#]*?)(?P<comment>\s+#.*)?$")


def changes_value(f: Finding, cfg: TrainingConfig) -> bool:
    """Whether ``f``'s fix writes its parameter a value other than the config's (VPM004 keeps the group it
    divides by and changes only the accumulation beside it)."""
    stated = cfg.values.get(f.parameter)
    return stated is None or stated.value != f.fix


def fixable(findings: list[Finding], cfg: TrainingConfig, own_keys: dict[str, list[str]],
            default_key: dict[str, str] | None = None) -> list[Finding]:
    """One fix per parameter that changes its value, only where the finding points at the parameter's own
    key (or none).
    A fix's companions (a rule's fix_also: the accumulation that keeps the effective batch when the
    micro-batch shrinks) are written with it, over another finding's fix of the same parameter."""
    out: dict[str, Finding] = {}
    companions: dict[str, Finding] = {}
    for f in findings:
        if not f.has_fix or f.parameter in out:
            continue
        keys = own_keys.get(f.parameter, [])
        if f.line is not None and f.key not in keys and f.key.split(".")[-1] not in keys:
            continue  # e.g. lora_target_linear, quantization_bit: a different shape of setting
        # a parameter the format has no key for (RAFT's lr_decay_factor in TRL) is not written: the trainer
        # would refuse the key; a fix that keeps the value leaves the parameter to another finding's
        if (keys or f.parameter in cfg.values) and changes_value(f, cfg):
            out[f.parameter] = f
        for name, value in f.also:
            stated = cfg.values.get(name)
            key = stated.key if stated is not None else (default_key or {}).get(name, name)
            companions[name] = replace(f, parameter=name, key=key, line=stated.line if stated is not None else None,
                                       fix=value, also=())
    return list({**out, **companions}.values())


def _render_value(value: Any, fmt: str, parameter: str) -> str:
    if formats()[fmt].lists == "comma" and isinstance(value, list):
        return ",".join(str(v) for v in value)
    return yaml_scalar(value)


def _block_end(rows: list[str], start: int, indent: int) -> int:
    """Index after the block value (list items or deeper lines) that follows the key at ``start``."""
    i = start + 1
    while i < len(rows):
        row = rows[i]
        stripped = row.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        lead = len(row) - len(row.lstrip())
        if lead > indent or (lead == indent and stripped.startswith("- ")):
            i += 1
            continue
        break
    return i


def _load(text: str, syntax: str) -> Any:
    return json.loads(text) if syntax == "json" else yaml.safe_load(text)


def _dump(data: Any, syntax: str) -> str:
    """A whole file again: JSON as JSON, inline YAML as one inline mapping."""
    if syntax == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, default_flow_style=True, sort_keys=False, width=2**16)


def apply_fixes(doc: Document, cfg: TrainingConfig, fixes: list[Finding], default_key: dict[str, str]) -> str:
    if doc.syntax in ("json", "flow"):  # no line to edit: the data is written again
        data = _load(doc.text, doc.syntax)
        for f in fixes:
            data[f.key if f.line is not None else default_key[f.parameter]] = f.fix
        return _dump(data, doc.syntax)
    rows = doc.text.splitlines()
    appended: list[str] = []
    for f in sorted(fixes, key=lambda f: -(f.line or 0)):  # bottom-up keeps earlier line numbers valid
        value = _render_value(f.fix, cfg.format, f.parameter)
        if f.line is None:
            key = default_key[f.parameter]
            if "." in key:  # under one key: advisor's `training:`, a nested trainer key (peft_config.r)
                parent, child = key.split(".", 1)
                at = next((i for i, r in enumerate(rows) if r.startswith(f"{parent}:")), None)
                if "." in child:
                    continue  # two levels down: left to the user rather than guessed
                if at is None:  # no such block yet: one of its own
                    appended += [f"{parent}:", f"  {child}: {value}  # advisor --fix: {f.code} {f.rule}"]
                else:
                    rows.insert(at + 1, f"  {child}: {value}  # advisor --fix: {f.code} {f.rule}")
            else:
                # a key the file states empty or null (the reader skips it) is rewritten where it stands
                empty = next((i for i, r in enumerate(rows) if (m := _KEY_LINE.match(r)) and not m.group("indent")
                              and m.group("key") == key and m.group("value").strip() in ("", "null", "~", "None")
                              and _block_end(rows, i, 0) == i + 1), None)
                if empty is None:
                    appended.append(f"{key}: {value}  # advisor --fix: {f.code} {f.rule}")
                else:
                    rows[empty] = f"{key}: {value}  # advisor --fix: {f.code} {f.rule}"
            continue
        i = f.line - 1
        m = _KEY_LINE.match(rows[i])
        if m is None:
            continue
        end = _block_end(rows, i, len(m.group("indent"))) if not m.group("value").strip() else i + 1
        comment = m.group("comment") or ""
        rows[i:end] = [f"{m.group('indent')}{m.group('key')}: {value}{comment}"]
    if appended:
        rows += ["", "# added by advisor --fix", *appended]
    return "\n".join(rows) + "\n"


def rename_keys(text: str, syntax: str, renames: dict[str, str]) -> str:
    """``text`` with each top-level key in ``renames`` written under its new name, value, comment and place kept
    (a TRL key an earlier release took, under the one that replaced it: VCF011)."""
    if not renames:
        return text
    if syntax in ("json", "flow"):
        return _dump({renames.get(k, k): v for k, v in _load(text, syntax).items()}, syntax)
    rows = text.splitlines()
    for i, row in enumerate(rows):
        m = _KEY_LINE.match(row)
        if m is not None and not m.group("indent") and m.group("key") in renames:
            rows[i] = f"{renames[m.group('key')]}{row[len(m.group('key')):]}"
    return "\n".join(rows) + "\n"

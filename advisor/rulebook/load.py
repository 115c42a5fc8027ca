"""Load the rulebook: YAML -> JSON Schema -> typed rules, registries and load-time checks.

Every file in a rules directory is validated against the schema its top-level key names.
User directories layer over the built-in one: a rule, model, GPU, family, parameter or
coefficient with the same id replaces the earlier one (a coefficient keeps its integer /
range). The checks that need the whole book (unknown facts, unknown parameters, duplicate
codes, the coefficients each consumer requires, conflicts, cycles) run after layering.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError, FormulaError, RuleFileError
from advisor.facts.catalogue import FLAG, LIST, NAMESPACES, NUMBER, WORD, fact_kind
from advisor.paths import EVIDENCE_DIR, rules_dir, schemas_dir, write_cache
from advisor.rulebook import conditions as cond
from advisor.rulebook import formula as fml
from advisor.rulebook.model import DEFAULT_STAGE, SETTING_STAGES, Case, Coefficient, Parameter, Rule
from advisor.safeio import clip_path, compose_yaml, construct, read_bytes
from advisor.suggest import closest

TEMPLATE = re.compile(r"\{([^{}]+)\}")

FILE_KINDS = {
    "rules": "rules.schema.json",
    "parameters": "parameters.schema.json",
    "families": "families.schema.json",
    "variants": "variants.schema.json",
    "models": "models.schema.json",
    "gpus": "gpus.schema.json",
    "coefficients": "coefficients.schema.json",
    "memory": "memory.schema.json",
    "methods": "methods.schema.json",
    "optimizers": "optimizers.schema.json",
    "formats": "formats.schema.json",
    "sharding": "sharding.schema.json",
    "flags": "flags.schema.json",
}
SHARED_SCHEMA = "defs.schema.json"  # source, note, confidence, coefficient...: the other schemas $ref them

# Registries advisor.registries reads from the built-in rules/ only: each entry needs code (a trainer
# step, a reader), so a user directory cannot add one. Optimizers are data all through and layer.
BUILTIN_REGISTRIES = ("methods", "formats", "sharding", "flags")
MAX_RULE_FILE_BYTES = 2_000_000


@dataclass
class Rulebook:
    rules: dict[str, Rule] = field(default_factory=dict)
    parameters: dict[str, Parameter] = field(default_factory=dict)
    families: dict[str, dict[str, Any]] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # rules/variants.yaml, by id
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    gpus: dict[str, dict[str, Any]] = field(default_factory=dict)
    # every coefficient by id (`coefficients:` files and memory.yaml's list alike), as written plus its _file
    coefficients: dict[str, dict[str, Any]] = field(default_factory=dict)
    # consumer (memory, sweep, ...) -> the coefficient ids its code reads -> (file, index) declaring each
    requires: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)  # rules/memory.yaml's other tables, layered by key and id
    optimizers: dict[str, dict[str, Any]] = field(default_factory=dict)  # rules/registry/optimizers.yaml, by id
    directories: list[Path] = field(default_factory=list)

    def rules_for(self, parameter: str) -> list[Rule]:
        return [r for r in self.rules.values() if r.parameter == parameter]

    def coefficient(self, cid: str) -> float:
        """A named number that code or a rule (coef.NAME) reads: its value, a formula evaluated; a missing
        one is a rule-file error. Code declares the ids it reads (`requires:`), so the load checks them."""
        if cid not in self.coefficients:
            raise RuleFileError(f"coefficient {cid!r} is not defined in any rules directory",
                                hint="the built-in rules/ declare it; a user directory may replace it by the same id")
        value = self.coefficients[cid]["value"]
        return _constant(value) if isinstance(value, str) else value  # type: ignore[no-any-return]

    def coefficient_info(self, cid: str) -> Coefficient:
        """A coefficient with its unit and provenance (what a report that cites it needs)."""
        value = self.coefficient(cid)
        raw = self.coefficients[cid]
        return Coefficient(id=cid, value=value, unit=raw.get("unit", ""), summary=raw["summary"],
                           sources=_sources(raw["source"]), confidence=raw["confidence"], file=raw["_file"])

    def required(self, consumer: str) -> frozenset[str]:
        """The coefficient ids ``consumer`` declares in a `requires:` list (each defined: checked at load)."""
        return frozenset(self.requires.get(consumer, {}))

    def find(self, key: str) -> Rule | None:
        """A rule by id or by code (case-insensitive)."""
        if key in self.rules:
            return self.rules[key]
        for rule in self.rules.values():
            if rule.code.lower() == key.lower():
                return rule
        return None


# --- YAML ----------------------------------------------------------------------------

@cache
def _loader() -> Any:
    """A safe loader that rejects duplicate mapping keys instead of silently keeping the last: libyaml's
    parser when PyYAML has it (parsing is most of a build otherwise). Made on first use, so that a
    cached rulebook never imports yaml."""
    import yaml

    base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def construct_mapping(loader: Any, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    strict: Any = type("_StrictLoader", (base,), {})
    strict.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return strict


def read_yaml(path: Path) -> Any:
    """Parse one YAML file strictly; errors name the file and line."""
    return _read_yaml_bytes(path)[0]


def _read_yaml_bytes(path: Path, *, trusted: bool = False) -> tuple[Any, bytes]:
    """The parsed file and its bytes (the schema cache keys on them). A user's file is read within
    safeio's bounds (regular file, size, nesting, alias expansion); the shipped rules are trusted."""
    raw = read_bytes(path, limit=MAX_RULE_FILE_BYTES, what="rule file", error=RuleFileError)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    import yaml

    try:
        strict = _loader()
        if trusted:
            return yaml.load(text, Loader=strict), raw  # a SafeLoader subclass
        loader, node = compose_yaml(text, strict, str(path), RuleFileError)
        try:
            data = None if node is None else construct(lambda: loader.construct_document(node), [node], str(path),
                                                       RuleFileError)
            return data, raw
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RuleFileError(f"{path}:{where}: not valid YAML: {clip_path(problem)}") from exc


# --- schemas ---------------------------------------------------------------------------

@cache
def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((schemas_dir() / name).read_text(encoding="utf-8"))
    return loaded


@cache
def _registry() -> Any:
    """Every shipped schema by its $id, so a `$ref` to defs.schema.json resolves without the network."""
    from referencing import Registry, Resource  # deferred, like jsonschema (which depends on it)

    resources = [Resource.from_contents(schema(p.name)) for p in sorted(schemas_dir().glob("*.schema.json"))]
    return Registry().with_resources((r.contents["$id"], r) for r in resources)


@cache
def _validator(name: str) -> Any:
    import jsonschema  # deferred: only needed when files are loaded

    return jsonschema.Draft202012Validator(schema(name), registry=_registry())


def _key_path(parts: Sequence[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def _schema_error(path: Path, kind: str, data: dict[str, Any], error: Any) -> RuleFileError:
    parts = list(error.absolute_path)
    owner = ""
    if len(parts) >= 2 and isinstance(parts[1], int):
        items = data.get(kind) or []
        if parts[1] < len(items) and isinstance(items[parts[1]], dict):
            ident = items[parts[1]].get("id") or items[parts[1]].get("name")
            if ident:
                owner = f" {kind.rstrip('s')} {ident!r}"
    message = error.message
    if len(message) > 160:
        message = message[:157] + "..."
    return RuleFileError(f"{path}:{owner} key '{_key_path(parts)}': {message}")


def _kind_of(path: Path, data: Any) -> str:
    if not isinstance(data, dict):
        raise RuleFileError(
            f"{path}: expected a mapping with one of the keys {', '.join(FILE_KINDS)}",
            hint="see rules/*.yaml for the shape of each kind of file",
        )
    kinds = [k for k in FILE_KINDS if k in data]
    if len(kinds) != 1:
        raise RuleFileError(
            f"{path}: expected exactly one of the top-level keys {', '.join(FILE_KINDS)}, found {sorted(data)}"
        )
    return kinds[0]


def _validated_marker(text: bytes, kind: str) -> Path | None:
    """Where a "this content passed this schema" marker lives: the user cache, keyed by the hash of the
    file's bytes and of the schema's, so an edited file or schema is validated again. None: no cache
    (ADVISOR_NO_CACHE set, or no cache directory)."""
    import hashlib

    from advisor.paths import cache_dir

    base = cache_dir()
    if base is None:
        return None
    digest = hashlib.sha256(_schema_bytes(kind) + b"\0" + text).hexdigest()
    return base / "validated" / digest


@cache
def _schema_bytes(kind: str) -> bytes:
    """The schema a kind of file is validated against, and the shared definitions it $refs."""
    return b"".join((schemas_dir() / name).read_bytes() for name in (FILE_KINDS[kind], SHARED_SCHEMA))


def _mark_valid(marker: Path | None) -> None:
    """Record a pass; a cache that cannot be written is no error (the next load validates again)."""
    if marker is not None:
        write_cache(marker, b"")  # an empty file: there is nothing in it to corrupt


def validate_document(path: Path, data: Any, text: bytes | None = None) -> str:
    """Validate one parsed file against the schema its top-level key names; return that key.

    With the file's bytes, a content hash already validated against the same schema skips the
    validation (about a third of start-up): JSON Schema is the slow part of loading the rules."""
    kind = _kind_of(path, data)
    marker = _validated_marker(text, kind) if text is not None else None
    if marker is not None and marker.is_file():
        return kind
    import jsonschema  # deferred: a cached rulebook never imports it

    error = jsonschema.exceptions.best_match(_validator(FILE_KINDS[kind]).iter_errors(data))
    if error is not None:
        raise _schema_error(path, kind, data, error)
    _mark_valid(marker)
    return kind


# --- building typed rules ---------------------------------------------------------------

def _sources(raw: Any) -> tuple[dict[str, str], ...]:
    if raw is None:
        return ()
    return tuple(raw) if isinstance(raw, list) else (raw,)


def _num_or_formula(raw: Any) -> Any:
    if raw is None or (isinstance(raw, (int, float)) and not isinstance(raw, bool)):
        return raw
    return fml.parse(str(raw))


@contextmanager
def _at(where: str, key: str) -> Iterator[None]:
    """A formula or condition that fails its load-time checks, as a rule-file error naming ``key``."""
    try:
        yield
    except FormulaError as exc:
        raise RuleFileError(f"{where} key '{key}': {exc.message}", hint=exc.hint) from exc


def _build_case(raw: dict[str, Any], rule_raw: dict[str, Any], label: str, where: str, prefix: str) -> Case:
    confidence = raw.get("confidence", rule_raw.get("confidence"))
    rng = raw.get("range")
    choices = raw.get("choices", rule_raw.get("choices"))
    with _at(where, f"{prefix}when"):
        when = cond.parse(raw.get("when"))
    with _at(where, f"{prefix}formula"):
        formula = fml.parse(raw["formula"]) if "formula" in raw else None
    with _at(where, f"{prefix}range"):
        pair = (_num_or_formula(rng[0]), _num_or_formula(rng[1])) if rng else None
    bounds: dict[str, Any] = {}
    for key in ("factor", "max", "min"):
        with _at(where, f"{prefix}{key}"):
            bounds[key] = _num_or_formula(raw.get(key))
    return Case(
        label=label,
        when=when,
        confidence=confidence or "",
        sources=_sources(raw.get("source")) or _sources(rule_raw.get("source")),
        default=raw.get("default"),
        formula=formula,
        range=pair,
        choices=tuple(choices) if choices is not None else None,
        **bounds,
    )


_CASE_KEYS = ("default", "formula", "range", "choices", "factor", "max", "min")
_VALUE_KEYS = ("default", "formula", "range", "factor", "max", "min")  # choices may sit on a rule with cases


def _build_rule(raw: dict[str, Any], path: Path, family: str) -> Rule:
    rid = raw["id"]
    where = f"{path}: rule {rid!r}"
    if "cases" in raw:
        stray = [k for k in _VALUE_KEYS if k in raw]
        if stray:
            raise RuleFileError(f"{where} key '{stray[0]}': a rule with cases keeps its values in each case")
    if "cases" in raw:
        cases = tuple(_build_case(c, raw, c["label"], where, f"cases[{i}].") for i, c in enumerate(raw["cases"]))
    else:
        cases = (_build_case({k: raw[k] for k in _CASE_KEYS if k in raw}, raw, raw["summary"], where, ""),)
    with _at(where, "when"):
        when = cond.parse(raw.get("when"))
    parsed: dict[str, fml.Formula | None] = {}
    for key in ("fail", "fix", "detect"):
        with _at(where, key):
            parsed[key] = fml.parse(raw[key]) if key in raw else None
    fix_also = []
    for name, text in raw.get("fix_also", {}).items():
        with _at(where, f"fix_also.{name}"):
            fix_also.append((name, fml.parse(text)))
    with _at(where, "mark.at"):
        mark = (raw["mark"]["series"], fml.parse(raw["mark"]["at"])) if "mark" in raw else None
    templates = []
    for key in ("message", "expected", "evidence"):
        for text in TEMPLATE.findall(raw.get(key, "")):
            with _at(where, key):
                templates.append(fml.parse(text))
    detect = parsed["detect"]
    series_needs = tuple((str(n["series"]), int(n["min"])) for n in raw.get("needs", ()))
    for i, (series, _) in enumerate(series_needs):
        if detect is None or f"log.{series}" not in detect.names:
            raise RuleFileError(f"{where} key 'needs[{i}].series': {series!r} is not a series the detect formula "
                                f"reads", hint="name a log.<series> that `detect` uses")
    for i, case in enumerate(cases if raw["kind"] not in ("check", "signal") else ()):
        key = f"cases[{i}]" if "cases" in raw else "(rule)"
        if not case.confidence:
            raise RuleFileError(f"{where} key '{key}.confidence': no confidence on the case or the rule")
        needs = {
            "recommend": ("default", "formula"),
            "derive": ("default", "formula"),
            "adjust": ("factor",),
            "constrain": ("max", "min"),
        }[raw["kind"]]
        if not any(getattr(case, n) is not None for n in needs):
            raise RuleFileError(f"{where} key '{key}': {raw['kind']} rules need one of {', '.join(needs)}")
    return Rule(
        id=rid,
        code=raw["code"],
        kind=raw["kind"],
        parameter=raw["parameter"],
        stage=raw.get("stage", DEFAULT_STAGE[raw["kind"]]),
        summary=raw["summary"],
        why=" ".join(str(raw.get("why", "")).split()),
        sources=_sources(raw["source"]),
        notes=tuple({**n, "text": " ".join(str(n["text"]).split())} for n in raw.get("notes", ())),
        confidence=raw.get("confidence", ""),
        when=when,
        overrides=tuple(raw.get("overrides", ())),
        cases=cases,
        file=path,
        family=family,
        raw=raw,
        severity=raw.get("severity", ""),
        fail=parsed["fail"],
        message=raw.get("message", ""),
        expected=raw.get("expected", ""),
        fix=parsed["fix"],
        fix_also=tuple(fix_also),
        at=raw.get("at", ""),
        advice=" ".join(str(raw.get("advice", "")).split()),
        direction=str(raw.get("direction", "")),
        sign=" ".join(str(raw.get("sign", "")).split()),
        detect=detect,
        mark=mark,
        needs=series_needs,
        evidence=raw.get("evidence", ""),
        templates=tuple(templates),
        stated_on_grid=bool(raw.get("stated_on_grid", False)),
    )


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.exists():
        raise RuleFileError(f"{directory}: no such directory")
    if not directory.is_dir():
        raise RuleFileError(f"{directory}: not a directory", hint="--rules takes a directory of YAML rule files")
    # evidence/ holds published runs, read only by the commands that need them (advisor.evidence).
    return sorted(p for p in directory.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                  and p.relative_to(directory).parts[0] != EVIDENCE_DIR)


def _layer(book: Rulebook, directory: Path, *, builtin: bool = False) -> None:
    defined: dict[str, str] = {}  # coefficient id -> the file of this directory that defines it
    for path in _yaml_files(directory):
        # Reports name a built-in registry by its place in the package, not this machine's path.
        shown = f"built-in rules/{path.relative_to(directory).as_posix()}" if builtin else str(path)
        data, content = _read_yaml_bytes(path, trusted=builtin)
        kind = validate_document(path, data, content)
        if kind == "rules":
            seen: set[str] = set()
            for raw in data["rules"]:
                if raw["id"] in seen:
                    raise RuleFileError(f"{path}: rule {raw['id']!r} key 'id': defined twice in this file")
                seen.add(raw["id"])
                book.rules[raw["id"]] = _build_rule(raw, path, data["family"])
        elif kind == "memory":
            _layer_coefficients(book, data["memory"].get("coefficients", ()), path, shown, defined)
            _layer_memory(book, data["memory"], shown)
        elif kind == "coefficients":
            _layer_coefficients(book, data["coefficients"], path, shown, defined)
        elif kind in BUILTIN_REGISTRIES:
            if not builtin:
                raise RuleFileError(f"{path}: {kind} is a built-in registry: a new entry needs code in advisor",
                                    hint=f"add it to rules/registry/{kind}.yaml in a checkout (see the README's "
                                         "contributor section)")
        elif kind == "parameters":
            for raw in data["parameters"]:
                book.parameters[raw["name"]] = Parameter(**{**raw, "choices": tuple(raw.get("choices", ())),
                                                            "grid": tuple(raw.get("grid", {}).get("steps", ()))})
        else:
            target: dict[str, dict[str, Any]] = getattr(book, kind)
            for raw in data[kind]:
                target[raw["id"]] = {**raw, "_file": shown}
        for consumer, ids in data.get("requires", {}).items():
            declared = book.requires.setdefault(consumer, {})
            for i, cid in enumerate(ids):
                declared.setdefault(cid, (shown, i))
    book.directories.append(directory)


def _layer_coefficients(book: Rulebook, items: Iterable[dict[str, Any]], path: Path, shown: str,
                        defined: dict[str, str]) -> None:
    """One directory's coefficients: the same id replaces an earlier directory's and keeps its integer /
    range; two files of one directory (or one file twice) defining an id is an error, not a shadow."""
    for raw in items:
        cid = raw["id"]
        if cid in defined:
            where = "this file" if defined[cid] == shown else defined[cid]
            raise RuleFileError(f"{path}: coefficient {cid!r} key 'id': already defined in {where}",
                                hint="an id names one coefficient; a user directory replaces a built-in one by "
                                     "defining it once")
        defined[cid] = shown
        kept = {k: v for k, v in book.coefficients.get(cid, {}).items() if k in ("integer", "range")}
        raw = {**kept, **raw}
        _check_coefficient(path, raw)
        book.coefficients[cid] = {**raw, "_file": shown}


@cache
def _constant(text: str) -> float:
    """A coefficient's formula value: plain arithmetic, no facts (checked when the file loads)."""
    value: float = fml.parse(text).evaluate(_no_fact)
    return value


def _no_fact(name: str) -> Any:
    raise FormulaError(f"a coefficient's formula reads no names, found {name!r}")


def _check_coefficient(path: Path, raw: dict[str, Any]) -> None:
    """A coefficient's value is a number or arithmetic that gives one; it must be whole when it counts
    something and inside its declared range."""
    value, where = raw["value"], f"{path}: coefficient {raw['id']!r} key 'value'"
    if isinstance(value, str):
        try:
            names = fml.parse(value).names
            if names:
                raise FormulaError(f"formula {value!r} reads {', '.join(sorted(names))}: a coefficient is a number "
                                   "or plain arithmetic")
            value = _constant(value)
        except FormulaError as exc:
            raise RuleFileError(f"{where}: {exc}") from exc
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RuleFileError(f"{where}: {raw['value']!r} gives {value!r}, not a number")
    if raw.get("integer") and value != int(value):
        raise RuleFileError(f"{where}: {value!r} must be a whole number")
    if "range" in raw:
        lo, hi = raw["range"]
        if not lo <= value <= hi:
            raise RuleFileError(f"{where}: {value!r} is outside its range [{lo:g}, {hi:g}]")
    if "per" in raw.get("fit", {}):
        if not raw["fit"]["kind"].startswith("span"):
            raise RuleFileError(f"{path}: coefficient {raw['id']!r} key 'fit.per': only a span is stated per a formula",
                                hint="remove per:, or make the kind span-min / span-max")
        try:
            fml.parse(raw["fit"]["per"])
        except FormulaError as exc:
            raise RuleFileError(f"{path}: coefficient {raw['id']!r} key 'fit.per': {exc}") from exc


def _layer_memory(book: Rulebook, data: dict[str, Any], shown: str) -> None:
    """Architectures replace by id; cross_check as a whole (coefficients are layered with every other
    file's; optimizers are rules/registry/optimizers.yaml's)."""
    mem = book.memory
    table: dict[str, dict[str, Any]] = mem.setdefault("architectures", {})
    for raw in data.get("architectures", ()):
        table[raw["id"]] = {**raw, "_file": shown}
    if "cross_check" in data:
        mem["cross_check"] = {**data["cross_check"], "_file": shown}
    if "fit_to_gpu" in data:
        for before, after in data["fit_to_gpu"]["peft"].items():
            if before == after:  # the schema holds the words; a change to itself would change nothing
                raise RuleFileError(f"{shown}: memory.fit_to_gpu key 'peft': {before} -> {after} changes nothing",
                                    hint="name another adapter, or remove the entry")
        mem["fit_to_gpu"] = {**data["fit_to_gpu"], "_file": shown}


# --- whole-book checks -------------------------------------------------------------------

def _check_references(book: Rulebook) -> None:
    codes: dict[str, str] = {}
    for rule in book.rules.values():
        where = f"{rule.file}: rule {rule.id!r}"
        if rule.code in codes and codes[rule.code] != rule.id:
            raise RuleFileError(f"{where} key 'code': {rule.code} is already used by rule {codes[rule.code]!r}")
        codes[rule.code] = rule.id
        if rule.parameter not in book.parameters:
            raise RuleFileError(
                f"{where} key 'parameter': unknown parameter {rule.parameter!r}",
                hint="parameters are declared in rules/parameters.yaml",
            )
        for also, _ in rule.fix_also:
            if also not in book.parameters:
                raise RuleFileError(f"{where} key 'fix_also.{also}': unknown parameter {also!r}",
                                    hint="parameters are declared in rules/parameters.yaml")
        _check_names(book, rule.reads(), f"{where} key 'when/formula'")
        for target in rule.overrides:
            if target not in book.rules:
                raise RuleFileError(f"{where} key 'overrides': no rule {target!r}")
    for cid, raw in book.coefficients.items():
        if "per" in raw.get("fit", {}):
            _check_names(book, fml.parse(raw["fit"]["per"]).names, f"{raw['_file']}: coefficient {cid!r} key 'fit.per'")


def _check_names(book: Rulebook, names: Iterable[str], where: str) -> None:
    """Every name a formula reads is a defined coefficient, a parameter or a known fact."""
    for name in sorted(names):
        ns, _, attr = name.partition(".")
        if ns == fml.COEF:
            if fml.coefficient_id(name) not in book.coefficients:
                raise RuleFileError(f"{where}: {name} names no coefficient {fml.coefficient_id(name)!r}",
                                    hint="coefficients are declared in a rules file's `coefficients:` list")
            continue
        known = book.parameters if ns in fml.PARAM_NAMESPACES else NAMESPACES.get(ns, {})
        if attr not in known:
            raise RuleFileError(f"{where}: unknown fact {name!r}", hint=f"known {ns} facts: {', '.join(sorted(known))}")


# What a condition on a parameter (params.*, config.*, ...) compares: its declared type's kind.
_PARAMETER_KINDS = {"int": NUMBER, "float": NUMBER, "bool": FLAG, "list_str": LIST, "list_float": LIST}


def _kind(book: Rulebook, name: str) -> str:
    ns, _, attr = name.partition(".")
    if ns in fml.PARAM_NAMESPACES:
        return _PARAMETER_KINDS.get(book.parameters[attr].type, WORD) if attr in book.parameters else WORD
    return fact_kind(name)


def _check_conditions(book: Rulebook) -> None:
    """Every condition's value is of its fact's kind (a word is not ordered, a number never equals a word)."""
    for rule in book.rules.values():
        where = f"{rule.file}: rule {rule.id!r}"
        with _at(where, "when"):
            cond.check_kinds(rule.when, lambda name: _kind(book, name))
        for i, case in enumerate(rule.cases):
            with _at(where, f"{_case_key(rule, i)}when"):
                cond.check_kinds(case.when, lambda name: _kind(book, name))


def _case_key(rule: Rule, i: int) -> str:
    """How a case's keys are named in an error: ``cases[1].`` in a table, nothing for a rule without one."""
    return f"cases[{i}]." if "cases" in rule.raw else ""


def _check_values(book: Rulebook) -> None:
    """A rule's literal values (a default, a bound, a range's ends, a formula of constants) are of its
    parameter's declared type and inside its bounds, and a literal range runs from low to high: the
    engine would refuse such a value only when the rule runs, and an exporter only after it is printed."""
    from advisor.rulebook.resolve import coerce  # deferred: resolve imports this module

    for rule in book.rules.values():
        param = book.parameters.get(rule.parameter)
        if param is None or rule.kind not in ("recommend", "derive", "constrain"):
            continue  # an adjust rule's factor and a check's formulas are not values of the parameter
        where = f"{rule.file}: rule {rule.id!r}"
        declared = (f"rules/parameters.yaml declares {param.name} {param.type}"
                    + (f", one of {', '.join(param.choices)}" if param.choices else "")
                    + (f", from {param.minimum:g}" if param.type in ("int", "float") else "")
                    + (f" to {param.maximum:g}" if param.maximum is not None else ""))
        for i, case in enumerate(rule.cases):
            prefix = _case_key(rule, i)
            values: list[tuple[str, Any]] = [(f"{prefix}default", case.default), (f"{prefix}min", case.min),
                                             (f"{prefix}max", case.max)]
            if case.range is not None:
                values += [(f"{prefix}range[0]", case.range[0]), (f"{prefix}range[1]", case.range[1])]
            if case.formula is not None and not case.formula.names:
                with _at(where, f"{prefix}formula"):
                    values.append((f"{prefix}formula", case.formula.evaluate(_no_fact)))
            # choices given once on a rule with cases stand in every case, under the rule's own key
            own = prefix if prefix and "choices" in rule.raw["cases"][i] else ""
            values += [(f"{own}choices[{j}]", choice) for j, choice in enumerate(case.choices or ())]
            for key, value in values:
                if value is None or isinstance(value, fml.Formula):
                    continue
                at = f"{where} key '{key}'"
                try:
                    typed = coerce(param, value, at)
                except AdvisorError as exc:
                    raise RuleFileError(exc.message, hint=exc.hint or declared) from exc
                problem = param.problem(typed)
                if problem is not None:
                    raise RuleFileError(f"{at}: {problem} (parameter {param.name!r})", hint=declared)
            lo, hi = case.range or (None, None)
            if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) and lo > hi:
                raise RuleFileError(f"{where} key '{prefix}range': [{lo:g}, {hi:g}] runs from high to low",
                                    hint="a range is [low, high]")


def _overrides(book: Rulebook, a: Rule, b: Rule) -> bool:
    """True when a overrides b, directly or through a chain."""
    seen: set[str] = set()
    stack = list(a.overrides)
    while stack:
        rid = stack.pop()
        if rid == b.id:
            return True
        if rid not in seen and rid in book.rules:
            seen.add(rid)
            stack.extend(book.rules[rid].overrides)
    return False


def find_conflicts(book: Rulebook) -> list[tuple[Rule, Rule]]:
    """Pairs of rules that could set the same parameter in the same stage with no precedence."""
    out: list[tuple[Rule, Rule]] = []
    by_slot: dict[tuple[str, str], list[Rule]] = {}
    for rule in book.rules.values():
        if rule.stage in SETTING_STAGES:
            by_slot.setdefault((rule.parameter, rule.stage), []).append(rule)
    for rules in by_slot.values():
        for i, a in enumerate(rules):
            for b in rules[i + 1:]:
                if _overrides(book, a, b) or _overrides(book, b, a):
                    continue
                if not cond.disjoint(a.when, b.when):
                    out.append((a, b))
    return out


def find_cycles(book: Rulebook) -> list[list[str]]:
    """Parameters whose rules read each other in a loop (params.* and baseline.* reads)."""
    graph: dict[str, set[str]] = {p: set() for p in book.parameters}
    for rule in book.rules.values():
        if rule.kind in ("check", "signal"):
            continue  # checks and signals read parameters but set none
        for name in rule.reads():
            ns, _, attr = name.partition(".")
            if ns in ("params", "baseline") and attr != rule.parameter:
                graph[rule.parameter].add(attr)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt):], nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for p in sorted(graph):
        if p not in state:
            visit(p, [p])
    return cycles


def _check_requires(book: Rulebook) -> None:
    """Every coefficient a consumer's `requires:` names is defined (a user directory can replace one, not
    drop it, so a miss is a misspelt id)."""
    for consumer, ids in book.requires.items():
        for cid, (shown, i) in ids.items():
            if cid not in book.coefficients:
                close = closest(cid, book.coefficients, n=3)
                raise RuleFileError(f"{shown}: consumer {consumer!r} key 'requires.{consumer}[{i}]': no coefficient "
                                    f"{cid!r}", hint=f"did you mean {', '.join(close)}?" if close
                                    else "coefficients are declared in a rules file's `coefficients:` list")


def _check_coefficient_ids(book: Rulebook) -> None:
    """A coefficient id that is also a rule's id or code would leave `advisor rules show ID` one of the two."""
    names = {key for rule in book.rules.values() for key in (rule.id, rule.code.lower())}
    for cid, raw in book.coefficients.items():
        if cid in names:
            raise RuleFileError(f"{raw['_file']}: coefficient {cid!r} key 'id': a rule has the same id or code",
                                hint="`advisor rules show` takes either; give one of them another id")


def _check_memory(book: Rulebook) -> None:
    """Every formula of rules/memory.yaml parses (their names are checked when the model runs), and every
    coefficient and rule its tables name exists."""
    mem = book.memory
    for oid, raw in book.optimizers.items():
        for key in ("states", "step"):
            if raw.get(key) and raw[key] not in book.coefficients:
                raise RuleFileError(f"{raw.get('_file', 'rules/registry/optimizers.yaml')}: optimizer {oid!r} "
                                    f"key {key!r}: unknown coefficient {raw[key]!r}")
    cross = mem.get("cross_check")
    if cross and cross["rule"] not in book.rules:
        raise RuleFileError(f"memory model: cross_check names unknown rule {cross['rule']!r}")
    formulas: list[tuple[str, str, Any]] = []
    for aid, raw in mem.get("architectures", {}).items():
        logits = raw.get("logits")
        if logits is not None and logits not in book.coefficients:
            raise RuleFileError(f"{raw['_file']}: architecture {aid!r} key 'logits': unknown coefficient {logits!r}")
        if "norms" in raw:  # absent for `layers: family` (the family's own description has them)
            formulas.append((f"{raw['_file']}: architecture {aid!r}", "norms", raw["norms"]))
        if "final_norm" in raw:
            formulas.append((f"{raw['_file']}: architecture {aid!r}", "final_norm", raw["final_norm"]))
        for i, module in enumerate(raw.get("modules", ())):
            for key in ("in", "out", "count"):
                if key in module:
                    formulas.append((f"{raw['_file']}: architecture {aid!r}", f"modules[{i}].{key}", module[key]))
    for where, key, value in formulas:
        if isinstance(value, str):
            try:
                fml.parse(value)
            except FormulaError as exc:
                raise RuleFileError(f"{where} key '{key}': {exc}") from exc


def check_book(book: Rulebook) -> None:
    _check_references(book)
    _check_conditions(book)
    _check_values(book)
    _check_requires(book)
    _check_coefficient_ids(book)
    _check_memory(book)
    conflicts = find_conflicts(book)
    if conflicts:
        a, b = conflicts[0]
        raise RuleFileError(
            f"{b.file}: rule {b.id!r} key 'when': conflicts with rule {a.id!r} ({a.file.name}): both can set "
            f"{a.parameter!r} in stage {a.stage!r}",
            hint="make their conditions disjoint, or add 'overrides: [id]' to the one that should win",
        )
    cycles = find_cycles(book)
    if cycles:
        raise RuleFileError(f"rules read each other in a loop: {' -> '.join(cycles[0])}")


def load_rulebook(extra_dirs: Iterable[Path] = (), *, builtin: bool = True) -> Rulebook:
    """The built-in rulebook with each extra directory layered over it, checked as a whole; from the
    user cache when no rule file, schema or advisor module it is built from changed (rulebook/cache.py)."""
    from advisor.rulebook.cache import cached_rulebook

    extras = [Path(d) for d in extra_dirs]
    directories = [rules_dir(), *extras] if builtin else extras
    return cached_rulebook(directories, [_yaml_files(d) for d in directories], builtin,
                           lambda: build_rulebook(extras, builtin=builtin))


def build_rulebook(extra_dirs: Iterable[Path] = (), *, builtin: bool = True) -> Rulebook:
    """load_rulebook without the cache: read, validate, build and check every file."""
    book = Rulebook()
    if builtin:
        _layer(book, rules_dir(), builtin=True)
    for directory in extra_dirs:
        _layer(book, Path(directory))
    check_book(book)
    return book

"""The registries: the methods, optimizers and trainer formats advisor knows, as data.

rules/registry/methods.yaml, optimizers.yaml, formats.yaml, sharding.yaml and flags.yaml
(schemas/<name>.schema.json) say what each method feeds the GPU, what each optimizer costs, how each
config format is recognised and read, which training-state items each sharding strategy divides
over the GPUs, and the range each numeric flag takes. Code asks these flags
(``method("dpo").sequences_per_example``) instead of naming ids, so a new method, optimizer or format is
one entry here (and, for a format, its reader).

A leaf module: it imports nothing of advisor's beyond errors and paths, so facts, configs, memory
and probe can all read it. Each file is parsed once per process, when first asked (libyaml: about a
millisecond each); the rulebook loader checks them against their schemas with every other rules file,
and a user rules directory may add or replace optimizers (advisor.rulebook.load), not methods or
formats, which need code.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from advisor.errors import FactError, RuleFileError
from advisor.paths import cache_dir, rules_dir, write_cache
from advisor.safeio import at_path, finite

REGISTRY_DIR = "registry"  # the folder of rules/ that holds the registries


@dataclass(frozen=True)
class Method:
    id: str
    name: str
    summary: str
    sequences_per_example: int
    generates: bool  # completions are sampled inside the training step (on-policy RL)
    reference_model: bool
    source: str
    completion_cap: bool = False  # max_seq_length is written as the completion cap; prompts come on top
    sequences: str = ""  # what the sequences of one example are, e.g. "chosen + rejected"
    value_model: bool = False
    facts: tuple[str, ...] = ()  # task facts that mean something only for this method
    aliases: tuple[str, ...] = ()  # loss names the probe takes as this method (same batch shape)
    aliases_called: str = ""  # what hints call them, e.g. "pair methods"
    aliases_train_on: str = ""  # what they train on, e.g. "chosen / rejected pairs"
    probe_note: str = ""
    trl_trainer: str = ""
    trl_config: str = ""
    trl_model: str = ""  # the transformers auto class the trainer takes; "": AutoModelForCausalLM
    trl_model_kwargs: Mapping[str, Any] = field(default_factory=dict)  # what that class is built with
    peft_task: str = "CAUSAL_LM"  # peft's task_type for the method's adapter
    head: str = ""  # "score": a reward model's scalar head in place of lm_head; "": the language-modelling head
    reference_off: tuple[str, float] | None = None  # (parameter, value) at which the trainer loads no reference model

    def loads_reference(self, params: Mapping[str, Any]) -> bool:
        """Whether a job with these resolved ``params`` has a reference model (GRPO at beta 0 has none)."""
        if not self.reference_model:
            return False
        if self.reference_off is None:
            return True
        name, value = self.reference_off
        given = params.get(name)
        return not (isinstance(given, (int, float)) and not isinstance(given, bool) and given == value)


@dataclass(frozen=True)
class Optimizer:
    id: str
    source: str
    implementation: str | None = None  # what the probe builds; None: the probe refuses it
    states: str | None = None  # memory coefficient id of state bytes per parameter; None: AdamW's
    step: str | None = None  # memory coefficient id of optimizer.step()'s extra buffer
    paged: bool = False
    eight_bit: bool = False
    param_dtype_states: bool = False
    lr_rules: str | None = None  # the LR rules that judge it (adamw); None: the LR is not judged

    @classmethod
    def from_raw(cls, raw: Mapping[str, Any]) -> Optimizer:
        return cls(**{k: v for k, v in raw.items() if not k.startswith("_")})


@dataclass(frozen=True)
class Inference:
    """One guess of a format's method from its keys: the file has one of ``keys`` or its loss is one of
    ``loss_types``."""

    method: str
    keys: tuple[str, ...] = ()
    loss_types: tuple[str, ...] = ()
    variant: str | None = None  # the loss variant these keys mean (KTOConfig's desirable_weight: kto)
    every: tuple[str, str, tuple[str, ...]] | None = None  # (list key, item key, values): every item matches
    equals: Mapping[str, Any] = field(default_factory=dict)  # the file sets each key to its value

    def matches_items(self, data: Mapping[str, Any]) -> bool:
        """Every item of the file's ``every`` list has its key among the values, or the file sets every key of
        ``equals`` to its value (False: neither is given)."""
        if self.equals:
            return all(k in data and data[k] == v for k, v in self.equals.items())
        if self.every is None:
            return False
        key, field_, values = self.every
        items = data.get(key)
        return (isinstance(items, list) and bool(items)
                and all(isinstance(i, Mapping) and str(i.get(field_, "")).lower() in values for i in items))


@dataclass(frozen=True)
class MethodMapping:
    default: str
    key: str | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    from_loss: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    infer: tuple[Inference, ...] = ()

    def named(self, word: str) -> str:
        """The rulebook's method for the trainer's word (lower-cased; an unknown word stays itself)."""
        word = word.lower()
        return self.aliases.get(word, word)


@dataclass(frozen=True)
class Translation:
    """A parameter a trainer writes under another key or value (rules/registry/formats.yaml `translate`), or
    a key it needs beside the parameter's own for the value to take effect (`with`: fp16 where bf16 is
    false, eval_strategy beside eval_steps)."""

    parameter: str
    key: str | None  # None: the value is expressed by leaving the key out
    equals: Any = None  # only this value of the parameter (None: any value)
    value: Any = None  # the value written (None: the parameter's own)
    has_equals: bool = False
    has_value: bool = False
    why: str = ""  # how a value left out is expressed (a note in the written file)
    methods: tuple[str, ...] = ()  # only for these methods; (): every method
    warn: bool = False  # key None: the trainer cannot express the value (a warning, not a note)

    def applies(self, value: Any, method: str | None = None) -> bool:
        return ((not self.has_equals or value == self.equals)
                and (not self.methods or method is None or method in self.methods))


@dataclass(frozen=True)
class Placeholder:
    key: str
    value: Any
    why: str
    methods: tuple[str, ...] = ()  # only for these methods; (): every method
    with_parameter: str | None = None  # only when the recommendation has this parameter

    def applies(self, method: str, parameters: Collection[str] = ()) -> bool:
        return ((not self.methods or method in self.methods)
                and (self.with_parameter is None or self.with_parameter in parameters))


@dataclass(frozen=True)
class Writer:
    """How `recommend --format <trainer>` writes that trainer's config (a format's `write` entry)."""

    fields: str  # rules/registry/fields/<fields>.json
    model: str
    peft_key: str
    peft_values: Mapping[str, Any]
    method_key: str | None = None
    method_omit: tuple[str, ...] = ()
    method_values: Mapping[str, str] = field(default_factory=dict)
    method_flags: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # method -> keys naming it instead
    fixed: Mapping[str, Any] = field(default_factory=dict)
    translate: tuple[Translation, ...] = ()
    placeholders: tuple[Placeholder, ...] = ()
    unsupported: Mapping[str, str] = field(default_factory=dict)  # parameter -> why the trainer cannot take it
    companions: tuple[Translation, ...] = ()  # formats.yaml `with`: keys written beside a parameter's own
    commands: Mapping[str, str] = field(default_factory=dict)  # TRL: config class -> the `trl` command that trains it
    loss_choices: Mapping[str, str] = field(default_factory=dict)  # method -> "fields:ConfigClass" its loss word goes to
    # method -> (the key its loss word is written under, whether that key holds a list): Axolotl's DPO reads the
    # list dpo_loss_type, its GRPO trl.loss_type (formats.yaml `loss_keys`)
    loss_keys: Mapping[str, tuple[str, bool]] = field(default_factory=dict)

    def listed(self) -> frozenset[str]:
        """The loss keys that hold a list of loss words (a reader reads the first)."""
        return frozenset(key for key, is_list in self.loss_keys.values() if is_list)


@dataclass(frozen=True)
class Fields:
    """The config keys a trainer accepts at a pinned release (rules/registry/fields/<trainer>.json)."""

    trainer: str
    name: str  # as people write it: "Axolotl", "TRL"
    version: str
    source: str
    keys: frozenset[str] = frozenset()  # one flat list (Axolotl, LLaMA-Factory; nested keys dotted)
    classes: Mapping[str, frozenset[str]] = field(default_factory=dict)  # per config class (TRL)
    choices: Mapping[str, Any] = field(default_factory=dict)  # key -> values (TRL: class -> key -> values)
    mappings: frozenset[str] = frozenset()  # keys holding a free-form mapping: any sub-key goes
    parses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # TRL: command -> the classes it parses
    launch: frozenset[str] = frozenset()  # TRL: keys `trl <command>` hands to accelerate launch (or itself)

    def takes(self, key: str, accepted: frozenset[str]) -> bool:
        """Whether ``key`` (dotted for a nested one) is one of ``accepted`` or a sub-key of a free-form
        mapping among them (lr_scheduler_kwargs.min_lr_rate)."""
        parent = key.split(".", 1)[0]
        return key in accepted or (parent != key and parent in accepted and parent in self.mappings)


@dataclass(frozen=True)
class Evaluation:
    """How a trainer decides for itself whether a run evaluates (a format's `evaluation`): Axolotl evaluates
    only with an eval set, and then every eval_steps whatever its eval_strategy key says."""

    eval_set: tuple[str, ...] = ()  # keys that give the run an eval set (any set to a non-empty, non-zero value)
    steps: tuple[str, ...] = ()  # with an eval set, any of these set: eval_strategy steps
    per_epoch: str | None = None  # evaluations per epoch, turned into steps when more than one falls in the run
    epochs_default: float | None = None  # the epochs per_epoch is counted over when the config states none

    def strategy(self, data: Mapping[str, Any], stated: str | None, epochs: float | None) -> str | None:
        """The eval_strategy the trainer runs with, given the file's keys, its own eval_strategy and epochs;
        None where that is the trainer's default for an omitted key."""
        if not any(data.get(k) for k in self.eval_set):
            return "no"
        if any(data.get(k) for k in self.steps):
            return "steps"
        per = finite(data.get(self.per_epoch)) if self.per_epoch else None
        over = self.epochs_default if epochs is None else epochs
        # Axolotl's eval_steps = 1 / (per_epoch x epochs), kept only below 1: the product above 1 (no division by 0)
        if per is not None and over is not None and per * over > 1:
            return "steps"
        return stated


@dataclass(frozen=True)
class Quoted:
    """How the trainer reads a scalar written as text (a format's `quoted`): each level's patterns, in order,
    name the type a matching text becomes; text no pattern matches stays a str."""

    top: tuple[tuple[re.Pattern[str], str], ...] = ()
    nested: tuple[tuple[re.Pattern[str], str], ...] = ()  # inside a mapping under a top-level key
    # top-level text converted by the field's own type (TrlParser's argparse): the text each type's parser takes
    by_type: tuple[tuple[str, re.Pattern[str]], ...] = ()
    field_types: tuple[tuple[str, str], ...] = ()  # trainer keys whose field type is not the parameter's

    def field_type(self, key: str, kind: str) -> str:
        """The type the trainer's own field for ``key`` parses text as (the parameter's ``kind`` unless stated)."""
        return dict(self.field_types).get(key, kind)

    def reads(self, text: str, nested: bool) -> str | None:
        """The type ('bool', 'int', 'float') the trainer turns ``text`` into; None: it keeps a str."""
        return next((kind for pattern, kind in (self.nested if nested else self.top) if pattern.fullmatch(text)), None)

    def converted(self, text: str, kind: str) -> tuple[bool, Any] | None:
        """What the parser of a ``kind`` field makes of ``text``: (True, the text, or the bool it spells) or
        (False, None) when it refuses it (the trainer stops); None: the format does not convert by type."""
        patterns = dict(self.by_type)
        if kind == "bool" and "true" in patterns:
            for word in ("true", "false"):
                if patterns[word].fullmatch(text):
                    return True, word == "true"
            return False, None
        pattern = patterns.get(kind)
        if pattern is None:
            return None
        return (True, text) if pattern.fullmatch(text) else (False, None)


def _quoted(fid: str, raw: dict[str, Any] | None) -> Quoted | None:
    if raw is None:
        return None
    levels: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {}
    by_type: list[tuple[str, re.Pattern[str]]] = []
    try:
        for level in ("top", "nested"):
            levels[level] = tuple((re.compile(r["match"]), r["as"]) for r in raw.get(level, ()))
        level = "by_type"
        by_type = [(kind, re.compile(pattern)) for kind, pattern in (raw.get("by_type") or {}).items()]
    except re.error as exc:
        raise RuleFileError(f"built-in rules/{REGISTRY_DIR}/formats.yaml: format {fid!r} key 'quoted.{level}': "
                            f"match is no regular expression: {exc}") from exc
    return Quoted(**levels, by_type=tuple(by_type), field_types=tuple((raw.get("field_types") or {}).items()))


@dataclass(frozen=True)
class Refusal:
    """A key set the trainer refuses before training starts (a format's `refuses`): Axolotl needs two of
    micro_batch_size, gradient_accumulation_steps and batch_size, and never the last two together."""

    keys: tuple[str, ...]
    message: str
    expected: str
    at_least: int | None = None
    at_most: int | None = None
    same_length: bool = False  # the keys' lists, where all are set, must be as long as each other
    unless: tuple[str, ...] = ()  # no refusal while one of these keys is set
    when: tuple[str, tuple[str, ...]] | None = None  # only while this key holds one of these words (rl: dpo)
    when_not: tuple[str, tuple[str, ...]] | None = None  # only while it holds none of them
    # how the trainer's own check counts a key as set: "truthy", a value that is not empty, zero or false
    # (Axolotl's batch checks: data.get(field)); "present", any value but null (check_dpo: `is not None`)
    counted: str = "truthy"
    non_empty: bool = False  # refused when one of the keys holds an empty list (a schema's MinLen(1))

    def _set(self, data: Mapping[str, Any], key: str) -> bool:
        return data.get(key) is not None if self.counted == "present" else bool(data.get(key))

    def named(self, data: Mapping[str, Any]) -> str:
        """The key a refusal of ``data`` is reported at: the empty list, else the first key set, else the first."""
        found = (k for k in self.keys if (data.get(k) == [] if self.non_empty else self._set(data, k)))
        return next(found, self.keys[0])

    def refused(self, data: Mapping[str, Any]) -> bool:
        if not _holds(data, self.when) or (self.when_not is not None and _holds(data, self.when_not)):
            return False
        if any(self._set(data, k) for k in self.unless):
            return False
        if self.non_empty:
            return any(data.get(k) == [] for k in self.keys)
        if self.same_length:
            lists = [v for v in (data.get(k) for k in self.keys) if isinstance(v, list)]
            return len(lists) == len(self.keys) and len({len(v) for v in lists}) > 1
        given = sum(1 for k in self.keys if self._set(data, k))
        return (self.at_least is not None and given < self.at_least) or (self.at_most is not None
                                                                          and given > self.at_most)


def _words_when(raw: Mapping[str, Any] | None) -> tuple[str, tuple[str, ...]] | None:
    """A `when` / `when_not` condition: the key and the (lowercase) words it is checked against."""
    return None if raw is None else (str(raw["key"]), tuple(str(v).lower() for v in raw["values"]))


def _holds(data: Mapping[str, Any], when: tuple[str, tuple[str, ...]] | None) -> bool:
    """Whether the key of a `when` holds one of its words (no condition always holds)."""
    return when is None or str(data.get(when[0])).lower() in when[1]


@dataclass(frozen=True)
class Unheeded:
    """A key the trainer takes but does not act on as written while none of ``unless`` is set (a format's
    `unheeded`): Axolotl's batch_size sets no accumulation, its schema's gradient_accumulation_steps 1 does."""

    key: str  # dotted: nested (Axolotl's trl.loss_type)
    message: str
    expected: str
    unless: tuple[str, ...] = ()
    when: tuple[str, tuple[str, ...]] | None = None  # only while this key holds one of these words (rl: dpo)

    def applies(self, data: Mapping[str, Any]) -> bool:
        # set counts as the trainer's own checks count it: a value that is not empty or zero
        if not _holds(data, self.when):
            return False
        return bool(at_path(data, self.key)) and not any(data.get(k) for k in self.unless)


@dataclass(frozen=True)
class Format:
    id: str
    name: str
    summary: str
    lists: str  # how --fix writes a list: yaml | comma
    files: tuple[str, ...]
    trainer_keys: str | None = None  # its key table in rules/parameters.yaml trainer_keys
    marks: tuple[str, ...] = ()
    shape: str | None = None
    all_keys: tuple[str, ...] = ()
    signature: tuple[str, ...] = ()
    fallback: bool = False
    keys: tuple[str, ...] = ()
    model_keys: tuple[str, ...] = ()  # the keys its reader takes the model from, first set first (none: it records none)
    parameters_under: str | None = None  # the parameters sit under this key by their rulebook names
    method: MethodMapping | None = None
    write: Writer | None = None  # None: recommend cannot write this format
    # parameter -> what the trainer trains with when the config omits its key (formats.yaml `defaults`):
    # (value, the loss variants it holds for (empty: all), (parameter, factor) it is a multiple of, or None)
    defaults: dict[str, tuple[Any, tuple[str, ...], tuple[str, float] | None]] = field(default_factory=dict)
    evaluation: Evaluation | None = None  # None: the config's eval_strategy (or the default) is what runs
    refuses: tuple[Refusal, ...] = ()
    unheeded: tuple[Unheeded, ...] = ()
    # a plugin block (LLaMA-Factory v1's peft_config) -> plugin name -> the keys that plugin takes (`plugins`)
    plugins: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    quoted: Quoted | None = None  # None: a number or switch written as text is read as its parameter's type
    retired: Mapping[str, Retired] = field(default_factory=dict)  # key -> what replaced it (TRL's renamed keys)
    extra_keys_stop: str | None = None  # what the trainer does on a key its classes lack, where it refuses one

    def defaults_for(self, variant: str, stated: Mapping[str, Any]) -> dict[str, Any]:
        """What the trainer trains with for each key a config of loss ``variant`` (a method's own variant has
        its id) leaves out of ``stated`` (LLaMA-Factory's lora_alpha: 2 x the lora_rank the config states, or
        2 x its default rank)."""
        plain = {n: v for n, (v, variants, _) in self.defaults.items() if not variants or variant in variants}
        out: dict[str, Any] = {}
        for name, (value, variants, times) in self.defaults.items():
            if name in stated or (variants and variant not in variants):
                continue
            if times is not None:
                base = stated.get(times[0], plain.get(times[0]))
                value = None if base is None else type(base)(base * times[1])
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True)
class Retired:
    """A key an earlier release of the trainer took and the pinned one does not (a format's `retired`)."""

    key: str
    now: str | None = None  # the key that took its place
    how: str | None = None  # what to write instead, or what the pinned release does without it

    def instead(self) -> str:
        """What replaced the key, as a clause: "dtype replaced it", "warmup_steps replaced it (a value ...)"."""
        if self.now is None:
            return str(self.how)
        return f"'{self.now}' replaced it" + (f" ({self.how})" if self.how else "")


@dataclass(frozen=True)
class NotConfig:
    """A kind of file that sits beside training configs and is not one (formats.yaml `not_configs`)."""

    id: str
    name: str
    hint: str
    source: str
    marks: tuple[str, ...] = ()  # any of these keys set (dotted: nested) claims the file
    all: tuple[str, ...] = ()  # all of these top-level keys claim it
    only: tuple[str, ...] = ()  # its top-level keys are all among these
    unless: tuple[str, ...] = ()  # one of these set: a training config after all


@dataclass(frozen=True)
class Strategy:
    """A data-parallel sharding strategy (rules/registry/sharding.yaml)."""

    id: str
    name: str
    shards: tuple[str, ...]  # of optimizer_states, gradients, parameters
    names: tuple[str, ...]  # trainer / launch-config words for it
    offload: tuple[str, ...]  # the offload targets it accepts
    source: str
    gathers: bool = False  # parameters are all-gathered layer by layer
    hybrid: bool = False  # sharded within a node only
    offload_together: bool = False  # offload moves every target at once (FSDP CPUOffload)

    def divides(self, item: str) -> bool:
        return item in self.shards


@dataclass(frozen=True)
class Offload:
    id: str
    name: str
    requires: tuple[str, ...]  # the strategies that allow it
    source: str


@dataclass(frozen=True)
class Bundled:
    """A DeepSpeed config file a trainer ships (a config may name it without the file beside it)."""

    name: str
    strategy: str
    offload: tuple[str, ...]
    source: str

    @property
    def id(self) -> str:
        return self.name


def _parse(path: Path, text: bytes) -> Any:
    """The registry file's data: from the user cache by the bytes' hash (start-up imports no yaml),
    else parsed and cached (JSON: the registries are plain data)."""
    import hashlib
    import json

    base = cache_dir()
    cached = base / "registry" / f"{path.stem}-{hashlib.sha256(text).hexdigest()}.json" if base else None
    if cached is not None:
        try:
            return json.loads(cached.read_bytes())
        except (OSError, ValueError):
            pass  # absent or damaged: parse again
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise RuleFileError(f"built-in rules/{REGISTRY_DIR}/{path.name}: cannot be read: {exc}") from exc
    if cached is not None:
        write_cache(cached, json.dumps(data).encode("utf-8"))
    return data


def _load(name: str) -> tuple[Path, Any]:
    """rules/registry/<name>.yaml's data (formats.yaml: its entries, and the placeholder word beside them)."""
    path = rules_dir() / REGISTRY_DIR / f"{name}.yaml"
    try:
        return path, _parse(path, path.read_bytes())
    except OSError as exc:
        raise RuleFileError(f"built-in rules/{REGISTRY_DIR}/{name}.yaml: cannot be read: {exc}") from exc


def _read(name: str, under: str | None = None) -> tuple[Path, list[dict[str, Any]]]:
    """The entries of rules/registry/<name>.yaml: the list under ``name`` (or under ``name.under``)."""
    path, data = _load(name)
    entries = data.get(name) if isinstance(data, dict) else None
    if under is not None:
        entries = entries.get(under) if isinstance(entries, dict) else None
    if not isinstance(entries, list):
        where = name if under is None else f"{name}.{under}"
        raise RuleFileError(f"built-in rules/{REGISTRY_DIR}/{name}.yaml: expected a list under '{where}'")
    return path, entries


def _build(name: str, build: Any, under: str | None = None) -> dict[str, Any]:
    path, entries = _read(name, under)
    out: dict[str, Any] = {}
    for i, raw in enumerate(entries):
        try:
            item = build(raw)
        except (KeyError, TypeError, AttributeError) as exc:
            key = name if under is None else f"{name}.{under}"
            raise RuleFileError(f"built-in rules/{REGISTRY_DIR}/{path.name}: key '{key}[{i}]': {exc!r} is not "
                                f"a valid entry", hint=f"see schemas/{name}.schema.json") from exc
        out[item.id] = item
    return out


def _method(raw: dict[str, Any]) -> Method:
    trl = raw.get("trl") or {}
    aliases = raw.get("aliases") or {}
    plain = {k: v for k, v in raw.items() if k not in ("trl", "facts", "aliases", "reference_off")}
    off = raw.get("reference_off")
    plain["reference_off"] = (off["parameter"], float(off["equals"])) if off else None
    return Method(**plain, facts=tuple(raw.get("facts", ())), aliases=tuple(aliases.get("names", ())),
                  aliases_called=aliases.get("called", ""), aliases_train_on=aliases.get("train_on", ""),
                  trl_trainer=trl.get("trainer", ""), trl_config=trl.get("config", ""), trl_model=trl.get("model", ""),
                  trl_model_kwargs=dict(trl.get("model_kwargs", {})), peft_task=trl.get("peft_task", "CAUSAL_LM"))


def _translation(t: dict[str, Any]) -> Translation:
    return Translation(t["parameter"], t["key"], t.get("equals"), t.get("value"), "equals" in t, "value" in t,
                       t.get("why", ""), tuple(t.get("methods", ())), bool(t.get("warn", False)))


def _writer(raw: dict[str, Any] | None) -> Writer | None:
    if raw is None:
        return None
    method, peft = raw.get("method", {}), raw["peft"]
    return Writer(
        fields=raw["fields"], model=raw["model"], peft_key=peft["key"], peft_values=dict(peft["values"]),
        method_key=method.get("key"), method_omit=tuple(method.get("omit", ())),
        method_values=dict(method.get("values", {})), method_flags=dict(method.get("flags", {})),
        fixed=dict(raw.get("fixed", {})),
        translate=tuple(_translation(t) for t in raw.get("translate", ())),
        placeholders=tuple(Placeholder(p["key"], p["value"], p["why"], tuple(p.get("methods", ())),
                                       p.get("with_parameter")) for p in raw.get("placeholders", ())),
        unsupported=dict(raw.get("unsupported", {})),
        companions=tuple(_translation(c) for c in raw.get("with", ())),
        commands=dict(raw.get("commands", {})),
        loss_choices=dict(raw.get("loss_choices", {})),
        loss_keys={m: (k["key"], bool(k.get("list", False))) for m, k in raw.get("loss_keys", {}).items()})


def _format(raw: dict[str, Any]) -> Format:
    detect, mapping = raw["detect"], raw.get("method")
    method = None if mapping is None else MethodMapping(
        default=mapping["default"], key=mapping.get("key"), aliases=dict(mapping.get("aliases", {})),
        from_loss={m: tuple(v) for m, v in mapping.get("from_loss", {}).items()},
        infer=tuple(Inference(i["method"], tuple(i.get("keys", ())), tuple(i.get("loss_types", ())), i.get("variant"),
                              None if "every" not in i else
                              (i["every"]["list"], i["every"]["key"], tuple(i["every"]["values"])),
                              dict(i.get("equals", {})))
                    for i in mapping.get("infer", ())))
    return Format(id=raw["id"], name=raw["name"], summary=raw["summary"], lists=raw["lists"],
                  files=tuple(raw["files"]), trainer_keys=raw.get("trainer_keys"),
                  marks=tuple(detect.get("marks", ())), shape=detect.get("shape"),
                  all_keys=tuple(detect.get("all", ())), signature=tuple(detect.get("signature", ())),
                  fallback=bool(detect.get("fallback", False)), keys=tuple(raw.get("keys", ())),
                  model_keys=tuple(raw.get("model_keys", ())),
                  parameters_under=raw.get("parameters_under"), method=method, write=_writer(raw.get("write")),
                  defaults={name: (d.get("value"), tuple(d.get("variants", ())),
                                   (d["times"]["parameter"], float(d["times"]["factor"])) if "times" in d else None)
                            for name, d in raw.get("defaults", {}).items()},
                  evaluation=None if "evaluation" not in raw else Evaluation(
                      eval_set=tuple(raw["evaluation"].get("eval_set", ())),
                      steps=tuple(raw["evaluation"].get("steps", ())), per_epoch=raw["evaluation"].get("per_epoch"),
                      epochs_default=raw["evaluation"].get("epochs_default")),
                  refuses=tuple(Refusal(keys=tuple(r["keys"]), message=r["message"], expected=r["expected"],
                                        at_least=r.get("at_least"), at_most=r.get("at_most"),
                                        same_length=bool(r.get("same_length", False)), unless=tuple(r.get("unless", ())),
                                        counted=str(r.get("counted", "truthy")), non_empty=bool(r.get("non_empty", False)),
                                        when=_words_when(r.get("when")), when_not=_words_when(r.get("when_not")))
                                for r in raw.get("refuses", ())),
                  unheeded=tuple(Unheeded(key=u["key"], message=u["message"], expected=u["expected"],
                                          unless=tuple(u.get("unless", ())), when=_words_when(u.get("when")))
                                 for u in raw.get("unheeded", ())),
                  plugins={block: {name: tuple(keys) for name, keys in p["names"].items()}
                           for block, p in raw.get("plugins", {}).items()},
                  quoted=_quoted(raw["id"], raw.get("quoted")),
                  retired={r["key"]: Retired(r["key"], r.get("now"), r.get("how")) for r in raw.get("retired", ())},
                  extra_keys_stop=(raw.get("extra_keys") or {}).get("stops"))


@cache
def methods() -> dict[str, Method]:
    """The methods, in the registry's order."""
    return _build("methods", _method)


@cache
def optimizers() -> dict[str, Optimizer]:
    """The built-in optimizers, in the registry's order (a rulebook may layer more: Rulebook.optimizers)."""
    return _build("optimizers", Optimizer.from_raw)


@cache
def formats() -> dict[str, Format]:
    """The trainer formats, in the registry's order (detection tries them in it)."""
    built = _build("formats", _format)
    word = placeholder()
    for fid, spec in built.items():
        for p in spec.write.placeholders if spec.write is not None else ():
            if word not in str(p.value):  # validate finds a placeholder by the word alone (VCF009)
                raise RuleFileError(f"built-in rules/{REGISTRY_DIR}/formats.yaml: format {fid!r} key "
                                    f"'write.placeholders' ({p.key}): {p.value!r} does not hold the placeholder "
                                    f"{word!r}", hint="write the top-level `placeholder` word in the value")
    return built


@cache
def placeholder() -> str:
    """The word `recommend --format` writes where a value is the user's to give (formats.yaml `placeholder`)."""
    data = _load("formats")[1]
    word = data.get("placeholder") if isinstance(data, dict) else None
    if not isinstance(word, str) or not word:
        raise RuleFileError(f"built-in rules/{REGISTRY_DIR}/formats.yaml: key 'placeholder': {word!r} is not a word",
                            hint="see schemas/formats.schema.json")
    return word


@cache
def not_configs() -> dict[str, NotConfig]:
    """The kinds of file that are not training configs, in the order detection tries them."""
    path = rules_dir() / REGISTRY_DIR / "formats.yaml"
    data = _parse(path, path.read_bytes())
    entries = data.get("not_configs", []) if isinstance(data, dict) else []
    return {e["id"]: NotConfig(**_tuples(e, "marks", "all", "only", "unless")) for e in entries}


def _tuples(raw: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {**raw, **{k: tuple(raw.get(k, ())) for k in keys}}


@cache
def strategies() -> dict[str, Strategy]:
    """The sharding strategies, in the registry's order (`none` first)."""
    return _build("sharding", lambda raw: Strategy(**_tuples(raw, "shards", "names", "offload")), "strategies")


@cache
def offloads() -> dict[str, Offload]:
    """The CPU offload targets."""
    return _build("sharding", lambda raw: Offload(**_tuples(raw, "requires")), "offloads")


@cache
def bundled_deepspeed() -> dict[str, Bundled]:
    """Trainer-shipped DeepSpeed files by file name (Axolotl's deepspeed_configs/)."""
    return _build("sharding", lambda raw: Bundled(**_tuples(raw, "offload")), "bundled")


def _sharding_mapping(key: str) -> dict[str, Any]:
    path = rules_dir() / REGISTRY_DIR / "sharding.yaml"
    raw = (_parse(path, path.read_bytes()).get("sharding") or {}).get(key)
    if not isinstance(raw, dict):
        raise RuleFileError(f"built-in rules/{REGISTRY_DIR}/sharding.yaml: expected a mapping under 'sharding.{key}'")
    return raw


@cache
def sharding_keys() -> dict[str, tuple[str, ...]]:
    """Where configs say how they shard (rules/registry/sharding.yaml `keys`)."""
    return {k: tuple(str(w) for w in v) for k, v in _sharding_mapping("keys").items()}


@cache
def sharding_writes() -> dict[str, Any]:
    """How trainer configs are written for a strategy (rules/registry/sharding.yaml `write`)."""
    return _sharding_mapping("write")


def strategy_named(word: str) -> Strategy | None:
    """The strategy a flag, config or launch file calls ``word`` (its id or one of its names), or None."""
    key = str(word).strip().lower().replace("-", "_")
    for s in strategies().values():
        if key == s.id or key in s.names:
            return s
    return None


def sharding_ids() -> tuple[str, ...]:
    """'none', 'zero1', ...: the --sharding values, in order."""
    return tuple(strategies())


def offload_ids() -> tuple[str, ...]:
    """'optimizer', 'parameters': the --offload values."""
    return tuple(offloads())


# What a script of the user's parses beside a TRL config class that no `trl` command trains (CPOConfig, ORPOConfig),
# as TRL's own scripts do (trl/scripts/sft.py: TrlParser((ScriptArguments, SFTConfig, ModelConfig, ...))).
TRL_SHARED_CLASSES = ("ScriptArguments", "ModelConfig")


def shared_classes(writer: Writer, fields: Fields, config_class: str | None) -> tuple[str, ...]:
    """The classes `trl <command>` parses beside the config class (rules/registry/fields/trl.json `parses`: its
    own script arguments, where GRPOScriptArguments carries reward_funcs, then ModelConfig and
    DatasetMixtureConfig); a class no command trains is run by a script that parses the shared ones with it."""
    parsed = fields.parses.get(writer.commands.get(config_class or "", ""), ())
    return tuple(c for c in parsed if c != config_class) if parsed else TRL_SHARED_CLASSES


def parsed_beside(writer: Writer, fields: Fields) -> frozenset[str]:
    """The classes that are parsed beside a config class and never trained as one (ScriptArguments, ModelConfig)."""
    return frozenset(c for classes in fields.parses.values() for c in classes
                     if c not in writer.commands).union(TRL_SHARED_CLASSES)


def variant_trl(variants: Mapping[str, Any], mid: str, variant: str) -> dict[str, Any]:
    """A variant's own TRL trainer and settings (rules/variants.yaml trl: SimPO's CPOTrainer), or {}."""
    return dict(variants.get(variant, {}).get("trl") or {}) if variant != mid else {}


def trl_config_class(variants: Mapping[str, Any], mid: str, variant: str) -> str:
    """The TRL config class that trains ``variant`` of method ``mid`` ("" where none is named)."""
    entry = method(mid)
    return str(variant_trl(variants, mid, variant).get("config") or (entry.trl_config if entry is not None else ""))


FIELDS_DIR = "fields"  # rules/registry/fields/: the trainers' accepted keys, JSON (tools/trainer_fields.py)


@cache
def trainer_fields(name: str) -> Fields:
    """The keys trainer ``name`` accepts (a format's `write.fields`)."""
    import json

    path = rules_dir() / REGISTRY_DIR / FIELDS_DIR / f"{name}.json"
    try:
        raw = json.loads(path.read_bytes())
        return Fields(trainer=raw["trainer"], name=raw["name"], version=raw["version"], source=raw["source"],
                      keys=frozenset(raw.get("fields", ())),
                      classes={c: frozenset(v) for c, v in raw.get("classes", {}).items()},
                      choices=raw.get("choices", {}), mappings=frozenset(raw.get("mappings", ())),
                      parses={c: tuple(v) for c, v in raw.get("parses", {}).items()},
                      launch=frozenset(raw.get("launch", ())))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RuleFileError(f"built-in rules/{REGISTRY_DIR}/{FIELDS_DIR}/{name}.json: cannot be read: {exc}",
                            hint="regenerate it with tools/trainer_fields.py") from exc


def writable_format_ids() -> tuple[str, ...]:
    """The trainer formats `recommend --format` can write, in the registry's order."""
    return tuple(f.id for f in formats().values() if f.write is not None)


def optimizer_table(entries: Iterable[Mapping[str, Any]]) -> dict[str, Optimizer]:
    """Typed optimizers from raw entries (a layered rulebook's), keyed by id."""
    return {o.id: o for o in map(Optimizer.from_raw, entries)}


def method_ids() -> tuple[str, ...]:
    """'sft', 'dpo', ...: the --method values, in order (for help text: ' | '.join(method_ids()))."""
    return tuple(methods())


def optimizer_ids() -> tuple[str, ...]:
    """The optimizer names advisor knows, in order."""
    return tuple(optimizers())


def probe_optimizer_ids() -> tuple[str, ...]:
    """The optimizer names the probe builds, in order."""
    return tuple(o.id for o in optimizers().values() if o.implementation)


def format_ids() -> tuple[str, ...]:
    """'advisor', 'axolotl', ...: the --config-format values, in order."""
    return tuple(formats())


def method(mid: str | None) -> Method | None:
    """The registry's method, or None for a word it does not know."""
    return methods().get(mid or "")


def generating_method_ids() -> tuple[str, ...]:
    """The methods whose training step samples completions (on-policy RL)."""
    return tuple(m.id for m in methods().values() if m.generates)


def completion_capped_method_ids() -> tuple[str, ...]:
    """The methods whose max_seq_length is written as the completion cap, with the prompt on top (GRPO)."""
    return tuple(m.id for m in methods().values() if m.completion_cap)


def method_aliases() -> dict[str, str]:
    """Loss names the probe takes as a method of the same batch shape: alias -> method id."""
    return {alias: m.id for m in methods().values() for alias in m.aliases}


@dataclass(frozen=True)
class FlagBound:
    """The range a numeric flag takes (rules/registry/flags.yaml)."""

    id: str
    source: str
    parameter: str | None = None
    above: float | None = None
    minimum: float | None = None
    below: float | None = None
    maximum: float | None = None
    unit: str = ""
    example: float | None = None
    also: tuple[str, ...] = ()  # the flags that share this range

    def allows(self, value: float) -> bool:
        # Written as what holds, so a NaN (every comparison false) is out of range.
        return ((self.above is None or value > self.above) and (self.minimum is None or value >= self.minimum)
                and (self.below is None or value < self.below) and (self.maximum is None or value <= self.maximum))

    def range_words(self) -> str:
        """The range as the hint says it: ``0 < --gpu-mem <= 4096 GiB``."""
        low = f"{_shown(self.above)} < " if self.above is not None else f"{_shown(self.minimum)} <= "
        high = (f" < {_shown(self.below)}" if self.below is not None
                else f" <= {_shown(self.maximum)}" if self.maximum is not None else "")
        if not high:  # one-sided: the flag first reads better (--samples >= 1)
            low = f" > {_shown(self.above)}" if self.above is not None else f" >= {_shown(self.minimum)}"
            return f"{self.id}{low}{' ' + self.unit if self.unit else ''}"
        return f"{low}{self.id}{high}{' ' + self.unit if self.unit else ''}"

    def words(self) -> str:
        """The range in words, for a message that may lose its hint (validate gives a job comment its own)."""
        unit = f" {self.unit}" if self.unit else ""
        if self.minimum is not None and self.maximum is not None:
            return f"{_shown(self.minimum)} to {_shown(self.maximum)}{unit}"
        low = f"more than {_shown(self.above)}" if self.above is not None else f"at least {_shown(self.minimum)}"
        high = (f", less than {_shown(self.below)}" if self.below is not None
                else f", at most {_shown(self.maximum)}" if self.maximum is not None else "")
        return f"{low}{high}{unit}"


def _shown(value: float | None) -> str:
    """A bound or value as a user writes it: 10000000, not 1e+07; 5e-05 as %g has it."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int) or (math.isfinite(value) and value.is_integer() and abs(value) < 1e15):
        return str(int(value))
    return f"{value:g}"


def _parameter_bounds(name: str) -> dict[str, float]:
    """A parameter's minimum / maximum from the built-in rules/parameters.yaml (numbers default to 0)."""
    path = rules_dir() / "parameters.yaml"
    data = _parse(path, path.read_bytes())
    for raw in data.get("parameters", ()) if isinstance(data, dict) else ():
        if raw.get("name") == name:
            bounds = {"minimum": float(raw.get("minimum", 0))}
            if "maximum" in raw:
                bounds["maximum"] = float(raw["maximum"])
            return bounds
    raise RuleFileError(f"built-in rules/{REGISTRY_DIR}/flags.yaml: parameter {name!r} is not in rules/parameters.yaml")


def _flag_bound(raw: dict[str, Any]) -> FlagBound:
    raw = {**raw, "also": tuple(raw.get("also", ()))}
    if raw.get("parameter") is not None:
        raw.update(_parameter_bounds(raw["parameter"]))
    return FlagBound(**raw)


@cache
def flag_bounds() -> dict[str, FlagBound]:
    """The numeric flags' ranges, by flag; a range several flags share is listed under each, in its words."""
    bounds: dict[str, FlagBound] = _build("flags", _flag_bound)
    for bound in list(bounds.values()):
        for flag in bound.also:
            if flag in bounds:
                raise RuleFileError(f"built-in rules/{REGISTRY_DIR}/flags.yaml: {flag} has two ranges ({bound.id}'s "
                                    "`also` and its own entry)", hint="keep one")
            bounds[flag] = replace(bound, id=flag, also=(), example=None)  # "--lr 2e-4" is no --lr-range
    return bounds


def check_flag(flag: str, value: float | None, said: str | None = None) -> None:
    """Raise a one-line error naming ``flag`` (or ``said``: where else the value came from, "--lr / learning_rate"),
    ``value`` and the range when ``value`` is outside it."""
    if value is None:
        return
    bound = flag_bounds()[flag]
    if bound.allows(value):
        return
    example = f"; e.g. {flag} {_shown(bound.example)}" if bound.example is not None else ""
    origin = f", as {bound.parameter} in rules/parameters.yaml" if bound.parameter else ""
    raise FactError(f"{said or flag}: {_shown(value)} is out of range: {bound.words()}",
                    hint=f"{bound.range_words()}{origin}{example}")

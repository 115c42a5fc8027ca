"""Readers: one per format of the trainer-format registry (rules/registry/formats.yaml: advisor's
own YAML, Axolotl, LLaMA-Factory, TRL / Hugging Face TrainingArguments, trainer_state.json),
detected automatically, all mapped to TrainingConfig.

What is data: which key means which parameter (`trainer_keys` in rules/parameters.yaml), how a file
is recognised and how it names its method (the format's registry entry). A reader keeps only what
is shaped differently in its format.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor.configs.document import ConfigError, Document, KeyPath, read_document
from advisor.configs.model import FORMATS, FROM_PATH, MEANINGLESS, ConfigValue, ReadAs, TrainingConfig
from advisor.configs.placeholders import placeholder_keys
from advisor.facts.task import METHODS, variant_of
from advisor.registries import Format, MethodMapping, NotConfig, formats, not_configs
from advisor.rulebook.load import Rulebook
from advisor.safeio import at_path, clip, finite

Reader = Callable[[Document, Rulebook, TrainingConfig, Format], None]
READERS: dict[str, Reader] = {}  # format id (rules/registry/formats.yaml) -> its reader

# The seeds' RAFT config snippets name the cycle-1 LR base_learning_rate.
ADVISOR_ALIASES = {"base_learning_rate": "learning_rate"}
# TRL keys that only server-mode vLLM reads (vllm_device: TRL before vllm_mode existed)
TRL_VLLM_SERVER_KEYS = ("vllm_device", "vllm_server_host", "vllm_server_base_url", "vllm_server_port")
# The keys that turn an adapter on or off (TRL ModelConfig.use_peft, open-instruct's use_lora): set false, they
# train full weights however many LoRA keys the file also sets
TRL_PEFT_SWITCHES = ("use_peft", "use_lora")
MODEL_HINT = "a hub id or a local path, as one string"
# LLaMA-Factory v1's adapter plugins (src/llamafactory/v1/plugins/model_plugins/peft.py: PeftPlugin lora, freeze)
V1_PEFT_HINT = "peft_config: {name: lora, ...} or {name: freeze, ...}; leave peft_config out for full fine-tuning"


def reader(fmt: str) -> Callable[[Reader], Reader]:
    """Register the reader of one format of the registry."""
    def register(fn: Reader) -> Reader:
        READERS[fmt] = fn
        return fn
    return register


def detect_format(data: dict[str, Any]) -> str:
    """The format a file is in, by the registry's `detect` (rules/registry/formats.yaml says the order)."""
    known = formats().values()
    for f in known:
        if (any(k in data for k in f.marks) or (f.all_keys and all(k in data for k in f.all_keys))
                or (f.shape is not None and isinstance(data.get(f.shape), dict) and set(data) <= set(f.keys))):
            return f.id
    fallback = next(f.id for f in known if f.fallback)
    scores = {f.id: sum(k in data for k in f.signature) for f in known if f.signature}
    best = max(scores, key=lambda fid: (scores[fid], fid == fallback))
    return best if scores[best] else fallback


def _is_set(data: dict[str, Any], key: str) -> bool:
    return at_path(data, key) not in (None, False)


def not_a_config(data: dict[str, Any]) -> NotConfig | None:
    """The kind of non-training file ``data`` is (rules/registry/formats.yaml `not_configs`), or None."""
    for kind in not_configs().values():
        if any(_is_set(data, k) for k in kind.unless):
            continue
        if (any(_is_set(data, k) for k in kind.marks) or (kind.all and all(k in data for k in kind.all))
                or (kind.only and set(data) <= set(kind.only))):
            return kind
    return None


def _coerce(doc: Document, key_path: KeyPath, kind: str, value: Any) -> Any:
    """Bring a config value to the parameter's type; a value that cannot be is a ConfigError naming it."""
    from advisor.rulebook.model import as_type, type_words

    where = f"{doc.path}:{doc.line_of(key_path) or '?'}: key '{'.'.join(map(str, key_path))}'"
    try:
        return as_type(kind, value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{where}: value {clip(value)} is not {type_words(kind)}", hint="fix the value's type") from exc


def _as_trainer_reads(doc: Document, key_path: KeyPath, kind: str, value: Any, fmt: Format | None) -> Any:
    """``value`` as a parameter of type ``kind``, as the trainer reads it. Text where a number or switch goes
    ("2e-4", "16", "false") is what the format's `quoted` says: a trainer that keeps it a str would train on (or
    stop at) text, so advisor names it rather than judge the number the text spells."""
    from advisor.rulebook.model import type_words

    value = _converted_by_field(doc, key_path, kind, value, fmt)
    quoted = fmt.quoted if fmt is not None else None
    if (fmt is not None and quoted is not None and isinstance(value, str) and kind in ("bool", "int", "float")
            and doc.quoted(key_path)):
        read = quoted.reads(value, nested=len(key_path) > 1)
        if read is None:
            where = ".".join(map(str, key_path))
            raise ConfigError(f"{doc.path}:{doc.line_of(key_path) or '?'}: key '{where}': value {clip(value)} is quoted: "
                              f"{fmt.name} passes it on as a string, not {type_words(kind)}",
                              hint=f"write it without quotes: {key_path[-1]}: {value}")
        value = _coerce(doc, key_path, read, value)
    return _coerce(doc, key_path, kind, value)


def _converted_by_field(doc: Document, key_path: KeyPath, kind: str, value: Any, fmt: Format | None) -> Any:
    """A top-level quoted number or switch as a trainer that parses text with its field's own type reads it
    (TrlParser: argparse's int(), float(), string_to_bool; the field's type is the trainer's, `quoted.field_types`
    where it is not the parameter's: TrainingArguments' eval_steps is a float). Text the type refuses stops the
    trainer, so it is a one-line error; any other value is returned as it is."""
    from advisor.rulebook.model import type_words

    quoted = fmt.quoted if fmt is not None else None
    if (fmt is None or quoted is None or not quoted.by_type or not isinstance(value, str) or len(key_path) != 1
            or kind not in ("bool", "int", "float") or not doc.quoted(key_path)):
        return value
    field = quoted.field_type(str(key_path[0]), kind)
    by_type = quoted.converted(value, field)
    if by_type is None:
        return value
    took, spelled = by_type
    if not took:
        raise ConfigError(f"{doc.path}:{doc.line_of(key_path) or '?'}: key '{key_path[0]}': value {clip(value)} is "
                          f"quoted: {fmt.name} converts it as {type_words(field)}, and that refuses it",
                          hint=f"write {type_words(field)} without quotes, e.g. {key_path[0]}: "
                               f"{_plain_example(value, field)}")
    return spelled if field == "bool" else int(spelled) if field == "int" else float(spelled)


def _plain_example(text: str, kind: str) -> str:
    """What a quoted value the trainer's parser refuses would be written as: '16.0' for an int is 16."""
    with contextlib.suppress(ValueError, OverflowError):
        number = float(text)
        if kind == "int" and number.is_integer():
            return str(int(number))
        if kind == "float":
            return f"{number:g}"
    return {"int": "16", "float": "2e-4", "bool": "true"}[kind]


def _at(doc: Document, key: str) -> Any:
    """The value at a dotted key (``peft_config.r``), None where a part is unset. A part given as a JSON object
    in a string is read as the trainers read it (transformers TrainingArguments' dict fields, LLaMA-Factory v1's
    get_plugin_config: json.loads); a part set to anything else holds no keys, so it is a ConfigError naming it,
    not a value the file leaves out."""
    parts = key.split(".")
    value: Any = doc.data
    for depth, part in enumerate(parts):
        if depth and isinstance(value, str) and value.startswith("{"):
            with contextlib.suppress(ValueError, RecursionError):  # not JSON: named below as no mapping
                value = json.loads(value)
        if depth and not isinstance(value, dict):
            if value is None:
                return None
            above = ".".join(parts[:depth])
            raise ConfigError(f"{doc.path}:{doc.line_of(tuple(parts[:depth])) or '?'}: key '{above}': value "
                              f"{clip(value)} is not a mapping", hint=f"a mapping of keys, {key} among them")
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _set(cfg: TrainingConfig, doc: Document, book: Rulebook, name: str, key_path: KeyPath, value: Any,
         fmt: Format | None = None) -> None:
    if value is None:
        return
    param = book.parameters[name]
    where = ".".join(map(str, key_path))
    line = doc.line_of(key_path)
    words = param.words.get("values", {})
    if isinstance(value, str) and value.lower() in words:
        meant = words[value.lower()]
        cfg.read_as.append(ReadAs(where, line, f"{where}: {value!r} is read as {meant!r}, as the trainer reads it "
                                               f"({param.words['source']})"))
        value = meant
    value = _converted_by_field(doc, key_path, param.type, value, fmt)  # TRL's "0.03" is the float its field takes
    fraction = param.fraction_as.get("parameter")
    if fraction and isinstance(value, float) and 0 < value < 1 and fraction in book.parameters:
        # where the fraction is the trainer's own way to give the ratio (transformers 5.24 has no warmup_ratio),
        # it is read so without a finding: the value means what it says
        if (fmt.trainer_keys if fmt else None) not in param.fraction_as.get("native", ()):
            cfg.read_as.append(ReadAs(where, line, f"{where}: {value:g} is a fraction, read as {fraction} {value:g} "
                                                   f"({param.fraction_as['source']})"))
        name, param = fraction, book.parameters[fraction]
    coerced = _as_trainer_reads(doc, key_path, param.type, value, fmt)
    problem = param.problem(coerced)
    if problem is not None:  # a finding, not a file it cannot check: the other keys are still judged
        cfg.read_as.append(ReadAs(where, line, f"{where}: {problem}; not judged", rule=MEANINGLESS))
        return
    cfg.values[name] = ConfigValue(coerced, where, line)


def _naming(fmt: Format) -> MethodMapping:
    if fmt.method is None:
        raise ConfigError(f"format {fmt.id!r} has no `method` entry in rules/registry/formats.yaml")
    return fmt.method


def _word(doc: Document, key: str, what: str, fmt: Format | None = None, hint: str = "one word") -> str | None:
    """The text a key (dotted: nested) that names the model, method or adapter holds (None: not set); a list,
    mapping, number or true there is no name, and str() of it would pass for one, so it is a ConfigError."""
    value = _at(doc, key)
    if value is None or value is False or value == "":
        return None
    if not isinstance(value, str):
        from advisor.registries import trainer_fields

        choices = trainer_fields(fmt.write.fields).choices.get(key) if fmt is not None and fmt.write else None
        raise ConfigError(f"{doc.path}:{doc.line_of(tuple(key.split('.'))) or '?'}: key '{key}': value {clip(value)} "
                          f"is not {what}", hint=f"one of {', '.join(map(str, choices))}" if choices else hint)
    return value


def _read_model(doc: Document, cfg: TrainingConfig, fmt: Format) -> None:
    """The model from the first of the format's model_keys the file sets (rules/registry/formats.yaml)."""
    for key in fmt.model_keys:
        model = _word(doc, key, "a model name", hint=MODEL_HINT)
        if model is not None:
            cfg.model = _cv(doc, key, model)
            return


def _cv(doc: Document, key: str, value: Any) -> ConfigValue:
    return ConfigValue(value, key, doc.line_of((key,)))


def _unset(name: str, kind: str, value: Any) -> bool:
    """Trainer spellings of 'not set': Axolotl's bf16: auto, Hugging Face's max_steps: -1."""
    if kind == "bool" and value == "auto":
        return True
    return name == "max_steps" and value == -1


def _read_mapped(doc: Document, book: Rulebook, cfg: TrainingConfig, fmt: Format) -> None:
    """Each parameter from the first of its trainer_keys the file sets (dotted: nested; "!key": negated)."""
    for name, param in book.parameters.items():
        keys = param.trainer_keys.get(fmt.trainer_keys or "")
        for key in [keys] if isinstance(keys, str) else (keys or []):
            negated = key.startswith("!")
            key, _, word = key.lstrip("!").partition("=")
            if any(u.key == key and u.applies(doc.data) for u in fmt.unheeded):
                continue  # what the trainer does not act on names no value of the run (trl.loss_type under rl: dpo)
            value = _at(doc, key)
            path = tuple(key.split("."))
            if fmt.write is not None and key in fmt.write.listed() and isinstance(value, list):
                value = _first_listed(doc, cfg, key, value)
            if word and value is not None:  # a flag naming the value: only when true
                value = word if _as_trainer_reads(doc, path, "bool", value, fmt) else None
            if value is not None and not _unset(name, param.type, value):
                if negated:
                    value = not _as_trainer_reads(doc, path, "bool", value, fmt)
                _set(cfg, doc, book, name, path, value, fmt)
                break


def _first_listed(doc: Document, cfg: TrainingConfig, key: str, value: list[Any]) -> Any:
    """A loss key that holds a list (Axolotl's dpo_loss_type): its one word; of several the trainer sums the
    losses (TRL DPOConfig loss_type list, loss_weights), which the checks judge as the first."""
    if len(value) > 1:
        cfg.read_as.append(ReadAs(key, doc.line_of(tuple(key.split("."))),
                                  f"{key}: {clip(value)} trains the weighted sum of {len(value)} losses (TRL DPOConfig "
                                  f"loss_weights); the checks judge it as its first, {clip(value[0])}"))
    return value[0] if value else None


def _named_loss(cfg: TrainingConfig, word: str, key: str, line: int | None, over_base: bool = False) -> None:
    """A method word an alias maps to another method is the file's loss variant (rl: orpo is DPO's orpo),
    unless the file names its loss itself. ``over_base``: the file's loss is its method's base loss, which the
    variant's own trainer also calls by that name (CPOConfig's loss_type 'sigmoid' is CPO's loss, not DPO's),
    so the variant wins."""
    if "loss_type" not in cfg.values or over_base:
        cfg.values["loss_type"] = ConfigValue(word.lower(), key, line)


def _loss_keys(book: Rulebook, fmt: Format) -> list[str]:
    """The keys a format names its loss by (the loss_type parameter's trainer_keys)."""
    keys = book.parameters["loss_type"].trainer_keys.get(fmt.trainer_keys or "", [])
    return [keys] if isinstance(keys, str) else list(keys)


@reader("advisor")
def _read_advisor(doc: Document, book: Rulebook, cfg: TrainingConfig, fmt: Format) -> None:
    under = fmt.parameters_under or ""
    training = doc.data.get(under)
    if not isinstance(training, dict):
        raise ConfigError(f"{doc.path}: key '{under}' must be a mapping of parameters")
    for top in doc.data:
        if top not in fmt.keys:
            raise ConfigError(f"{doc.path}:{doc.line_of((top,))}: unknown key '{top}'",
                              hint="advisor configs hold advisor_format, model, method, variant, peft and training")
    for key, value in training.items():
        name = ADVISOR_ALIASES.get(key, key)
        if name not in book.parameters:
            raise ConfigError(f"{doc.path}:{doc.line_of((under, key))}: unknown key '{under}.{key}'",
                              hint="`advisor rules list` shows the parameters")
        _set(cfg, doc, book, name, (under, key), value)
    _read_model(doc, cfg, fmt)
    for key in ("method", "peft"):
        if doc.data.get(key) is not None:
            setattr(cfg, key, _cv(doc, key, str(doc.data[key])))
    if doc.data.get("variant") is not None:  # the loss variant the values are for, as a loss key names it
        _named_loss(cfg, str(doc.data["variant"]), "variant", doc.line_of(("variant",)))


@reader("axolotl")
def _read_axolotl(doc: Document, book: Rulebook, cfg: TrainingConfig, fmt: Format) -> None:
    _read_mapped(doc, book, cfg, fmt)
    d = doc.data
    bf16, fp16 = cfg.values.get("bf16"), cfg.values.get("fp16")
    if bf16 is not None and fp16 is not None and bf16.value is True and fp16.value is True:
        # Axolotl's resolve_dtype drops fp16 where bf16 is on (src/axolotl/utils/config/__init__.py at
        # 067b021c8b87a9e5e380b9173c704cf7340e30f5: `if cfg.bf16: cfg.fp16 = False`); TrainingArguments never sees both
        cfg.read_as.append(ReadAs(fp16.key, fp16.line, f"{fp16.key}: true is read as false beside {bf16.key}: true, "
                                  "as Axolotl reads it (resolve_dtype: bf16 wins)"))
        cfg.values["fp16"] = ConfigValue(False, fp16.key, fp16.line)
    linear = d.get("lora_target_linear")  # Axolotl's schema reads "false" as false, as the other switches
    if (linear is not None and _coerce(doc, ("lora_target_linear",), "bool", linear)
            and "lora_target_modules" not in cfg.values):
        cfg.values["lora_target_modules"] = ConfigValue(["all-linear"], "lora_target_linear",
                                                        doc.line_of(("lora_target_linear",)))
    _read_model(doc, cfg, fmt)
    naming = _naming(fmt)
    rl = _word(doc, naming.key, "a method word", fmt) if naming.key else None
    if rl is not None:
        cfg.method = _cv(doc, naming.key or "", naming.named(rl))
        if cfg.method.value != rl.lower():
            _named_loss(cfg, rl, naming.key or "", cfg.method.line)
    else:
        # No rl: a reward-model or pretraining config says so by its own keys (formats.yaml axolotl infer)
        guess = next((i for i in naming.infer if any(d.get(k) for k in i.keys) or i.matches_items(d)), None)
        if guess is None:
            cfg.method = ConfigValue(naming.default, naming.key or "", None)
        else:
            named = next((k for k in guess.keys if d.get(k)), guess.every[0] if guess.every else "")
            cfg.method = ConfigValue(guess.method, named, doc.line_of((named,)))
    _read_adapter(doc, cfg, fmt)


def _read_adapter(doc: Document, cfg: TrainingConfig, fmt: Format) -> None:
    """Axolotl's adapter: a word its write.peft values name (formats.yaml), or none for full weights. Axolotl
    raises NotImplementedError on a word it has no loader for, so a word advisor cannot map is no full run."""
    key = fmt.write.peft_key if fmt.write is not None else "adapter"
    words = {str(v): k for k, v in (fmt.write.peft_values if fmt.write is not None else {}).items() if v is not None}
    hint = f"one of {', '.join(words)}, or no {key} for full fine-tuning"
    adapter = _word(doc, key, "an adapter word", fmt, hint)
    if adapter is None:
        cfg.peft = ConfigValue("full", key, doc.line_of((key,)))
        return
    if adapter not in words:
        raise ConfigError(f"{doc.path}:{doc.line_of((key,)) or '?'}: key '{key}': value {clip(adapter)} is not an "
                          "adapter advisor reads", hint=hint)
    four_bit = cfg.values.get("load_in_4bit")  # as its schema reads it ("false" is false)
    peft = "qlora" if words[adapter] == "qlora" or (four_bit is not None and four_bit.value) else words[adapter]
    cfg.peft = _cv(doc, key, peft)


@reader("llama-factory-v1")
def _read_llama_factory_v1(doc: Document, book: Rulebook, cfg: TrainingConfig, fmt: Format) -> None:
    """v1 nests its plugins (peft_config.r, quant_config.quantization_bit): trainer_keys' dotted keys read them."""
    _read_mapped(doc, book, cfg, fmt)
    d = doc.data
    _read_model(doc, cfg, fmt)
    naming = _naming(fmt)
    method = next((i.method for i in naming.infer if any(k in d for k in i.keys)), naming.default)
    cfg.method = ConfigValue(method, "(the llamafactory-cli command; inferred from the keys)", None)
    plugin = _at(doc, "peft_config")
    if isinstance(plugin, dict) and "name" not in plugin:
        # get_plugin_config: "Plugin configuration must have a 'name' field." (src/llamafactory/v1/config/arg_utils.py)
        raise ConfigError(f"{doc.path}:{doc.line_of(('peft_config',)) or '?'}: key 'peft_config' has no 'name': "
                          "LLaMA-Factory v1 refuses a plugin config without one", hint=V1_PEFT_HINT)
    kind = (_word(doc, "peft_config.name", "a plugin name", hint=V1_PEFT_HINT) or "full").lower()
    bits = cfg.values.get("quantization_bit")
    peft = "full" if kind in ("full", "freeze") else ("qlora" if bits is not None and bits.value == 4 else "lora")
    cfg.peft = ConfigValue(peft, "peft_config.name", doc.line_of(("peft_config", "name")))


@reader("llama-factory")
def _read_llama_factory(doc: Document, book: Rulebook, cfg: TrainingConfig, fmt: Format) -> None:
    _read_mapped(doc, book, cfg, fmt)
    d = doc.data
    target = cfg.values.get("lora_target_modules")
    if target is not None and target.value in (["all"], ["all-linear"]):
        cfg.values["lora_target_modules"] = ConfigValue(["all-linear"], target.key, target.line)
    _read_model(doc, cfg, fmt)
    naming = _naming(fmt)
    word = (_word(doc, naming.key, "a stage word", fmt) if naming.key else None) or naming.default
    method = naming.named(word)
    if method != word.lower():
        _named_loss(cfg, word, naming.key or "", doc.line_of((naming.key or "",)))
    loss = str(next((d[k] for k in _loss_keys(book, fmt) if d.get(k)), "")).lower()
    if loss in naming.from_loss.get(method, ()):
        method = loss  # e.g. ORPO, SimPO: a loss that is a method of its own
    cfg.method = _cv(doc, naming.key or "", method)
    ftype = (_word(doc, "finetuning_type", "a finetuning type", fmt) or "lora").lower()
    given = cfg.values.get("quantization_bit")  # as the parameter's type reads it ("4" is 4)
    bits = None if given is None else given.value
    if given is not None:
        cfg.values["load_in_4bit"] = ConfigValue(bits == 4, given.key, given.line)
        cfg.values["load_in_8bit"] = ConfigValue(bits == 8, given.key, given.line)
    peft = "full" if ftype in ("full", "freeze") else ("qlora" if bits == 4 else "lora")
    cfg.peft = _cv(doc, "finetuning_type", peft)


@reader("trl")
def _read_trl(doc: Document, book: Rulebook, cfg: TrainingConfig, fmt: Format) -> None:
    _read_mapped(doc, book, cfg, fmt)
    d = doc.data
    _read_model(doc, cfg, fmt)
    naming = _naming(fmt)
    loss = str(next((d[k] for k in _loss_keys(book, fmt) if d.get(k)), "")).lower()
    guess = next((i for i in naming.infer if any(k in d for k in i.keys) or loss in i.loss_types
                  or i.matches_items(d)), None)
    cfg.method = ConfigValue(guess.method if guess else naming.default, "(inferred from the keys)", None)
    named = next((k for k in (*guess.keys, *guess.equals) if k in d), None) if guess is not None else None
    if guess is not None and guess.variant is not None and named is not None:  # matched by its loss: already read
        given = cfg.values.get("loss_type")
        base = given is not None and variant_of(book.variants, guess.method, given.value) == guess.method
        _named_loss(cfg, guess.variant, named, doc.line_of((named,)), over_base=base)
    _read_from_path(doc, book, cfg, naming, inferred=guess is not None)
    legacy = next((k for k in TRL_VLLM_SERVER_KEYS if k in d), None)
    if d.get("use_vllm") and "vllm_mode" not in cfg.values and legacy is not None:
        # TRL before colocate existed ran vLLM as a server on its own GPU (vllm_device picked it)
        cfg.values["vllm_mode"] = ConfigValue("server", legacy, doc.line_of((legacy,)))
    # TRL's get_peft_config returns None when use_peft is False, whatever lora_r says (trl/trainer/utils.py)
    switches = {k: _as_trainer_reads(doc, (k,), "bool", d[k], fmt) for k in TRL_PEFT_SWITCHES if d.get(k) is not None}
    use_peft = (any(switches.values()) or bool(d.get("use_qlora") or d.get("peft_config"))
                or ("lora_r" in d and not switches))
    if use_peft:
        four_bit = cfg.values.get("load_in_4bit")  # load_in_4bit, or open-instruct's use_qlora
        peft = "qlora" if four_bit is not None and four_bit.value else "lora"
        order = ("use_peft", "use_lora", "use_qlora", "peft_config", "lora_r")
        key = next((k for k in order if d.get(k)), None) or next(k for k in order if k in d)
        cfg.peft = _cv(doc, key, peft)
    else:
        key = "use_lora" if "use_lora" in d else "use_peft"
        cfg.peft = ConfigValue("full", key, doc.line_of((key,)))


def path_variant(path: Path, variants: dict[str, dict[str, Any]], methods: set[str]) -> str | None:
    """The one loss variant (rules/variants.yaml id) of ``methods`` the file's folder or name names as a word of
    its own (recipes/zephyr-141b-A35b/orpo/config_full.yaml: orpo; runs/dr_grpo-7b.yaml: dr_grpo), or None
    (none, or two: sft_then_dpo.yaml)."""
    words = f"{path.parent.name}/{path.stem}".lower()
    found = {vid for vid, raw in variants.items()
             if raw["method"] in methods and re.search(rf"(?<![a-z0-9]){re.escape(vid)}(?![a-z0-9])", words)}
    found = {v for v in found if not any(v != o and v in o for o in found)}  # dr_grpo's grpo is dr_grpo
    return next(iter(found)) if len(found) == 1 else None


def _read_from_path(doc: Document, book: Rulebook, cfg: TrainingConfig, naming: MethodMapping,
                    inferred: bool) -> None:
    """TRL names a file's method by the command that trains it, never in the file, and ORPOConfig's keys are all
    DPOConfig's: the alignment handbook's Zephyr-141B ORPO recipe holds nothing a DPO one does not. So where
    the keys name no loss, the folder or name the recipe sits under does, among the methods the format's keys
    could name (RAFT, SFT in cycles, is the job comment's to say). ``inferred``: the keys named the method, and
    the path may only name one of its variants. A VCF014 info line says so."""
    vid = path_variant(doc.path, book.variants, {naming.default, *(i.method for i in naming.infer)})
    if vid is None or "loss_type" in cfg.values or cfg.method is None:
        return
    method = str(book.variants[vid]["method"])
    if inferred and method != cfg.method.value:
        return  # the keys name another method (num_generations in a folder named dpo): the keys win
    where = f"{doc.path.parent.name}/{doc.path.name}"
    named = f"(the file's path: {where})"
    what = "the method" if method != cfg.method.value else "the loss"
    if method != cfg.method.value:
        cfg.method = ConfigValue(method, named, None)
    if vid != method:
        _named_loss(cfg, vid, named, None)
    elif what == "the loss":
        return  # the path names the method the keys (or TRL's default) already give
    cfg.read_as.append(ReadAs("(path)", None, f"no key names {what}: read as {vid}, which the file's path names "
                              f"({where})", rule=FROM_PATH))


@reader("trainer-state")
def _read_trainer_state(doc: Document, book: Rulebook, cfg: TrainingConfig, fmt: Format) -> None:
    """trainer_state.json keeps a few of the run's arguments and the logged LR of every step."""
    d = doc.data
    for name, key in (("max_steps", "max_steps"), ("num_train_epochs", "num_train_epochs"),
                      ("eval_steps", "eval_steps"), ("micro_batch_size", "train_batch_size")):
        if isinstance(d.get(key), (int, float)) and not isinstance(d.get(key), bool) and d[key] > 0:
            _set(cfg, doc, book, name, (key,), d[key])
    history = d.get("log_history")
    if not isinstance(history, list):
        raise ConfigError(f"{doc.path}: key 'log_history' must be a list")
    lrs = [(i, lr) for i, e in enumerate(history)
           if isinstance(e, dict) and (lr := finite(e.get("learning_rate"))) is not None]
    if lrs:
        i, peak = max(lrs, key=lambda x: x[1])
        cfg.values["learning_rate"] = ConfigValue(float(peak), f"log_history[{i}].learning_rate",
                                                  doc.line_of(("log_history", i, "learning_rate")))
    cfg.notes.append("trainer_state.json stores few arguments: the LR is the peak logged one")


def _names_method(doc: Document, fmt: Format) -> bool:
    """The file names its method (Axolotl rl, LLaMA-Factory stage): a training config however few keys it sets."""
    key = fmt.method.key if fmt.method is not None else None
    return key is not None and _is_set(doc.data, key)


def check_config_format(fmt: str | None) -> None:
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"--config-format: unknown format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")


SLIP_EDITS = 2  # not-knowledge: how many edits from a known key an unknown one may be to read as a slip of it


def _edits(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of neighbours."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)
            row.append(cost)
        prev2, prev = prev, row
    return prev[-1]


def _truncation(key: str, known: str) -> bool:
    """``key`` is ``known`` cut short inside its last word (gradient_checkpoint, num_generation, max_step) or
    with one letter s too many (lora_alphas): a slip however many letters it drops, never another word."""
    cut = known[len(key):]
    return (known.startswith(key) and cut != "" and "_" not in cut and key[-1:] != "_") or key == f"{known}s"


def _any_trainers_key(key: str) -> bool:
    """Whether some trainer advisor writes for takes ``key``: a file only the fallback reader claims may be that one's."""
    from advisor.registries import trainer_fields

    for spec in formats().values():
        if spec.write is not None:
            fields = trainer_fields(spec.write.fields)
            if fields.takes(key, fields.keys.union(*fields.classes.values())):
                return True
    return False


def _misspelled_keys(doc: Document, spec: Format, guessed: bool) -> list[ReadAs]:
    """Top-level keys the trainer does not take but that are a slip from one it does (lora_rr for lora_r,
    gradient_checkpoint for gradient_checkpointing): TRL's and LLaMA-Factory's parsers refuse the file, Axolotl
    drops the value. A key further from every known one is left alone: scripts that subclass the trainer's
    config (open-r1's) take their own."""
    from advisor.registries import trainer_fields

    if spec.write is None or not isinstance(doc.data, dict):
        return []
    fields = trainer_fields(spec.write.fields)
    known = fields.keys.union(*fields.classes.values())
    # A file only the fallback reader claims may be another framework's (open-instruct's use_lora is one
    # edit from use_dora): there a slip made only of words known keys have must be a known key cut short
    # (num_generation), and no key of any trainer's; otherwise it must hold a word no known key has (lora_rr's "rr").
    words = {w for k in known for w in k.split("_")}
    out = []
    for key in doc.data:
        if not isinstance(key, str) or fields.takes(key, known):
            continue
        cut = min((k for k in known if _truncation(key, k)), key=len, default=None)
        if guessed and set(key.split("_")) <= words and (cut is None or _any_trainers_key(key)):
            continue
        near = min(((_edits(key, k), k) for k in known if abs(len(k) - len(key)) <= SLIP_EDITS), default=None)
        if cut is None and near is not None and near[0] <= SLIP_EDITS:
            cut = near[1]
        if cut is not None:
            out.append(ReadAs(key, doc.line_of((key,)), f"key '{key}' is not one {fields.name} {fields.version} takes; "
                              f"did you mean '{cut}'?", rule="check-config-unknown-key"))
    return out


def _extra_keys(doc: Document, spec: Format, slips: set[str]) -> list[ReadAs]:
    """Top-level keys a trainer whose parser refuses extra keys (LLaMA-Factory's HfArgumentParser) does not take,
    other than the slips VCF005 names: one VCF013 warning each, saying what the trainer does (formats.yaml
    `extra_keys`)."""
    from advisor.registries import trainer_fields

    if spec.extra_keys_stop is None or spec.write is None or not isinstance(doc.data, dict):
        return []
    fields = trainer_fields(spec.write.fields)
    return [ReadAs(k, doc.line_of((k,)), f"key '{k}' is not one {fields.name} {fields.version} takes: "
                   f"{spec.extra_keys_stop}", rule="check-config-extra-key")
            for k in doc.data if isinstance(k, str) and k not in slips and not fields.takes(k, fields.keys)]


FOREIGN_SHOWN = 6  # keys a VCF012 line names before "and N more"


def _foreign_keys(doc: Document, book: Rulebook, cfg: TrainingConfig, spec: Format, slips: set[str]) -> list[ReadAs]:
    """TRL: top-level keys that `trl <command> --config` does not take for the file's method (no class it parses
    has them, nor accelerate launch). Where each is one an earlier release took (formats.yaml `retired`), the file
    is a TRL config written for that release: one VCF011 warning per key, naming what replaced it. A key no
    release took means a script with arguments of its own reads the file (open-r1's, the alignment handbook's,
    open-instruct's): one VCF012 line names them all, the retired ones with their replacements."""
    from advisor.registries import shared_classes, trainer_fields, trl_config_class

    if spec.write is None or not isinstance(doc.data, dict) or cfg.method is None:
        return []
    fields = trainer_fields(spec.write.fields)
    if not fields.parses:
        return []  # a trainer whose keys are one flat list: its unknown keys are _misspelled_keys' to judge
    mid = str(cfg.method.value)
    given = cfg.values.get("loss_type")
    variant = variant_of(book.variants, mid, None if given is None else given.value) or mid
    config_class = trl_config_class(book.variants, mid, variant)
    if config_class not in fields.classes:
        return []  # a method TRL 1.16 has no config for (PPO): nothing to judge the keys by
    command = spec.write.commands.get(config_class)
    shared = shared_classes(spec.write, fields, config_class)
    # a class no command trains (CPOConfig, ORPOConfig) is parsed by a script of the user's, with no launcher
    accepted = fields.classes[config_class].union(*(fields.classes.get(c, ()) for c in shared),
                                                 fields.launch if command is not None else ())
    parser = f"`trl {command} --config`" if command is not None else f"TrlParser(({config_class}, {', '.join(shared)}))"
    unknown = [k for k in doc.data if isinstance(k, str) and k not in slips and not fields.takes(k, accepted)]
    if not unknown:
        return []
    who = f"{fields.name} {fields.version}"
    foreign = [k for k in unknown if k not in spec.retired]
    if not foreign:
        # --fix writes the key under its replacement, unless the file holds that key too
        return [ReadAs(k, doc.line_of((k,)), f"key '{k}' is not one {who} takes: {spec.retired[k].instead()}; "
                       f"{parser} stops on it, and TRL's own scripts drop it", rule="check-config-retired-key",
                       rename=now if (now := spec.retired[k].now) is not None and now not in doc.data else None)
                for k in unknown]
    named = [k if k not in spec.retired else f"{k} (now {spec.retired[k].now or 'gone'})" for k in unknown]
    more = len(named) - FOREIGN_SHOWN
    listed = ", ".join(named[:FOREIGN_SHOWN]) + (f" and {more} more" if more > 0 else "")
    count = f"{len(unknown)} keys are" if len(unknown) > 1 else "1 key is"
    return [ReadAs(foreign[0], doc.line_of((foreign[0],)),
                   f"{count} not {who}'s ({parser} stops on them): {listed}; a script with arguments of its own "
                   f"reads this file, so they are left to it", rule="check-config-foreign-keys")]


def _refused_plugins(doc: Document, spec: Format) -> list[ReadAs]:
    """A plugin block's name no plugin registers, or a key the named plugin's parameters dataclass lacks
    (LLaMA-Factory v1's peft_config: formats.yaml `plugins`): the trainer stops when it builds the plugin."""
    out = []
    for block, plugins in spec.plugins.items():
        config = _at(doc, block)
        if not isinstance(config, dict) or not isinstance(config.get("name"), str):
            continue  # none set; a block with no name, or no word there, is the reader's ConfigError
        name, at = config["name"], doc.line_of((block,))
        if name not in plugins:
            out.append(ReadAs(f"{block}.name", doc.line_of((block, "name")) or at,
                              f"key '{block}.name': {clip(name)} is not one of {spec.name}'s {block} plugins "
                              f"({', '.join(plugins)})", rule="check-config-refused-value"))
            continue
        for key in (k for k in config if k not in plugins[name]):
            out.append(ReadAs(f"{block}.{key}", doc.line_of((block, key)) or at,
                              f"key '{block}.{key}' is not one of the keys {spec.name}'s {name} plugin takes "
                              f"({', '.join(plugins[name])})", rule="check-config-refused-value"))
    return out


def _refused_values(doc: Document, spec: Format) -> list[ReadAs]:
    """Values outside the choices the trainer's own field declares (LLaMA-Factory's stage and finetuning_type
    Literals, Axolotl's rl enum, v1's peft_config plugins): its argument parser or schema refuses the file at start."""
    from advisor.registries import trainer_fields

    if not isinstance(doc.data, dict):
        return []
    out = _refused_plugins(doc, spec)
    if spec.write is None:
        return out
    fields = trainer_fields(spec.write.fields)
    for key, choices in fields.choices.items():
        value = doc.data.get(key)
        if not isinstance(choices, list) or value is None or value is False or value == "" or value in choices:
            continue  # a TRL class's table (class -> key -> values) is the loss words', judged by the variants
        out.append(ReadAs(key, doc.line_of((key,)), f"key '{key}': {clip(value)} is not one of {fields.name} "
                          f"{fields.version}'s choices ({', '.join(map(str, choices))})", rule="check-config-refused-value"))
    return out


def read_config(path: Path, book: Rulebook, fmt: str | None = None,
                text: str | None = None) -> tuple[TrainingConfig, Document]:
    check_config_format(fmt)
    doc = read_document(path, text)
    kind = not_a_config(doc.data)
    if kind is not None:
        raise ConfigError(f"{doc.path}: this is {kind.name}, not a training config", hint=kind.hint)
    detected = fmt is None
    fmt = fmt or detect_format(doc.data)
    cfg = TrainingConfig(path=path, format=fmt)
    READERS[fmt](doc, book, cfg, formats()[fmt])
    for dup in doc.duplicates:
        if dup.differs:
            cfg.read_as.append(ReadAs(dup.key, dup.again, f"key '{dup.key}' is given twice with different values: "
                                      f"{clip(dup.earlier)} (line {dup.first}) and {clip(dup.value)} (line {dup.again}); "
                                      f"the trainer's YAML loader keeps the last, {clip(dup.value)}",
                                      rule="check-config-duplicate-differs"))
        else:
            cfg.read_as.append(ReadAs(dup.key, dup.again, f"key '{dup.key}' is given twice with the same value (lines "
                                      f"{dup.first} and {dup.again}): the trainer reads one"))
    spec = formats()[fmt]
    if spec.evaluation is not None:
        stated, epochs = cfg.values.get("eval_strategy"), cfg.values.get("num_train_epochs")
        strategy = spec.evaluation.strategy(doc.data, None if stated is None else str(stated.value),
                                            None if epochs is None else float(epochs.value))
        if strategy is not None:
            cfg.derived["eval_strategy"] = strategy
    slips = _misspelled_keys(doc, spec, guessed=detected and spec.fallback)
    cfg.read_as.extend(slips)
    cfg.read_as.extend(_foreign_keys(doc, book, cfg, spec, {r.key for r in slips}))
    cfg.read_as.extend(_extra_keys(doc, spec, {r.key for r in slips}))
    cfg.read_as.extend(_refused_values(doc, spec))
    cfg.read_as.extend(placeholder_keys(doc))
    if isinstance(doc.data, dict):
        for refusal in spec.refuses:
            if refusal.refused(doc.data):
                key = refusal.named(doc.data)
                cfg.read_as.append(ReadAs(key, doc.line_of((key,)) if key in doc.data else None,
                                          f"{refusal.message}; {refusal.expected}", rule="check-config-refused-keys"))
        for u in spec.unheeded:
            if u.applies(doc.data):
                cfg.read_as.append(ReadAs(u.key, doc.line_of(tuple(u.key.split("."))),
                                          f"key '{u.key}': {clip(at_path(doc.data, u.key))}: {u.message}; {u.expected}"))
    unjudged = any(r.rule == MEANINGLESS for r in cfg.read_as)  # set, but past its bounds
    if detected and not cfg.values and not unjudged and not _names_method(doc, formats()[fmt]):
        raise ConfigError(f"{doc.path}: not a training config: it sets none of the keys a trainer reads "
                          "(learning rate, batch size, epochs or steps, sequence length, LoRA rank, ...)",
                          hint="give the training config (Axolotl, LLaMA-Factory, TRL or advisor YAML / JSON)")
    if formats()[fmt].parameters_under is None:  # advisor's own format states `sharding` as a parameter
        from advisor.configs.sharding import read_sharding

        read_sharding(doc, cfg)
    if cfg.method is not None and cfg.method.value not in METHODS:
        cfg.notes.append(f"method {cfg.method.value!r} is not in the rulebook: method-specific checks are skipped")
    return cfg, doc

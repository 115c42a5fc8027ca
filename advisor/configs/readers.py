"""Readers: one per format of the trainer-format registry (rules/registry/formats.yaml: advisor's
own YAML, Axolotl, LLaMA-Factory, TRL / Hugging Face TrainingArguments, trainer_state.json),
detected automatically, all mapped to TrainingConfig.

What is data: which key means which parameter (`trainer_keys` in rules/parameters.yaml), how a file
is recognised and how it names its method (the format's registry entry). A reader keeps only what
is shaped differently in its format.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from advisor.configs.document import ConfigError, Document, KeyPath, read_document
from advisor.configs.model import FORMATS, ConfigValue, TrainingConfig
from advisor.facts.task import METHODS
from advisor.registries import Format, MethodMapping, formats
from advisor.rulebook.load import Rulebook
from advisor.safeio import clip, finite

Reader = Callable[[Document, Rulebook, TrainingConfig, Format], None]
READERS: dict[str, Reader] = {}  # format id (rules/registry/formats.yaml) -> its reader

# The seeds' RAFT config snippets name the cycle-1 LR base_learning_rate.
ADVISOR_ALIASES = {"base_learning_rate": "learning_rate"}
# TRL keys that only server-mode vLLM reads (vllm_device: TRL before vllm_mode existed)
TRL_VLLM_SERVER_KEYS = ("vllm_device", "vllm_server_host", "vllm_server_base_url", "vllm_server_port")


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


def _coerce(doc: Document, key_path: KeyPath, kind: str, value: Any) -> Any:
    """Bring a config value to the parameter's type; a value that cannot be is a ConfigError naming it."""
    where = f"{doc.path}:{doc.line_of(key_path) or '?'}: key '{'.'.join(map(str, key_path))}'"
    try:
        if kind in ("float", "int"):
            if isinstance(value, bool) or value is None:
                raise ValueError
            number = float(value)  # YAML 1.1 reads 5e-5 as a string
            if not math.isfinite(number):
                raise ValueError
            if kind == "int":
                if number != int(number):
                    raise ValueError
                return int(number)
            return number
        if kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError
        if kind == "str":
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
        if kind == "list_str":
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return value
            raise ValueError
        if kind == "list_float":
            if isinstance(value, dict):  # the seeds' {cycle_1: 5.0e-5, cycle_2: ...}
                order = sorted(value, key=lambda k: int(str(k).rsplit("_", 1)[-1]))
                value = [value[k] for k in order]
            if isinstance(value, list):
                numbers = [float(v) for v in value]
                if not all(map(math.isfinite, numbers)):
                    raise ValueError
                return numbers
            raise ValueError
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(f"{where}: value {clip(value)} is not a {kind.replace('_', ' of ')}",
                          hint="fix the value's type") from exc
    return value


def _set(cfg: TrainingConfig, doc: Document, book: Rulebook, name: str, key_path: KeyPath, value: Any) -> None:
    if value is None:
        return
    param = book.parameters[name]
    coerced = _coerce(doc, key_path, param.type, value)
    problem = param.problem(coerced)
    if problem is not None:
        raise ConfigError(f"{doc.path}:{doc.line_of(key_path) or '?'}: key '{'.'.join(map(str, key_path))}': {problem}")
    cfg.values[name] = ConfigValue(coerced, ".".join(map(str, key_path)), doc.line_of(key_path))


def _naming(fmt: Format) -> MethodMapping:
    if fmt.method is None:
        raise ConfigError(f"format {fmt.id!r} has no `method` entry in rules/registry/formats.yaml")
    return fmt.method


def _cv(doc: Document, key: str, value: Any) -> ConfigValue:
    return ConfigValue(value, key, doc.line_of((key,)))


def _unset(name: str, kind: str, value: Any) -> bool:
    """Trainer spellings of 'not set': Axolotl's bf16: auto, Hugging Face's max_steps: -1."""
    if kind == "bool" and value == "auto":
        return True
    return name == "max_steps" and value == -1


def _read_mapped(doc: Document, book: Rulebook, cfg: TrainingConfig, fmt: Format) -> None:
    for name, param in book.parameters.items():
        keys = param.trainer_keys.get(fmt.trainer_keys or "")
        for key in [keys] if isinstance(keys, str) else (keys or []):
            value = doc.data.get(key)
            if value is not None and not _unset(name, param.type, value):
                _set(cfg, doc, book, name, (key,), value)
                break


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
                              hint="advisor configs hold advisor_format, model, method, peft and training")
    for key, value in training.items():
        name = ADVISOR_ALIASES.get(key, key)
        if name not in book.parameters:
            raise ConfigError(f"{doc.path}:{doc.line_of((under, key))}: unknown key '{under}.{key}'",
                              hint="`advisor rules list` shows the parameters")
        _set(cfg, doc, book, name, (under, key), value)
    for key in ("model", "method", "peft"):
        if doc.data.get(key) is not None:
            setattr(cfg, key, _cv(doc, key, str(doc.data[key])))


@reader("axolotl")
def _read_axolotl(doc: Document, book: Rulebook, cfg: TrainingConfig, fmt: Format) -> None:
    _read_mapped(doc, book, cfg, fmt)
    d = doc.data
    if d.get("lora_target_linear") and "lora_target_modules" not in cfg.values:
        cfg.values["lora_target_modules"] = ConfigValue(["all-linear"], "lora_target_linear",
                                                        doc.line_of(("lora_target_linear",)))
    if d.get("base_model"):
        cfg.model = _cv(doc, "base_model", str(d["base_model"]))
    naming = _naming(fmt)
    rl = d.get(naming.key or "")
    if rl:
        cfg.method = _cv(doc, naming.key or "", naming.named(str(rl)))
    else:
        cfg.method = ConfigValue(naming.default, naming.key or "", None)
    adapter = d.get("adapter")
    if adapter in ("lora", "qlora"):
        peft = "qlora" if adapter == "qlora" or d.get("load_in_4bit") else "lora"
        cfg.peft = _cv(doc, "adapter", peft)
    else:
        cfg.peft = ConfigValue("full", "adapter", doc.line_of(("adapter",)))


@reader("llama-factory")
def _read_llama_factory(doc: Document, book: Rulebook, cfg: TrainingConfig, fmt: Format) -> None:
    _read_mapped(doc, book, cfg, fmt)
    d = doc.data
    target = cfg.values.get("lora_target_modules")
    if target is not None and target.value in (["all"], ["all-linear"]):
        cfg.values["lora_target_modules"] = ConfigValue(["all-linear"], target.key, target.line)
    if d.get("model_name_or_path"):
        cfg.model = _cv(doc, "model_name_or_path", str(d["model_name_or_path"]))
    naming = _naming(fmt)
    method = naming.named(str(d.get(naming.key or "", naming.default)))
    loss = str(next((d[k] for k in _loss_keys(book, fmt) if d.get(k)), "")).lower()
    if loss in naming.from_loss.get(method, ()):
        method = loss  # e.g. ORPO, SimPO: a loss that is a method of its own
    cfg.method = _cv(doc, naming.key or "", method)
    ftype = str(d.get("finetuning_type", "lora")).lower()
    bits = d.get("quantization_bit")
    if bits is not None:
        line = doc.line_of(("quantization_bit",))
        cfg.values["load_in_4bit"] = ConfigValue(bits == 4, "quantization_bit", line)
        cfg.values["load_in_8bit"] = ConfigValue(bits == 8, "quantization_bit", line)
    peft = "full" if ftype in ("full", "freeze") else ("qlora" if bits == 4 else "lora")
    cfg.peft = _cv(doc, "finetuning_type", peft)


@reader("trl")
def _read_trl(doc: Document, book: Rulebook, cfg: TrainingConfig, fmt: Format) -> None:
    _read_mapped(doc, book, cfg, fmt)
    d = doc.data
    for key in ("model_name_or_path", "model", "base_model"):
        if isinstance(d.get(key), str):
            cfg.model = _cv(doc, key, d[key])
            break
    naming = _naming(fmt)
    loss = str(next((d[k] for k in _loss_keys(book, fmt) if d.get(k)), "")).lower()
    method = next((i.method for i in naming.infer if any(k in d for k in i.keys) or loss in i.loss_types),
                  naming.default)
    cfg.method = ConfigValue(method, "(inferred from the keys)", None)
    legacy = next((k for k in TRL_VLLM_SERVER_KEYS if k in d), None)
    if d.get("use_vllm") and "vllm_mode" not in cfg.values and legacy is not None:
        # TRL before colocate existed ran vLLM as a server on its own GPU (vllm_device picked it)
        cfg.values["vllm_mode"] = ConfigValue("server", legacy, doc.line_of((legacy,)))
    use_peft = bool(d.get("use_peft") or d.get("use_lora") or d.get("peft_config") or "lora_r" in d)
    if use_peft:
        peft = "qlora" if d.get("load_in_4bit") else "lora"
        key = next(k for k in ("use_peft", "use_lora", "peft_config", "lora_r") if k in d)
        cfg.peft = _cv(doc, key, peft)
    else:
        key = "use_lora" if "use_lora" in d else "use_peft"
        cfg.peft = ConfigValue("full", key, doc.line_of((key,)))


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


def check_config_format(fmt: str | None) -> None:
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"--config-format: unknown format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")


def read_config(path: Path, book: Rulebook, fmt: str | None = None) -> tuple[TrainingConfig, Document]:
    check_config_format(fmt)
    doc = read_document(path)
    fmt = fmt or detect_format(doc.data)
    cfg = TrainingConfig(path=path, format=fmt)
    READERS[fmt](doc, book, cfg, formats()[fmt])
    if formats()[fmt].parameters_under is None:  # advisor's own format states `sharding` as a parameter
        from advisor.configs.sharding import read_sharding

        read_sharding(doc, cfg)
    if cfg.method is not None and cfg.method.value not in METHODS:
        cfg.notes.append(f"method {cfg.method.value!r} is not in the rulebook: method-specific checks are skipped")
    return cfg, doc

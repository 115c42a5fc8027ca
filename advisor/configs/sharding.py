"""How a config shards: its `deepspeed` key (a JSON file beside it or in the working directory, a dict
inline, or a file a trainer ships, named alone; a named file that is not there is a ConfigError), its
`fsdp` / `fsdp_config` keys, or an accelerate launch config given beside it. The words and keys are
data (rules/registry/sharding.yaml); what each strategy divides is the memory model's
(rules/memory.yaml). The result is the `sharding`, `offload` and `world_size` parameters of the
TrainingConfig, each with the key it came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

from advisor.configs.document import ConfigError, Document, KeyPath, read_document
from advisor.configs.model import ConfigValue, TrainingConfig
from advisor.registries import Strategy, bundled_deepspeed, sharding_keys, strategies, strategy_named
from advisor.safeio import clip, clip_path

PARAMETERS = ("sharding", "offload", "world_size")  # what this module sets (rules/parameters.yaml)


def _first(data: dict[str, Any], role: str) -> tuple[str, Any] | None:
    for key in sharding_keys()[role]:
        if key in data and data[key] is not None:
            return key, data[key]
    return None


def _where(doc: Document, path: KeyPath) -> str:
    return f"{doc.path}:{doc.line_of(path) or '?'}: key '{'.'.join(map(str, path))}'"


def _strategy(word: Any, doc: Document, path: KeyPath) -> Strategy:
    found = strategy_named(str(word))
    if found is None:
        names = ", ".join(strategies())
        raise ConfigError(f"{_where(doc, path)}: value {clip(word)} is not a sharding strategy advisor knows",
                          hint=f"one of {names} (or the trainers' words for them: rules/registry/sharding.yaml)")
    return found


def _device_on(value: Any) -> bool:
    """An offload entry that moves something: {device: cpu} / "cpu" / "nvme", not none."""
    device = value.get("device") if isinstance(value, dict) else value
    return str(device).strip().lower() not in sharding_keys()["offload_device_none"]


def _put(cfg: TrainingConfig, doc: Document, name: str, value: Any, path: KeyPath) -> None:
    cfg.values[name] = ConfigValue(value, ".".join(map(str, path)), doc.line_of(path))


def _zero(zero: dict[str, Any], doc: Document, path: KeyPath) -> tuple[Strategy, list[str]]:
    """A DeepSpeed zero_optimization block (or accelerate's deepspeed_config): its stage and offload."""
    stage = _first(zero, "zero_stage")
    strategy = _strategy(stage[1], doc, (*path, stage[0])) if stage else strategies()["none"]
    offload = []
    for role, target in (("zero_offload_optimizer", "optimizer"), ("zero_offload_parameters", "parameters")):
        got = _first(zero, role)
        if got is not None and _device_on(got[1]):
            offload.append(target)
    return strategy, offload


def _candidates(doc: Document, target: Path) -> list[Path]:
    """Where a relative deepspeed path may be: beside the config, or in the directory the trainer is launched
    from (TrainingArguments opens the path as given, from the process's working directory)."""
    if target.is_absolute():
        return [target]
    return list(dict.fromkeys([doc.path.parent / target, Path.cwd() / target]))


def _deepspeed_file(doc: Document, target: Path) -> Path | None:
    return next((p for p in _candidates(doc, target) if p.is_file()), None)


def _unreadable(doc: Document, path: KeyPath, value: str, target: Path) -> NoReturn:
    """A named DeepSpeed file that is not there (or is a directory or a device): the trainer cannot read it
    either, and guessing no sharding would misjudge memory, so the config cannot be checked."""
    places = _candidates(doc, target)
    there = next((p for p in places if p.exists()), None)
    why = (f"{clip_path(there)} is {'a directory' if there.is_dir() else 'not a regular file'}" if there is not None
           else f"no such file ({' or '.join(clip_path(p) for p in places)})")
    raise ConfigError(f"{_where(doc, path)}: value {clip(value)}: {why}, and no DeepSpeed config a trainer ships "
                      "has that name (rules/registry/sharding.yaml bundled)",
                      hint="give the DeepSpeed JSON's path (relative to the config or the current directory)")


def _read_deepspeed(cfg: TrainingConfig, doc: Document, key: str, value: Any) -> None:
    path: KeyPath = (key,)
    if isinstance(value, dict):
        data, where = value, path
    elif isinstance(value, str) and value.strip():
        target = Path(value)
        found = _deepspeed_file(doc, target)
        if found is not None:
            try:
                data = json.loads(json.dumps(read_document(found).data))
            except ConfigError as exc:
                raise ConfigError(f"{_where(doc, path)}: {exc.message}",
                                  hint="the deepspeed key names a DeepSpeed JSON (zero_optimization, ...)") from exc
            where = path
        else:
            bundled = bundled_deepspeed().get(target.name)
            if bundled is None:
                _unreadable(doc, path, value, target)
            _put(cfg, doc, "sharding", strategies()[bundled.strategy].id, path)
            if bundled.offload:
                _put(cfg, doc, "offload", list(bundled.offload), path)
            return
    else:
        return
    zero_key = _first(data, "zero")
    if zero_key is None or not isinstance(zero_key[1], dict):
        _put(cfg, doc, "sharding", "none", where)
        return
    strategy, offload = _zero(zero_key[1], doc, (*where, zero_key[0]))
    _put(cfg, doc, "sharding", strategy.id, where)
    _check_offload(doc, strategy, offload, where)
    if offload:
        _put(cfg, doc, "offload", offload, where)


def _check_offload(doc: Document, strategy: Strategy, offload: list[str], path: KeyPath) -> None:
    bad = [o for o in offload if o not in strategy.offload]
    if bad:
        raise ConfigError(f"{_where(doc, path)}: {strategy.name} cannot offload {', '.join(bad)}",
                          hint=f"{strategy.id} offloads {', '.join(strategy.offload) or 'nothing'}")


def _read_fsdp(cfg: TrainingConfig, doc: Document, data: dict[str, Any], prefix: KeyPath = ()) -> bool:
    """HF / Axolotl `fsdp` words and `fsdp_config`; an accelerate launch config's fsdp_config."""
    words_at = _first(data, "fsdp")
    conf_at = _first(data, "fsdp_config")
    conf = conf_at[1] if conf_at is not None and isinstance(conf_at[1], dict) else {}
    words: list[str] = []
    if words_at is not None:
        raw = words_at[1]
        if raw is False or raw == "":
            words_at = None
        elif isinstance(raw, str):
            words = raw.replace(",", " ").split()
        elif isinstance(raw, list):
            words = [str(w) for w in raw]
    if words_at is None and not conf:
        return False
    path: KeyPath = (*prefix, words_at[0]) if words_at is not None else (*prefix, conf_at[0])  # type: ignore[index]
    strategy = strategies()["fsdp_full"]
    offload: list[str] = []
    offload_words = set(sharding_keys()["fsdp_offload_word"])
    for w in words:
        if w.lower() in offload_words:
            offload.append("parameters")
            continue
        found = strategy_named(w)
        if found is not None:
            strategy = found
    named = _first(conf, "fsdp_strategy")
    if named is not None:
        strategy = _strategy(named[1], doc, (*prefix, conf_at[0], named[0]))  # type: ignore[index]
    reshard = _first(conf, "fsdp_reshard")
    if reshard is not None and reshard[1] is False and strategy.id == "fsdp_full":
        strategy = strategies()["zero2"]  # FSDP2 without resharding after forward: SHARD_GRAD_OP
    off = _first(conf, "fsdp_offload")
    if off is not None and off[1] is True and "parameters" not in offload:
        offload.append("parameters")
    _put(cfg, doc, "sharding", strategy.id, path)
    _check_offload(doc, strategy, offload, path)
    if offload:
        _put(cfg, doc, "offload", offload, path)
    return True


def read_sharding(doc: Document, cfg: TrainingConfig) -> None:
    """The training config's own deepspeed / fsdp keys (a reader calls it after its own keys)."""
    ds = _first(doc.data, "deepspeed")
    if ds is not None:
        _read_deepspeed(cfg, doc, *ds)
        if "sharding" in cfg.values:
            return
    _read_fsdp(cfg, doc, doc.data)


def read_launch_config(path: Path) -> TrainingConfig:
    """An accelerate launch config (`accelerate launch --config_file`): sharding, offload, world size."""
    doc = read_document(path)
    cfg = TrainingConfig(path=path, format="accelerate")
    d = doc.data
    kind = _first(d, "launch_type")
    if kind is None:
        raise ConfigError(f"{path}: not an accelerate launch config (no key "
                          f"'{sharding_keys()['launch_type'][0]}')",
                          hint="give the file `accelerate config` wrote (e.g. recipes/accelerate_configs/zero3.yaml)")
    word = str(kind[1]).strip().lower()
    if word == "deepspeed":
        block = _first(d, "launch_deepspeed")
        file = block[1].get(sharding_keys()["launch_deepspeed_file"][0]) if block and isinstance(block[1], dict) else None
        if isinstance(file, str):
            _read_deepspeed(cfg, doc, block[0], file)  # type: ignore[index]
        elif block is not None and isinstance(block[1], dict):
            strategy, offload = _zero(block[1], doc, (block[0],))
            _put(cfg, doc, "sharding", strategy.id, (block[0],))
            _check_offload(doc, strategy, offload, (block[0],))
            if offload:
                _put(cfg, doc, "offload", offload, (block[0],))
    elif word == "fsdp":
        if not _read_fsdp(cfg, doc, d):
            _put(cfg, doc, "sharding", "fsdp_full", (kind[0],))
    else:
        found = strategy_named(word)
        _put(cfg, doc, "sharding", found.id if found is not None else "none", (kind[0],))
    processes = _first(d, "launch_processes")
    count = _count(doc, processes)
    if count is not None and processes is not None:
        # accelerate's num_processes counts every process on every machine (accelerate launch --num_processes)
        _put(cfg, doc, "world_size", count, (processes[0],))
    _count(doc, _first(d, "launch_machines"))
    return cfg


def _count(doc: Document, found: tuple[str, Any] | None) -> int | None:
    if found is None:
        return None
    value = found[1]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{_where(doc, (found[0],))}: value {clip(value)} is not a positive whole number",
                          hint="the number of processes (GPUs) or machines")
    return value


def merge_launch(cfg: TrainingConfig, launch: TrainingConfig) -> None:
    """The launch config fills what the training config leaves open (its own deepspeed / fsdp keys win)."""
    for name, value in launch.values.items():
        if name not in cfg.values:
            cfg.values[name] = ConfigValue(value.value, f"{launch.path.name}: {value.key}", value.line)
    cfg.notes.extend(launch.notes)

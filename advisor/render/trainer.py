"""Trainer-native configs: `advisor recommend --format axolotl | llama-factory | trl`.

Each value is written under the key the trainer's own reader takes it from: the same
`trainer_keys` (rules/parameters.yaml) advisor's config readers use, so `advisor validate` reads
the file back as that format with the same values. What is particular to a trainer (its method and
adapter keys, translated values, the keys it needs that advisor does not decide) is its format's
`write` entry in rules/registry/formats.yaml; which keys it accepts at a pinned release is
rules/registry/fields/<trainer>.json. A value the trainer has no key for is a warning, in the file
and on stderr, never dropped silently.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from advisor import __version__
from advisor.errors import AdvisorError
from advisor.output import yaml_scalar
from advisor.recommendation import ParameterValue, Recommendation
from advisor.registries import (
    TRL_SHARED_CLASSES,
    Fields,
    Format,
    Writer,
    formats,
    parsed_beside,
    placeholder,
    shared_classes,
    trainer_fields,
    trl_config_class,
    variant_trl,
)
from advisor.render.data import header_lines, value_comment

if TYPE_CHECKING:
    from advisor.rulebook.load import Rulebook

# The parameters of the sharding fact: written together as one `deepspeed` or `fsdp` value.
SHARDING_PARAMETERS = ("sharding", "offload")

@dataclass
class Entry:
    key: str  # dotted for a nested key (Axolotl's trl.beta)
    value: Any
    comment: str


@dataclass
class TrainerConfig:
    """A recommendation laid out in one trainer's keys."""

    format: Format
    fields: Fields
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # values the trainer cannot express
    notes: list[str] = field(default_factory=list)  # values the trainer expresses through others
    config_class: str | None = None  # TRL: the config class the file is parsed as
    shared_classes: tuple[str, ...] = TRL_SHARED_CLASSES  # TRL: the script's classes parsed beside it
    trainer_class: str | None = None  # TRL: a variant's own trainer (rules/variants.yaml trl), said in the header
    written: set[str] = field(default_factory=set)  # the parameters written under a key
    recommendation_warnings: list[str] = field(default_factory=list)  # the recommendation's own (memory, pins)
    recommendation_adapted: list[str] = field(default_factory=list)  # what was changed so the job fits the GPU
    job_comment: str | None = None  # `# advisor: job ...`: what validate must judge the file as, where its keys cannot say

    def add(self, key: str, value: Any, comment: str) -> None:
        clash = next((e for e in self.entries if e.key == key), None)
        if clash is not None:
            self.warnings.append(f"{key}: {yaml_scalar(value)} ({comment}) not written: the key already holds "
                                 f"{yaml_scalar(clash.value)} ({clash.comment})")
            return
        self.entries.append(Entry(key, value, comment))


def _allowed(fmt: Format, fields: Fields, config_class: str | None, shared: tuple[str, ...]) -> frozenset[str]:
    if config_class is None:
        return fields.keys
    return frozenset().union(fields.classes[config_class], *(fields.classes.get(c, ()) for c in shared))


def _choices(fields: Fields, config_class: str | None, key: str) -> list[Any] | None:
    table = fields.choices.get(config_class, {}) if config_class is not None else fields.choices
    values = table.get(key) if isinstance(table, dict) else None
    return list(values) if values is not None else None


def _variant_words(book: Rulebook, variant: str) -> list[str]:
    entry = book.variants.get(variant, {})
    return [variant, *entry.get("loss_types", ())]


def build(rec: Recommendation, fmt_id: str, book: Rulebook) -> TrainerConfig:
    fmt = formats()[fmt_id]
    writer = fmt.write
    if writer is None:
        raise AdvisorError(f"--format {fmt_id}: advisor reads this format but does not write it")
    fields = trainer_fields(writer.fields)
    task, model = rec.facts.get("task", {}), rec.facts.get("model", {})
    mid, peft = str(task.get("method")), str(task.get("peft"))
    variant = str(task.get("variant") or mid)
    who = f"{fields.name} {fields.version}"
    config_class = None
    own_trl = variant_trl(book.variants, mid, variant)
    trl_variant: dict[str, Any] = {}
    if fields.classes:
        trl_variant = own_trl  # TRL: written as that variant's own config
        config_class = trl_config_class(book.variants, mid, variant)
        if config_class not in fields.classes:
            known = ", ".join(sorted(c for c in fields.classes if c not in parsed_beside(writer, fields)))
            raise AdvisorError(f"--format {fmt_id}: {who} has no {config_class or 'config class'} to train "
                               f"{variant if trl_variant else mid}",
                               hint=f"its config classes: {known}; `--format yaml` writes advisor's own config")
    shared = shared_classes(writer, fields, config_class)
    out = TrainerConfig(fmt, fields, config_class=config_class, recommendation_warnings=list(rec.warnings),
                        recommendation_adapted=list(rec.adapted), shared_classes=shared, trainer_class=trl_variant.get("trainer"))
    allowed = _allowed(fmt, fields, config_class, shared)
    out.add(writer.model, model.get("pretrained") or model.get("hf_id") or model.get("name"), _model_comment(model))
    expressed = _write_method(out, writer, mid, variant, book, fields, config_class, who)
    peft_value = writer.peft_values.get(peft)
    if peft_value is not None:
        out.add(writer.peft_key, peft_value, f"peft {peft}")
    for key, value in writer.fixed.items():
        out.add(key, value, f"{fields.name} trains only with it set")
    # a format that hands its loss to a TRL config (Axolotl's trl:) writes a variant trained by that same
    # config (GSPO: GRPOConfig's loss_type grpo, importance_sampling_level sequence) under its own prefix
    passed = (writer.loss_choices.get(mid) or "").partition(":")[2]
    if trl_variant:
        _write_trl_variant(out, trl_variant, variant, book, rec, allowed)
    elif passed and own_trl.get("config") == passed and not expressed:
        loss_key = next(iter(_loss_keys(book, fmt, mid)), ("loss_type", False))[0]
        _write_trl_variant(out, own_trl, variant, book, rec, allowed, prefix=loss_key.rpartition(".")[0] + ".")
    elif not expressed and "loss_type" not in rec.parameters:
        _write_loss(out, fmt, book, variant, mid, allowed, fields, config_class)
    for name, pv in rec.parameters.items():
        if name not in SHARDING_PARAMETERS:
            _write_parameter(out, fmt, book, name, pv, allowed, mid)
    _write_sharding(out, rec, allowed)
    _note_world(out, rec)
    _warn_left_out(out, rec)
    placed: set[str] = set()
    for p in writer.placeholders:  # a method's own placeholder comes before the general one of its key
        if p.applies(mid, out.written) and p.key not in placed:
            placed.add(p.key)
            out.add(p.key, p.value, f"PLACEHOLDER: {p.why}; advisor does not choose it")
    return out


def _note_world(out: TrainerConfig, rec: Recommendation) -> None:
    """The GPU count the batch was sized for: no trainer key holds it (it is the launcher's), so a file run on
    one process would train a fraction of the effective batch and hold a full replica where shards were sized;
    the job comment carries it for validate (_job_comment)."""
    gpus = rec.gpus()
    if gpus > 1:
        out.notes.append(f"sized for {gpus} GPUs: launch {gpus} processes (accelerate launch --num_processes {gpus}, "
                         f"or torchrun --nproc_per_node {gpus} on one node); the effective batch counts all of them")


def _model_comment(model: dict[str, Any]) -> str:
    """Where the model's shapes came from, when that is not the model written (a registry match)."""
    loaded, shapes = model.get("pretrained"), model.get("hf_id")
    source = model.get("source", "model facts")
    if loaded and shapes and loaded != shapes:
        return f"the model you named; advisor sized it as {shapes} ({source})"
    return f"the base model ({source})"


def _write_method(out: TrainerConfig, writer: Writer, mid: str, variant: str, book: Rulebook, fields: Fields,
                  config_class: str | None, who: str) -> bool:
    """Write the method key; True when its word also names the loss variant (Axolotl's rl: ipo)."""
    flags = writer.method_flags.get(mid)
    if flags is not None:  # named by keys of its own (Axolotl's reward_model: true), not the method key
        for flag, value in flags.items():
            out.add(flag, value, f"method {mid}")
        return variant == mid
    if config_class is not None:  # TRL: the config class is the method
        if variant != mid and book.variants.get(variant, {}).get("method") != mid:
            out.warnings.append(f"variant {variant}: not a variant of {mid}")
        return False
    key = writer.method_key
    if key is None or mid in writer.method_omit:
        return variant == mid
    choices = _choices(fields, None, key)
    word = writer.method_values.get(mid, mid)
    variant_word = next((w for w in _variant_words(book, variant) if choices and w in choices), None)
    if variant != mid and variant_word is not None:
        out.add(key, variant_word, f"method {mid}, variant {variant}")
        return True
    if choices is not None and word not in choices:
        raise AdvisorError(f"--format {out.format.id}: {who} cannot train {mid}: its `{key}` is one of "
                           f"{', '.join(map(str, choices))}",
                           hint="`--format yaml` writes advisor's own config, or pick a trainer that trains it")
    out.add(key, word, f"method {mid}" + (f", trained as {word}" if word != mid else ""))
    # a word that hands its loss to a TRL config names no loss: TRL 1.16's GRPOConfig defaults to dapo, so
    # Axolotl's `rl: grpo` trains DAPO unless trl.loss_type says grpo
    return variant == mid and mid not in writer.loss_choices


def _write_trl_variant(out: TrainerConfig, trl: dict[str, Any], variant: str, book: Rulebook, rec: Recommendation,
                       allowed: frozenset[str], prefix: str = "") -> None:
    """A variant TRL trains with a trainer of its own: its loss_type and fixed settings in that config
    (``prefix``: where a format nests the TRL config's keys, Axolotl's ``trl.``)."""
    why = f"the {variant} loss ({book.variants[variant].get('summary', variant)}) as {trl['trainer']} trains it"
    if trl.get("loss_type") and "loss_type" not in rec.parameters:
        out.add(prefix + "loss_type", trl["loss_type"], why)
    for key, value in (trl.get("settings") or {}).items():
        if key in rec.parameters:
            continue  # a recommended (or pinned) value of the key is written as the parameter
        if out.fields.takes(prefix + key, allowed):
            out.add(prefix + key, value, why)
        else:
            out.warnings.append(f"variant {variant}: {key} {yaml_scalar(value)}: {trl['config']} has no such key")


def _write_loss(out: TrainerConfig, fmt: Format, book: Rulebook, variant: str, mid: str, allowed: frozenset[str],
                fields: Fields, config_class: str | None) -> None:
    """The variant's loss under the format's loss key: TRL's defaults differ from the methods' base
    losses (GRPOConfig.loss_type defaults to dapo in trl 1.16), so the loss is written explicitly."""
    words = _variant_words(book, variant)[1:]
    if not words:
        return
    key, listed = next(((k, is_list) for k, is_list in _loss_keys(book, fmt, mid) if fields.takes(k, allowed)),
                       (None, False))
    choices = _choices(fields, config_class, key) if key else None
    passed_to = fmt.write.loss_choices.get(mid) if fmt.write is not None else None
    if choices is None and passed_to is not None:  # the loss word goes on to a TRL config (Axolotl's trl.loss_type)
        trl_fields, _, trl_class = passed_to.partition(":")
        choices = _choices(trainer_fields(trl_fields), trl_class, "loss_type")
    word = next((w for w in words if choices is None or w in choices), None)
    if key is None or word is None:
        if variant != mid:
            out.warnings.append(f"variant {variant} (loss {' / '.join(words)}): {fields.name} {fields.version} has no "
                                f"key or value for it; the trainer's default loss applies")
        return
    out.add(key, [word] if listed else word, f"the {variant} loss ({book.variants[variant].get('summary', variant)})")


def _loss_keys(book: Rulebook, fmt: Format, mid: str) -> list[tuple[str, bool]]:
    """The keys the method's loss word may go under, and whether each holds a list: the format's own for the
    method (Axolotl's DPO: the list dpo_loss_type), else the loss_type parameter's."""
    own = fmt.write.loss_keys.get(mid) if fmt.write is not None else None
    return [own] if own is not None else [(k, False) for k in _keys(book, "loss_type", fmt)]


def _keys(book: Rulebook, name: str, fmt: Format) -> list[str]:
    keys = book.parameters[name].trainer_keys.get(fmt.trainer_keys or "") if name in book.parameters else None
    return [keys] if isinstance(keys, str) else list(keys or [])


def _in_keys(book: Rulebook, fmt: Format, out: TrainerConfig, allowed: frozenset[str], text: str) -> str:
    """``text`` with each parameter it names in snake_case spelt as this trainer's key for it, so a note in a
    TRL file says per_device_train_batch_size where advisor's own name is micro_batch_size."""
    def key(m: re.Match[str]) -> str:
        word = m.group(0)
        if word not in book.parameters:
            return word
        return next((k for k in _keys(book, word, fmt) if out.fields.takes(k, allowed)), word)
    return re.sub(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b", key, text)  # snake_case only: "optimizer step" is English


def _write_parameter(out: TrainerConfig, fmt: Format, book: Rulebook, name: str, pv: ParameterValue,
                     allowed: frozenset[str], mid: str) -> None:
    writer = fmt.write
    assert writer is not None
    comment = value_comment(pv)
    value = pv.value
    translation = next((t for t in writer.translate if t.parameter == name and t.applies(value, mid)), None)
    if translation is not None:
        if translation.key is None:  # expressed by leaving the key out (LLaMA-Factory without quantization_bit)
            if translation.warn:
                out.warnings.append(f"{name} {yaml_scalar(pv.value)} ({comment}): not written: {translation.why}")
            elif translation.why:
                out.notes.append(f"{name} {yaml_scalar(pv.value)}: {translation.why}")
            return
        key = translation.key
        value = translation.value if translation.has_value else value
        if translation.why:
            comment = f"{comment}; {translation.why}"
    else:
        key = next((k for k in _keys(book, name, fmt) if out.fields.takes(k, allowed)), "")
    if not key or not out.fields.takes(key, allowed):
        param = book.parameters.get(name)
        written_as = getattr(param, "written_as", None)
        shown = f"{name} {yaml_scalar(pv.value)}"
        if written_as:
            out.notes.append(f"{shown}: {_in_keys(book, fmt, out, allowed, written_as)}")
        elif name in writer.unsupported:
            out.warnings.append(f"{shown} ({comment}): not written: {writer.unsupported[name]}")
        else:
            out.warnings.append(f"{shown} ({comment}): {out.fields.name} {out.fields.version} has no key for it; "
                                "not written")
        return
    if isinstance(value, list) and fmt.lists == "comma":
        value = ",".join(map(str, value))
    out.add(key, value, comment)
    out.written.add(name)
    for c in writer.companions:
        if c.parameter == name and c.key is not None and c.applies(pv.value, mid) and out.fields.takes(c.key, allowed):
            out.add(c.key, c.value if c.has_value else value, f"{c.why} ({comment})")


def _warn_left_out(out: TrainerConfig, rec: Recommendation) -> None:
    """A parameter no rule could set for want of a fact (no GPU known: the micro-batch, bf16) has no line in
    the file, so the trainer's own default trains it; that default can break the job (Axolotl's micro-batch 1
    cannot hold a GRPO group), so the file says so. A note, not a warning: the text table lists the same
    facts under "Left out", and a run length left to the trainer (epochs beside max_steps) is harmless."""
    wanted: dict[str, list[str]] = {}
    for lo in rec.left_out:
        if lo.parameter not in rec.parameters:
            why = f"{lo.missing_fact} is unknown" + (f" (give {lo.flag})" if lo.flag else "")
            if why not in wanted.setdefault(lo.parameter, []):
                wanted[lo.parameter].append(why)
    for name, whys in wanted.items():
        out.notes.append(f"{name}: not written, as {'; '.join(whys)}: {out.fields.name} {out.fields.version}'s "
                         "default applies")


def _write_sharding(out: TrainerConfig, rec: Recommendation, allowed: frozenset[str]) -> None:
    """The sharding strategy and offload as TrainingArguments' `deepspeed` (an inline DeepSpeed config)
    or `fsdp` words, which Axolotl, LLaMA-Factory and TRL all read (rules/registry/sharding.yaml write)."""
    from advisor.registries import sharding_writes, strategy_named

    pv = rec.parameters.get("sharding")
    if pv is None:
        return
    strategy = strategy_named(str(pv.value))
    offload_pv = rec.parameters.get("offload")
    offload = [str(o) for o in (offload_pv.value if offload_pv is not None else None) or []]  # type: ignore[union-attr]
    comment = value_comment(pv) + (f"; offload {', '.join(offload)} ({value_comment(offload_pv)})"
                                   if offload and offload_pv is not None else "")
    if strategy is None or strategy.id == "none":
        out.notes.append(f"sharding {yaml_scalar(pv.value)}: DDP, each GPU a full replica (no deepspeed / fsdp key)")
        return
    table = sharding_writes()
    ds, fsdp = table["deepspeed"], table["fsdp"]
    if strategy.id in ds["stage"] and out.fields.takes("deepspeed", allowed):
        zero: dict[str, Any] = {"stage": ds["stage"][strategy.id]}
        zero.update({ds["offload"][o]: {"device": "cpu"} for o in offload if o in ds["offload"]})
        zero.update(ds.get("settings", {}).get(strategy.id, {}))
        out.add("deepspeed", {**ds["base"], "zero_optimization": zero}, comment)
    elif strategy.id in fsdp["words"] and out.fields.takes("fsdp", allowed):
        words = fsdp["words"][strategy.id]
        if offload and not (strategy.offload_together and set(offload) == set(strategy.offload)):
            out.warnings.append(f"offload {', '.join(offload)}: FSDP offloads parameters, gradients and optimizer "
                                "states together; written as full offload")
        out.add("fsdp", f"{words} {fsdp['offload_word']}" if offload else words, comment)
    else:
        out.warnings.append(f"sharding {strategy.id} ({comment}): {out.fields.name} {out.fields.version} has no key "
                            "for it; not written (set it in the launch config)")


# --- rendering ---------------------------------------------------------------------------

def _tree(entries: list[Entry]) -> dict[str, Any]:
    """Dotted keys as nested mappings, in first-seen order; a leaf is its Entry."""
    root: dict[str, Any] = {}
    for e in entries:
        node = root
        *parents, last = e.key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = e
    return root


def _emit(node: dict[str, Any], indent: str, lines: list[str]) -> None:
    for key, item in node.items():
        if isinstance(item, dict):
            lines.append(f"{indent}{key}:")
            _emit(item, indent + "  ", lines)
            continue
        value = item.value
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{indent}{key}:  # {item.comment}")
            for mapping in value:  # a list of mappings (Axolotl's datasets) in block style
                for i, (k, v) in enumerate(mapping.items()):
                    lines.append(f"{indent}  {'- ' if i == 0 else '  '}{k}: {yaml_scalar(v)}")
            continue
        lines.append(f"{indent}{key}: {yaml_scalar(value)}  # {item.comment}")


def render(tc: TrainerConfig) -> str:
    fields = tc.fields
    parsed_as = f" (parsed as {tc.config_class} + {' + '.join(tc.shared_classes)})" if tc.config_class else ""
    lines = [
        f"# {fields.name} config written by advisor {__version__} `recommend`: every value is a hypothesis from",
        "# advisor's rulebook, with its rule (code and id), the matching row and its confidence after it.",
        f"# Keys as {fields.name} {fields.version} takes them{parsed_as}.",
        f"# Replace every {placeholder()} before training.",
    ]
    if tc.trainer_class:
        lines.append(f"# Trainer: {tc.trainer_class}, which takes this {tc.config_class} (rules/variants.yaml trl).")
    commands = tc.format.write.commands if tc.format.write is not None else {}
    if tc.config_class and commands:
        command = commands.get(tc.config_class)
        trainer = (f"{tc.trainer_class} (trl.experimental.{tc.trainer_class.removesuffix('Trainer').lower()})"
                   if tc.trainer_class else "the trainer")
        lines.append(f"# Run: trl {command} --config FILE" if command else
                     f"# Run: {fields.name} {fields.version}'s CLI has no command for {tc.config_class}: parse this file "
                     f"with TrlParser(({tc.config_class}, {', '.join(tc.shared_classes)})) in a script that builds "
                     f"{trainer}")
    if tc.job_comment:
        lines.append(tc.job_comment)
    lines += header_lines(tc.recommendation_warnings, tc.recommendation_adapted)
    lines += [f"# WARNING: {w}" for w in tc.warnings]
    lines += [f"# note: {n}" for n in tc.notes]
    _emit(_tree(tc.entries), "", lines)
    return "\n".join(lines) + "\n"


def to_trainer_config(rec: Recommendation, *, fmt: str, book: Rulebook) -> str:
    """`recommend --format <trainer>`: the config in that trainer's keys. Its warnings also go to stderr,
    so that `-o FILE` does not hide them."""
    tc = build(rec, fmt, book)
    for warning in tc.warnings:
        sys.stderr.write(f"advisor: warning: {warning}\n")
    text = render(tc)
    tc.job_comment = _job_comment(rec, book, text, fmt)
    return render(tc) if tc.job_comment else text


def _job_comment(rec: Recommendation, book: Rulebook, text: str, fmt: str) -> str | None:
    """Read the file back as validate will, and name the job where its keys say another: RAFT is SFT to
    every trainer, and a TRL ORPOConfig has no key naming ORPO. Without it, validate would judge RAFT's
    quarter LR, or ORPO's, by the SFT or DPO bands, and --fix would undo it. A file sized for several GPUs
    says how many (gpus=N): no trainer key holds the count, and validate would size it on one GPU."""
    from pathlib import Path

    from advisor.configs.readers import read_config
    from advisor.registries import method as registry_method
    from advisor.validate import Overrides, job_comment, job_of

    task = rec.facts.get("task", {})
    method, variant, cycles = str(task.get("method")), str(task.get("variant") or task.get("method")), task.get("cycles")
    cfg, doc = read_config(Path(f"export.{fmt}.yaml"), book, fmt, text=text)
    got_method, _, got_variant, got_cycles = job_of(book, cfg, Overrides(), job_comment(doc))
    entry = registry_method(method)
    cycles = cycles if entry is not None and "cycles" in entry.facts else None  # RAFT's: no trainer has a key
    gpus = rec.gpus()
    if (got_method, got_variant or got_method, got_cycles) == (method, variant, cycles) and gpus == 1:
        return None
    words = [f"method={method}", *([f"variant={variant}"] if variant != method else []),
             *([f"cycles={cycles}"] if cycles else []), *([f"gpus={gpus}"] if gpus > 1 else [])]
    return (f"# The job, which {fmt}'s keys cannot say; `advisor validate` checks the file as it:\n"
            f"# advisor: job {' '.join(words)}")

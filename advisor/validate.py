"""validate: configs in, findings out. Each file is read and checked on its own, so one bad file
never hides the findings of the others."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advisor import exitcodes as codes
from advisor.configs.document import ConfigError, Document
from advisor.configs.fix import fixable
from advisor.configs.model import FROM_PATH, TrainingConfig
from advisor.configs.readers import read_config
from advisor.errors import AdvisorError, FactError
from advisor.facts.hardware import GpuFacts
from advisor.facts.mesh import DeviceMesh
from advisor.facts.model import resolve_model
from advisor.facts.task import METHODS, PEFTS, TaskFacts, check_variant, variant_of
from advisor.provenance import Source, Sourced, pick
from advisor.registries import formats
from advisor.rulebook.check import Finding, run_checks
from advisor.rulebook.load import Rulebook
from advisor.rulebook.resolve import recommend
from advisor.safeio import clip
from advisor.suggest import one_of

IGNORE_COMMENT = re.compile(r"#.*\badvisor:\s*ignore(?:\[(?P<codes>[A-Za-z0-9_, ]+)\])?")
# A whole-line comment naming the job a file is for, where its trainer has no key for it (RAFT in any
# trainer, ORPO in a TRL ORPOConfig, the GPU count a batch was sized for): `recommend --format` writes it,
# validate reads it under its flags.
JOB_COMMENT = re.compile(r"^\s*#\s*advisor:\s*job\b(?P<rest>.*)$")
JOB_KEYS = ("method", "variant", "peft", "cycles", "gpus")
JOB_COUNTS = {"cycles": "e.g. cycles=5", "gpus": "e.g. gpus=8"}  # the keys that hold a positive whole number
PROJECT_FILE = ".advisor.yaml"


@dataclass
class Selection:
    select: list[str] = field(default_factory=list)  # code prefixes; empty = all
    ignore: list[str] = field(default_factory=list)

    def wants(self, code: str) -> bool:
        if self.select and not any(code.startswith(p) for p in self.select):
            return False
        return not any(code.startswith(p) for p in self.ignore)


@dataclass
class FileReport:
    path: Path
    config: TrainingConfig | None = None
    document: Document | None = None
    findings: list[Finding] = field(default_factory=list)
    silenced: int = 0
    error: str | None = None
    # the job the checks ran for: model, method and peft, the flag's over the config's (Overrides.job)
    job: dict[str, Sourced | None] = field(default_factory=dict)
    variant: str | None = None  # the loss variant the checks read (rl: orpo, loss_type dpo_norm), when not the method's own
    writes: set[tuple[str, str]] = field(default_factory=set)  # (code, parameter) that --fix would write


def job_comment(doc: Document) -> dict[str, Sourced]:
    """The file's `# advisor: job method=raft cycles=5` line, if it has one (a bad one is a ConfigError)."""
    for number, text in enumerate(doc.text.splitlines(), 1):
        m = JOB_COMMENT.match(text)
        if m is None:
            continue
        out: dict[str, Sourced] = {}
        for word in m.group("rest").split():
            key, eq, value = word.partition("=")
            where = f"{doc.path}:{number}: '# advisor: job'"
            if key not in JOB_KEYS or not eq or not value:
                raise ConfigError(f"{where} has {clip(word)}", hint=f"key=value words, keys: {', '.join(JOB_KEYS)}")
            # isascii: str.isdigit holds for '²', which int() refuses; a count of 100 digits is no count
            if key in JOB_COUNTS and not (value.isascii() and value.isdigit() and len(value) < 100 and int(value) > 0):
                raise ConfigError(f"{where} {key}={clip(value)} is not a positive whole number", hint=JOB_COUNTS[key])
            out[key] = Sourced(int(value) if key in JOB_COUNTS else value.lower(), Source.CONFIG,
                               "the '# advisor: job' comment", number)
        return out
    return {}


@dataclass(frozen=True, eq=False)
class Overrides:
    """What the command line says about the job; provenance.PRECEDENCE puts it above the config."""

    model: str | None = None
    method: str | None = None
    variant: str | None = None
    peft: str | None = None
    cycles: int | None = None
    config_format: str | None = None
    gpus: int | None = None  # --gpus: the world size, over the launch config's num_processes
    sharding: dict[str, Any] = field(default_factory=dict)  # --sharding / --offload (options.sharding_flags)
    launch: TrainingConfig | None = None  # --launch-config, read by advisor.configs.sharding

    def job(self, cfg: TrainingConfig, name: str, comment: dict[str, Sourced] | None = None) -> Sourced | None:
        """The job's model, method, peft, variant, cycles or gpus: the flag's, else the file's job comment (it
        names what the trainer's keys cannot), else the config's (by provenance.PRECEDENCE)."""
        flag = getattr(self, name)
        return pick(Sourced(flag, Source.FLAG, f"--{name}") if flag is not None else None,
                    (comment or {}).get(name), getattr(cfg, name, None))


def own_keys(book: Rulebook, fmt: str) -> dict[str, list[str]]:
    """Each parameter's keys in a format (rules/registry/formats.yaml, rules/parameters.yaml trainer_keys)."""
    spec = formats()[fmt]
    if spec.parameters_under is not None:
        return {name: [name] for name in book.parameters}
    out: dict[str, list[str]] = {}
    for name, param in book.parameters.items():
        keys: str | list[str] = param.trainer_keys.get(spec.trainer_keys or "", [])
        out[name] = [keys] if isinstance(keys, str) else list(keys)
    return out


def default_keys(book: Rulebook, fmt: str) -> dict[str, str]:
    under = formats()[fmt].parameters_under
    keys = own_keys(book, fmt)
    return {name: (f"{under}.{name}" if under is not None else (k[0] if k else name)) for name, k in keys.items()}


def _silenced(doc: Document, finding: Finding) -> bool:
    if finding.line is None:
        return False
    m = IGNORE_COMMENT.search(doc.source_line(finding.line))
    if m is None:
        return False
    codes = m.group("codes")
    return codes is None or finding.code in {c.strip() for c in codes.split(",")}


def job_of(book: Rulebook, cfg: TrainingConfig, over: Overrides,
           comment: dict[str, Sourced]) -> tuple[str | None, str, str | None, int | None]:
    """The method (as the config names it), peft, variant and cycles a config is checked as."""
    method = getattr(over.job(cfg, "method", comment), "value", None)
    peft = getattr(over.job(cfg, "peft", comment), "value", "lora")
    if peft not in PEFTS:
        peft = "lora"
    known = method if method in METHODS else None
    named = over.job(cfg, "variant", comment)
    if named is not None:
        try:
            variant = check_variant(book.variants, known, str(named.value))
        except FactError as exc:
            if named.source is Source.FLAG:  # the user's own --variant: a usage error
                raise
            # the report names the file; the line is the job comment's, and the flag's wording is not the file's
            raise ConfigError(f"line {named.line}: {exc.message.removeprefix('--variant: ')}", hint=exc.hint) from exc
    else:
        loss = cfg.values["loss_type"].value if "loss_type" in cfg.values else None
        variant = variant_of(book.variants, known, loss)
    return method, peft, variant, getattr(over.job(cfg, "cycles", comment), "value", None)


def _facts(book: Rulebook, cfg: TrainingConfig, gpu: GpuFacts, over: Overrides,
           comment: dict[str, Sourced] | None = None) -> dict[str, Any]:
    facts: dict[str, Any] = dict(gpu.as_facts())
    spec = over.job(cfg, "model")
    if spec is not None:
        try:
            facts.update(resolve_model(str(spec.value), book).as_facts())
        except FactError:
            if spec.source is Source.FLAG:  # the user's own flag: a usage error, not a config finding
                raise
    else:  # VCF007 says where the file would name it, not that a model is unknown (VCF001)
        spec_of = formats()[cfg.format]
        keys = [f"'{k}'" for k in spec_of.model_keys]
        said = f"{', '.join(keys[:-1])} or {keys[-1]}" if len(keys) > 1 else "".join(keys)
        facts["task.config_model_where"] = (f"{spec_of.name} configs name it by {said}" if keys
                                            else f"{spec_of.name} records none")
    method, peft, variant, cycles = job_of(book, cfg, over, comment or {})
    known = method if method in METHODS else None
    try:
        task = TaskFacts(method=known, peft=peft, cycles=cycles, variant=variant)
    except FactError as exc:
        named = over.job(cfg, "cycles", comment)
        if named is None or named.source is Source.FLAG:  # the user's own --cycles: a usage error
            raise
        # the job comment's cycles: this file cannot be checked, the others still are
        raise ConfigError(f"{cfg.path}:{named.line}: '# advisor: job' cycles={named.value}: "
                          f"{exc.message.removeprefix('--cycles: ')}", hint="e.g. cycles=5") from exc
    facts.update(task.as_facts())
    facts["task.config_format"] = cfg.format
    mesh = DeviceMesh.of({name: v.value for name, v in cfg.values.items()})
    if mesh.stated:  # VCF015 checks that the GPUs fill it
        facts.update({"task.config_mesh": mesh_words(cfg), "task.config_mesh_gpus": mesh.size,
                      "task.config_mesh_exact": mesh.exact})
    if method is not None and known is None:
        facts["task.config_method"] = str(method)  # VCF002 names it
    if "optimizer" in cfg.values:
        entry = book.optimizers.get(str(cfg.values["optimizer"].value).lower(), {})
        facts["task.optimizer_lr_rules"] = bool(entry.get("lr_rules"))  # the rulebook's LR rules are AdamW's
    return facts


def as_trained(cfg: TrainingConfig, facts: dict[str, Any]) -> dict[str, Any]:
    """The config's values, and for each key it omits what its trainer trains with (formats.yaml
    `defaults`: Axolotl does not checkpoint unless told, TRL's lora_alpha is 32), not advisor's advice;
    over both, what the trainer derives from other keys (formats.yaml `evaluation`: Axolotl's eval_strategy)."""
    stated = {name: v.value for name, v in cfg.values.items()}
    return {**formats()[cfg.format].defaults_for(str(facts.get("task.variant")), stated), **stated, **cfg.derived}


def _memory_facts(book: Rulebook, cfg: TrainingConfig, gpu: GpuFacts, facts: dict[str, Any],
                  rec: Any, over: Overrides) -> dict[str, Any]:
    """The memory model at the config's own values (check VSQ002 reads them), under the sharding
    the flags give, else the config's (provenance.PRECEDENCE), and omitted keys as its trainer has them."""
    from advisor.facts.catalogue import FLAG_PARAMETERS
    from advisor.facts.job import JobFacts
    from advisor.memory.plan import config_facts

    model = resolve_model(str(facts["model.name"]), book)
    task = TaskFacts(method=facts["task.method"], peft=facts["task.peft"])
    values = as_trained(cfg, facts)
    values.update({FLAG_PARAMETERS[flag]: value for flag, value in over.sharding.items()})
    if over.sharding:  # the flags' pair with the config's: an offload its strategy refuses is a usage error
        from advisor.memory.estimate import sharding_of

        sharding_of(values)
    return config_facts(book, JobFacts(model=model, gpu=gpu, task=task), rec, values,
                        spell=in_config_keys(book, cfg.format, str(facts["task.method"])))


def in_config_keys(book: Rulebook, fmt: str, method: str) -> Callable[[dict[str, Any]], str]:
    """What would fit, said in the config's own keys where validate takes no such flag (`max_length: 1024` in
    a TRL file, `gradient_checkpointing: true`); --gpu, --gpus, --sharding and --offload are validate's flags
    too, and another adapter is what `advisor recommend --peft` writes."""
    from advisor.memory.fit import cli_words
    from advisor.output import yaml_scalar
    from advisor.registries import method as registry_method

    keys = default_keys(book, fmt)
    entry = registry_method(method)
    # an online method's sequence is prompt + completion, capped by two keys (or one, prompts uncapped)
    seq = "prompt + completion" if entry is not None and entry.generates else keys.get("max_seq_length", "max_seq_length")

    def spell(changes: dict[str, Any]) -> str:
        flags = {k: v for k, v in changes.items() if k in ("gpu", "gpus", "sharding", "offload")}
        words = [cli_words(flags)] if flags else []
        words += [f"{seq if k == 'max_seq_length' else keys.get(k, k)}: {yaml_scalar(v)}" for k, v in changes.items()
                  if k not in flags and k != "peft"]
        if "peft" not in changes:
            return " ".join(words)
        return f"`advisor recommend --peft {changes['peft']}` writes it" + (f", with {' '.join(words)}" if words else "")

    return spell


def world_gpu(cfg: TrainingConfig, gpu: GpuFacts, over: Overrides,
              comment: dict[str, Sourced] | None = None) -> tuple[GpuFacts, bool]:
    """The GPUs the config runs on, and whether anything but the hardware said how many: --gpus, else its
    launch config's num_processes (--launch-config), else the `# advisor: job gpus=N` that `recommend --gpus N
    --format` writes (no trainer key holds the count), else the least its Axolotl device mesh runs on, else
    the hardware's. Where the mesh has GPUs train on the same data (tensor, context parallel), the count the
    checks and the memory model read is the data-parallel world, those GPUs over that share."""
    from dataclasses import replace

    mesh = DeviceMesh.of({name: v.value for name, v in cfg.values.items()})
    if over.gpus is None:
        said = world_said(cfg, comment)
        if said is None and mesh.stated:
            said = (mesh.size, f"the least its device mesh runs on: {mesh_words(cfg)}")
        if said is None:
            return gpu, False
        label = "" if "world_size" in cfg.values else "count: "
        gpu = replace(gpu, count=said[0], source=f"{gpu.source}; {label}{said[1]}", count_assumed=False)
    return gpu.model_parallel_over(mesh.model_parallel), True


def mesh_words(cfg: TrainingConfig) -> str:
    """'dp_shard_size 2 x context_parallel_size 2 x tensor_parallel_size 2 = 8 GPUs', in the file's keys."""
    return DeviceMesh.of({name: v.value for name, v in cfg.values.items()}).words(
        lambda name: cfg.values[name].key if name in cfg.values else name)


def world_said(cfg: TrainingConfig, comment: dict[str, Sourced] | None = None) -> tuple[int, str] | None:
    """The data-parallel GPUs the file itself states, and where: world_size, else the job comment's gpus=N."""
    world = cfg.values.get("world_size")
    if world is not None:
        return int(world.value), world.describe()
    named = (comment or {}).get("gpus")
    if named is not None:
        return int(named.value), f"the '# advisor: job' comment's gpus={named.value} (line {named.line})"
    return None


def lr_inputs(book: Rulebook) -> set[str]:
    """The parameters the learning-rate rules read (params.X): a config that states one is judged at it."""
    names = {n.split(".", 1)[1] for r in book.rules_for("learning_rate") if r.kind != "check" for n in r.reads()
             if n.startswith("params.")}
    return names - {"learning_rate"}


def _judge_at_config(book: Rulebook, cfg: TrainingConfig, facts: dict[str, Any], rec: Any,
                     world_known: bool = False) -> None:
    """The LR (and its published span) as the rules give it for the inputs the config states (its
    max_steps; its effective_batch_size where its format has one): a recipe's 15,000 steps are not the
    seed's default 5,000. A per-device micro-batch is the effective batch only with the world size:
    micro x accumulation x GPUs when --gpus or the launch config says how many."""
    trained = as_trained(cfg, facts)  # an omitted lora_alpha is TRL's 32, LLaMA-Factory's 2 x lora_rank
    pins = {name: trained[name] for name in sorted(lr_inputs(book)) if name in trained}
    micro = cfg.values.get("micro_batch_size")
    if (world_known and micro is not None and "effective_batch_size" in lr_inputs(book)
            and "effective_batch_size" not in pins):
        accumulation = cfg.values.get("gradient_accumulation_steps")
        pins["effective_batch_size"] = (int(micro.value) * int(accumulation.value if accumulation else 1)
                                        * int(facts.get("gpu.count", 1)))
    if not pins:
        return
    try:
        at_config = recommend(book, facts, {}, pins)
    except AdvisorError:
        return  # a config value the rules cannot take: judged at the rules' own inputs, as before
    for name in ("learning_rate", "learning_rate_published"):
        if name in at_config.parameters:
            rec.parameters[name] = at_config.parameters[name]


def _read_as_findings(book: Rulebook, cfg: TrainingConfig) -> list[Finding]:
    """One finding per value the reader took as the trainer does, under the check the reader names
    (rules/config.yaml: VCF003, or VCF004 for a key given twice with different values)."""
    return [Finding(code=rule.code, rule=rule.id, severity=rule.severity, parameter=rule.parameter, key=r.key,
                    line=r.line, message=r.message, expected=rule.expected, rename=r.rename)
            for r in cfg.read_as if (rule := book.rules.get(r.rule)) is not None]


def validate_file(path: Path, book: Rulebook, gpu: GpuFacts, over: Overrides, selection: Selection,
                  text: str | None = None) -> FileReport:
    """One config's findings; ``text``: its content when it is not on disk (recommend's own output, read back)."""
    report = FileReport(path=path)
    try:
        cfg, doc = read_config(path, book, over.config_format, text=text)
    except ConfigError as exc:
        report.error = str(exc)
        return report
    if over.launch is not None:
        from advisor.configs.sharding import merge_launch

        merge_launch(cfg, over.launch)
    report.config, report.document = cfg, doc
    try:
        comment = job_comment(doc)
        report.job = {name: over.job(cfg, name, comment) for name in ("model", "method", "peft")}
        gpu, world_known = world_gpu(cfg, gpu, over, comment)
        facts = _facts(book, cfg, gpu, over, comment)
        if facts.get("task.variant") not in (None, facts.get("task.method")):
            report.variant = str(facts["task.variant"])
    except ConfigError as exc:  # the file's own job comment
        report.error = str(exc)
        return report
    rec = recommend(book, facts, {}, {}) if "task.method" in facts else None
    if rec is not None:
        _judge_at_config(book, cfg, facts, rec, world_known)
        if facts.get("task.optimizer_lr_rules") is False:  # AdamW's bands: no judge of another optimizer's LR
            for name in ("learning_rate", "learning_rate_published"):
                rec.parameters.pop(name, None)
    if rec is not None and "gpu.usable_gib" in facts and "model.name" in facts:
        facts.update(_memory_facts(book, cfg, gpu, facts, rec, over))
    keys = default_keys(book, cfg.format)
    told = any(getattr(over, name) is not None or name in comment for name in ("method", "variant"))
    for finding in [*run_checks(book, cfg, facts, rec, keys.__getitem__, as_trained(cfg, facts)),
                    *_read_as_findings(book, cfg)]:
        if not selection.wants(finding.code) or (told and finding.rule == FROM_PATH):
            continue  # --method / --variant (or the job comment) decide what the path would have
        if _silenced(doc, finding):
            report.silenced += 1
            continue
        report.findings.append(finding)
    report.findings.sort(key=lambda f: (f.line or 0, f.code))
    report.writes = {(f.code, f.parameter) for f in fixable(report.findings, cfg, own_keys(book, cfg.format), keys)}
    return report


def load_project_settings(start: Path) -> dict[str, Any]:
    """The nearest .advisor.yaml in ``start`` or a parent directory (select, ignore, fail-on)."""
    from advisor.configs.document import read_document

    for directory in [start, *start.parents]:
        candidate = directory / PROJECT_FILE
        if candidate.is_file():
            doc = read_document(candidate)
            unknown = set(doc.data) - {"select", "ignore", "fail-on", "fail_on"}
            if unknown:
                key = sorted(unknown)[0]
                raise AdvisorError(f"{candidate}:{doc.line_of((key,)) or '?'}: unknown key '{key}'",
                                   hint="an .advisor.yaml holds select, ignore and fail-on")
            return {**doc.data, "_file": str(candidate), "_lines": {k: doc.line_of((k,)) for k in doc.data}}
    return {}


@dataclass
class ValidationRun:
    """What `advisor validate` found: one report per file, and the threshold its exit code follows."""

    reports: list[FileReport]
    book: Rulebook
    fail_on: str
    selection: Selection = field(default_factory=lambda: Selection())  # the codes checked (--fix checks its output at them)

    def exit_code(self) -> int:
        if any(r.error for r in self.reports):  # a file that could not be read is bad input
            return int(codes.Exit.BAD_INPUT)
        return codes.exit_code((f.severity for r in self.reports for f in r.findings), self.fail_on)


def _codes(items: list[str], book: Rulebook, where: str) -> list[str]:
    """The codes or prefixes ``items`` name (comma-separated too); one that no rule's code starts with is a
    usage error, since it would select nothing (or ignore nothing) without a word."""
    out = [c.strip().upper() for item in items for c in item.split(",") if c.strip()]
    known = {rule.code for rule in book.rules.values() if rule.code}
    for code in out:
        if not any(k.startswith(code) for k in known):
            raise AdvisorError(f"{where}: unknown rule code or prefix {clip(code)}: no rule's code starts with it",
                               hint="`advisor rules list` shows the codes")
    return out


def _project_where(project: dict[str, Any], key: str) -> str:
    return f"{project['_file']}:{project['_lines'].get(key) or '?'}: key '{key}'"


def _project_codes(project: dict[str, Any], key: str, book: Rulebook) -> list[str]:
    """.advisor.yaml's select / ignore: a code, a comma-separated string of them, or a list of codes."""
    value = project.get(key)
    if value is None:
        return []
    where = _project_where(project, key)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return _codes(value, book, where)
    if not isinstance(value, str):
        raise AdvisorError(f"{where}: value {clip(value)} is not a rule code or a list of codes",
                           hint=f"e.g. {key}: [VLR, VOP003] (`advisor rules list` shows the codes)")
    return _codes([value], book, where)


def _project_fail_on(project: dict[str, Any]) -> str | None:
    key = next((k for k in ("fail-on", "fail_on") if project.get(k) is not None), None)
    if key is None:
        return None
    value = project[key]
    if not isinstance(value, str) or value not in codes.FAIL_ON:
        raise AdvisorError(f"{_project_where(project, key)}: value {clip(value)} is not a level",
                           hint=f"one of {', '.join(codes.FAIL_ON)}")
    return value


def validate_paths(paths: list[Path], book: Rulebook, hw: GpuFacts, over: Overrides, *, select: list[str],
                   ignore: list[str], fail_on: str | None, project_dir: Path) -> ValidationRun:
    """Validate ``paths``; the project's .advisor.yaml fills select / ignore / fail-on the flags leave open."""
    project = load_project_settings(project_dir)
    chosen = _project_fail_on(project)  # a bad one is refused even under --fail-on
    level = codes.check_fail_on(fail_on or chosen or "error")
    from_project = _project_codes(project, "select", book)
    selection = Selection(select=_codes(select, book, "--select") if select else from_project,
                          ignore=[*_project_codes(project, "ignore", book), *_codes(ignore, book, "--ignore")])
    for flag, value, known in (("--method", over.method, METHODS), ("--peft", over.peft, PEFTS)):
        if value is not None and value not in known:
            raise AdvisorError(f"{flag}: unknown value {value!r}", hint=one_of(value, known))
    return ValidationRun([validate_file(path, book, hw, over, selection) for path in paths], book, level, selection)


FIX_ROUNDS = 5  # not-knowledge: how often --fix re-checks its own output (one fix can expose another)


def write_fixed(book: Rulebook, report: FileReport, target: Path,
                again: Callable[[Path], FileReport] | None = None) -> int:
    """--fix: write ``report``'s config again with its fixable findings applied; the number applied. With
    ``again`` (validate_file at the same flags) the fixed text is checked again and fixed until nothing
    fixable is left: VSQ002's smaller micro-batch can leave a generation batch VPM004 must round."""
    import tempfile

    from advisor.configs.fix import apply_fixes, rename_keys
    from advisor.output import write_atomic

    cfg, doc = report.config, report.document
    assert cfg is not None and doc is not None  # only a config that was read has findings to fix
    keys = default_keys(book, cfg.format)
    fixes = fixable(report.findings, cfg, own_keys(book, cfg.format), keys)
    renames = {f.key: f.rename for f in report.findings if f.rename is not None}
    text = rename_keys(apply_fixes(doc, cfg, fixes, keys), doc.syntax, renames)
    applied = len(fixes) + len(renames)
    if again is not None:
        with tempfile.TemporaryDirectory(prefix="advisor-fix-") as scratch:
            for _ in range(FIX_ROUNDS - 1):
                probe = Path(scratch) / report.path.name
                probe.write_text(text, encoding="utf-8")
                rerun = again(probe)
                if rerun.config is None or rerun.document is None:
                    break
                more = fixable(rerun.findings, rerun.config, own_keys(book, cfg.format), keys)
                if not more:
                    break
                text, applied = apply_fixes(rerun.document, rerun.config, more, keys), applied + len(more)
    write_atomic(target, text)
    return applied

"""ProbePlan: everything one probe run needs, resolved from a config or a recommendation.

No torch here: a plan is built (and bad input refused, exit code 2) before anything heavy loads.
Each value records where it came from: a flag, the config's key and line, or the rule that
recommended it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from advisor import registries
from advisor.errors import AdvisorError, FactError
from advisor.facts.catalogue import FLAG_PARAMETERS
from advisor.facts.hardware import GpuFacts, resolve_gpu
from advisor.facts.job import JobFacts
from advisor.facts.model import ModelFacts, facts_from_config, read_config_json, registry_names, resolve_model
from advisor.facts.task import METHODS, PEFTS, TaskFacts, check_variant, variant_of
from advisor.provenance import Source, Sourced, pick
from advisor.rulebook.load import Rulebook
from advisor.suggest import one_of

DEFAULT_STEPS = 30  # not-knowledge: probe length; the loss rules need at least 20 logged steps
DEFAULT_EVAL_SEQUENCES = 8  # not-knowledge: held-out sequences per evaluation (cost bound)
# not-knowledge: transformers' own default when nothing sets the scheduler
# (TrainingArguments.lr_scheduler_type defaults to "linear"); the rulebook's opt-scheduler normally sets it.
TRANSFORMERS_DEFAULT_SCHEDULER = "linear"
SQUEEZED_WARMUP_MAX = 0.5  # not-knowledge: a warmup squeezed into a short schedule keeps a decay phase
DEVICES = ("auto", "cpu", "cuda")
# Loss names the probe takes as a method of the same batch shape (ORPO, SimPO, ... as DPO).
PAIR_METHODS = registries.method_aliases()
# transformers' schedulers that need no extra arguments.
SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
              "inverse_sqrt")
# Optimizers the probe builds, by Hugging Face `optim` name -> the implementation it uses
# (rules/registry/optimizers.yaml; the built-in registry: the probe's code builds each implementation).
OPTIMIZERS = {o.id: o.implementation for o in registries.optimizers().values() if o.implementation}


class ProbeInputError(AdvisorError):
    """A probe setting that cannot be used (exit code 2)."""


@dataclass(frozen=True)
class ModelSource:
    """Where the model comes from. ``config`` (a config.json dict) is set for --random-init."""

    spec: str
    kind: str  # registry | local | config | hub
    load_from: str  # a local directory or a hub id (weights); a config.json path for kind config
    random_init: bool
    config: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def cache_key(self) -> tuple[str, str, bool]:
        return (self.kind, self.load_from, self.random_init)


@dataclass(frozen=True)
class DataSpec:
    path: str | None  # None: the built-in corpus
    packing: bool = True
    eval_sequences: int = DEFAULT_EVAL_SEQUENCES


def setting(parameter: str | None = None, trial: bool = False) -> dict[str, Any]:
    """The metadata of a ProbePlan field that is a training setting: every sweep trial shares it
    unless ``trial`` (a trial's own LR, steps and seed); ``parameter`` names its rulebook parameter."""
    return {"setting": True, "parameter": parameter, "trial": trial}


@dataclass(frozen=True)
class ProbePlan:
    model: ModelSource
    facts: ModelFacts
    gpu: GpuFacts
    method: str = field(metadata=setting())  # the rulebook's method (sft | dpo | grpo | ppo | raft)
    peft: str = field(metadata=setting())  # lora | qlora | full
    learning_rate: float = field(metadata=setting(parameter="learning_rate", trial=True))
    steps: int = field(metadata=setting(trial=True))
    seed: int = field(metadata=setting(trial=True))
    micro_batch_size: int = field(metadata=setting(parameter="micro_batch_size"))
    gradient_accumulation_steps: int = field(metadata=setting(parameter="gradient_accumulation_steps"))
    seq_len: int = field(metadata=setting(parameter="max_seq_length"))
    lr_scheduler_type: str = field(metadata=setting())
    warmup_ratio: float = field(metadata=setting())  # of the schedule's steps (the full run's warmup share)
    max_grad_norm: float | None = field(metadata=setting())  # None: no clipping (the norm is still measured)
    optimizer: str = field(metadata=setting(parameter="optimizer"))
    adam_beta1: float | None = field(metadata=setting())  # None: the optimizer's own default
    adam_beta2: float | None = field(metadata=setting())
    adam_epsilon: float | None = field(metadata=setting())
    weight_decay: float = field(metadata=setting())
    lora_rank: int = field(metadata=setting(parameter="lora_rank"))
    lora_alpha: int = field(metadata=setting(parameter="lora_alpha"))
    lora_dropout: float = field(metadata=setting())
    lora_target_modules: tuple[str, ...] = field(metadata=setting())
    gradient_checkpointing: bool = field(metadata=setting(parameter="gradient_checkpointing"))
    bf16: bool = field(metadata=setting(parameter="bf16"))
    sequences_per_example: int = field(metadata=setting())  # DPO: chosen + rejected = 2
    data: DataSpec
    device: str = field(default="auto", metadata=setting())
    max_memory_gb: float | None = field(default=None, metadata=setting())
    full_run_steps: int | None = None
    full_run_steps_source: str = ""
    # The steps the LR schedule spans: the full run's, so the probe trains its first `steps` steps
    # at the LRs the full run will use; None: the probe's own steps (a short experiment, as the sweep runs).
    schedule_steps: int | None = None
    warmup_steps_given: int | None = None  # the config's warmup_steps (wins over the ratio, as in transformers)
    method_given: str = ""  # the config's own word (orpo, ...) when it differs from method
    config_path: str | None = None
    config_format: str | None = None
    sources: dict[str, Sourced] = field(default_factory=dict, compare=False, hash=False)
    notes: tuple[str, ...] = ()
    # the full run's GPUs when the config names more than one (world_size, `# advisor: job gpus=N`), said once:
    # the probe trains one GPU's share of the step, and the count only enters the full run's step count
    single_gpu_note: str | None = None
    params: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # The method's own knobs the trainer's config takes (beta, loss_type, num_generations, temperature, ...):
    # every rulebook parameter a flag, pin, config or rule sets, by its Hugging Face / TRL key.
    settings: dict[str, Sourced] = field(default_factory=dict, compare=False, hash=False)
    setting_keys: dict[str, tuple[str, ...]] = field(default_factory=dict, compare=False, hash=False)  # hf keys
    variant: str | None = None  # the loss variant (rules/variants.yaml) the method word or loss_type names
    reward: str | None = field(default=None, metadata=setting())  # --reward module:function (RL probes)

    def with_(self, **changes: Any) -> ProbePlan:
        """A copy with some values changed (learning_rate, steps, seed, micro_batch_size, ...)."""
        unknown = sorted(set(changes) - set(self.__dataclass_fields__))
        if unknown:
            raise ProbeInputError(f"ProbePlan has no field {unknown[0]!r}")
        sources = {**self.sources, **{k: Sourced(v, Source.DERIVED, "override") for k, v in changes.items()}}
        plan = replace(self, **changes, sources=sources)
        _check(plan)
        return plan

    @property
    def effective_batch(self) -> int:
        return self.micro_batch_size * self.gradient_accumulation_steps

    @property
    def schedule_total(self) -> int:
        return self.schedule_steps or self.steps

    @property
    def spans_full_run(self) -> bool:
        return self.full_run_steps is not None and self.schedule_total == self.full_run_steps

    @property
    def warmup_steps(self) -> int:
        """transformers' rule: absolute warmup steps when given, else ceil(ratio x the schedule's steps);
        an absolute warmup squeezed with the schedule into fewer steps keeps its share of the full run."""
        if self.warmup_steps_given is not None and (self.full_run_steps is None or self.spans_full_run):
            return self.warmup_steps_given
        return math.ceil(self.warmup_ratio * self.schedule_total)

    @property
    def has_warmup(self) -> bool:
        return self.warmup_steps > 0 and self.lr_scheduler_type != "constant"  # transformers' constant ignores it

    def schedule_words(self) -> str:
        """Which LR schedule the probe trains, for the report."""
        head = f"{self.lr_scheduler_type}, " + (f"warmup {self.warmup_steps}" if self.has_warmup else "no warmup")
        if self.spans_full_run:
            return (f"the first {self.steps} of the full run's {self.schedule_total} steps ({head}; "
                    f"the full run's length from {self.full_run_steps_source})")
        if self.schedule_steps is not None and self.schedule_steps != self.steps:
            return f"the first {self.steps} of {self.schedule_total} steps ({head})"
        if self.schedule_steps is None and self.full_run_steps is None:
            return (f"over the probe's own {self.steps} steps ({head}): the full run's length is unknown "
                    "(give max_steps, or num_train_epochs with --dataset-size)")
        return f"over the probe's own {self.steps} steps ({head})"

    def job(self) -> JobFacts:
        return JobFacts(model=self.facts, gpu=self.gpu, task=TaskFacts(method=self.method, peft=self.peft,
                                                                         seq_len=self.seq_len, variant=self.variant))


def _check(plan: ProbePlan) -> None:
    # A value from a config or --set is named by where it came from, with --lr's range
    lr = plan.sources.get("learning_rate")
    registries.check_flag("--lr", plan.learning_rate,
                          said=None if lr is None or lr.source is Source.FLAG else f"learning_rate ({lr.describe()})")
    registries.check_flag("--steps", plan.steps)
    checks: list[tuple[str, Any, bool]] = [
        ("--micro-batch / micro_batch_size", plan.micro_batch_size, plan.micro_batch_size >= 1),
        ("--accumulation / gradient_accumulation_steps", plan.gradient_accumulation_steps,
         plan.gradient_accumulation_steps >= 1),
        ("--seq-len / max_seq_length", plan.seq_len, plan.seq_len >= 8),  # not-knowledge: a sequence at all
        ("warmup_ratio", plan.warmup_ratio, 0 <= plan.warmup_ratio < 1),
        ("warmup_steps", plan.warmup_steps_given, plan.warmup_steps_given is None or plan.warmup_steps_given >= 0),
        ("schedule_steps", plan.schedule_steps, plan.schedule_steps is None or plan.schedule_steps >= plan.steps),
        ("max_grad_norm", plan.max_grad_norm, plan.max_grad_norm is None or plan.max_grad_norm > 0),
        ("lora_dropout", plan.lora_dropout, 0 <= plan.lora_dropout < 1),
    ]
    for name, value, ok in checks:
        if not ok:
            raise ProbeInputError(f"{name}: {value!r} cannot be probed", hint="see `advisor probe --help`")
    if plan.lr_scheduler_type not in SCHEDULERS:
        raise ProbeInputError(f"lr_scheduler_type: {plan.lr_scheduler_type!r} is not a scheduler the probe builds",
                              hint=f"one of {', '.join(SCHEDULERS)}")
    if plan.optimizer not in OPTIMIZERS:
        raise ProbeInputError(f"optimizer: {plan.optimizer!r} is not an optimizer the probe builds",
                              hint=f"one of {', '.join(OPTIMIZERS)}")
    if plan.device not in DEVICES:
        raise ProbeInputError(f"--device: unknown device {plan.device!r}", hint=f"one of {', '.join(DEVICES)}")


# --- the model ------------------------------------------------------------------------------

def _registry_config(book: Rulebook, model_id: str) -> dict[str, Any]:
    from advisor.facts.model import entry_config

    return entry_config(book.models[model_id])


def _hub_config(hub_id: str) -> dict[str, Any]:
    """config.json of a hub model outside the registry (needs the network)."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise FactError(f"unknown model {hub_id!r}: not in the registry, and huggingface_hub is not installed",
                        hint="pip install 'llm-finetune-advisor[probe]', or pass a local model directory") from exc
    try:
        path = hf_hub_download(hub_id, "config.json")
    except Exception as exc:  # offline, gated, no such repo: one line either way
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FactError(f"model {hub_id!r}: cannot fetch its config.json from the Hugging Face Hub ({first[:160]})",
                        hint="offline? pass a local model directory, a config.json with --random-init, "
                             "or a registry alias (advisor models)") from exc
    return read_config_json(Path(path))


def resolve_source(book: Rulebook, spec: str, *, random_init: bool) -> tuple[ModelSource, ModelFacts]:
    names = registry_names(book)
    key = "-".join(spec.strip().lower().replace("_", "-").split())  # registry_names' spelling
    path = Path(spec).expanduser()
    if path.exists():
        facts = resolve_model(str(path), book)
        is_dir = path.is_dir()
        has_weights = is_dir and (any(path.glob("*.safetensors")) or any(path.glob("*.bin")))
        if not random_init and not has_weights:
            raise ProbeInputError(f"{spec}: no model weights (*.safetensors / *.bin) here",
                                  hint="add --random-init to build the model from its config.json alone")
        config = read_config_json(path) if random_init else None
        kind = "local" if is_dir else "config"
        return ModelSource(spec, kind, str(path), random_init, config), facts
    if "/" in spec and key not in names:
        try:
            facts = resolve_model(spec, book)  # a mirror of a registry model
            config = _registry_config(book, facts.name) if random_init else None
        except FactError:
            config = _hub_config(spec)
            facts = facts_from_config(config, book, name=spec, source=f"config.json of {spec} (Hugging Face Hub)",
                                      hf_id=spec)
            config = config if random_init else None
        return ModelSource(spec, "hub", spec, random_init, config), facts
    facts = resolve_model(spec, book)  # an unknown name raises the registry's one-line error with suggestions
    config = _registry_config(book, facts.name) if random_init else None
    return ModelSource(spec, "registry", facts.hf_id or spec, random_init, config), facts


# --- resolution -----------------------------------------------------------------------------

@dataclass
class _Values:
    """Config values, pins and the recommendation, in that order of precedence below the flags."""

    config: Any  # TrainingConfig | None
    rec: Any  # Recommendation
    pins: dict[str, Any]
    sources: dict[str, Sourced] = field(default_factory=dict)

    def get(self, name: str, default: Any = None, flag: Sourced | None = None) -> Any:
        pv = self.rec.parameters.get(name) if self.rec is not None else None
        won = pick(
            flag,
            Sourced(self.pins[name], Source.PIN) if name in self.pins else None,
            self.config.values.get(name) if self.config is not None else None,
            Sourced(pv.value, Source.RULE, _rules_of(pv)) if pv is not None else None,
            Sourced(default, Source.DEFAULT, "probe default"),
        )
        if won is None:
            return None
        self.sources[name] = won
        return won.value

    def note(self, name: str, value: Any, source: Source, detail: str) -> None:
        self.sources[name] = Sourced(value, source, detail)


def _rules_of(pv: Any) -> str:
    """The rule that set a recommended value and those that moved it after (seq-len-by-use-case → seq-len-fits-gpu)."""
    moved = [str(s.rule) for s in pv.trace if s.stage in ("adjust", "constrain") and s.rule and s.before != s.after]
    return " → ".join([pv.rule or "", *moved]) if moved else pv.rule or ""


def _flag(values: _Values, flag: str, flag_value: Any, default: Any = None) -> Any:
    """The value of the parameter ``flag`` pins (facts/catalogue.py FLAG_PARAMETERS), by PRECEDENCE."""
    return values.get(FLAG_PARAMETERS[flag], default, Sourced(flag_value, Source.FLAG, flag))


def build_plan(
    book: Rulebook,
    *,
    config: Path | None = None,
    config_format: str | None = None,
    model: str | None = None,
    method: str | None = None,
    peft: str | None = None,
    variant: str | None = None,
    gpu: str | None = None,
    gpu_mem: float | None = None,
    detect_gpu: bool = True,
    random_init: bool = False,
    data: Path | None = None,
    packing: bool = True,
    steps: int | None = None,
    seq_len: int | None = None,
    micro_batch: int | None = None,
    accumulation: int | None = None,
    learning_rate: float | None = None,
    seed: int = 0,
    reward: str | None = None,
    max_memory_gb: float | None = None,
    device: str = "auto",
    pins: dict[str, Any] | None = None,
    eval_sequences: int = DEFAULT_EVAL_SEQUENCES,
    dataset_size: int | None = None,
) -> ProbePlan:
    """Resolve a probe from a config (any format `advisor validate` reads) or --model/--method."""
    from advisor.memory.plan import recommend_with_memory

    cfg, doc = None, None
    notes: list[str] = []
    if config is not None:
        from advisor.configs.readers import read_config

        cfg, doc = read_config(config, book, config_format)
        notes.extend(cfg.notes)
        # validate judges the rest of such a file (VCF010); a probe would train without the value, so it stops
        from advisor.configs.model import MEANINGLESS

        meaningless = next((r for r in cfg.read_as if r.rule == MEANINGLESS), None)
        if meaningless is not None:
            problem = meaningless.message.removeprefix(f"{meaningless.key}: ").removesuffix("; not judged")
            raise ProbeInputError(f"{config}:{meaningless.line or '?'}: key '{meaningless.key}': {problem}",
                                  hint="`advisor validate` names every such value; fix them before probing")
    spec = model or (str(cfg.model.value) if cfg is not None and cfg.model is not None else None)
    if spec is None:
        raise ProbeInputError("no model: the config names none" if cfg is not None else "give a CONFIG or --model",
                              hint="--model takes a registry alias, a hub id, a model directory or a config.json")
    given = (method or (str(cfg.method.value) if cfg is not None and cfg.method is not None else None) or "").lower()
    if not given:
        raise ProbeInputError(f"give --method ({' | '.join(METHODS)})")
    rule_method = PAIR_METHODS.get(given, given)
    trained = registries.method(rule_method)
    if trained is None:
        also = "".join(f" (and the {m.aliases_called} {', '.join(m.aliases)})"
                       for m in registries.methods().values() if m.aliases)
        raise ProbeInputError(f"--method: {given!r} is not a method the probe covers",
                              hint=f"one of {', '.join(METHODS)}{also}")
    adapter = (peft or (str(cfg.peft.value) if cfg is not None and cfg.peft is not None else None) or "lora").lower()
    if adapter not in PEFTS:
        raise ProbeInputError(f"--peft: unknown value {adapter!r}", hint=one_of(adapter, PEFTS))
    if data is not None and not data.exists():
        raise ProbeInputError(f"--data {data}: no such file or directory",
                              hint="a JSONL file (text | prompt/completion | messages | prompt/chosen/rejected) "
                                   "or a datasets directory")
    source, facts = resolve_source(book, spec, random_init=random_init)
    hw = resolve_gpu(book, name=gpu, memory_gb=gpu_mem, count=None, detect=detect_gpu)
    world, world_note = _full_run_world(cfg, doc)
    # The variant the method word or the config's loss key names, before the rules run: SimPO's, ORPO's and
    # KTO's own knobs (rules/methods.yaml PREF002-PREF006) are rules on task.variant.
    named = (pins or {}).get("loss_type", cfg.values["loss_type"].value if cfg is not None and "loss_type" in cfg.values
                             else None)
    try:
        flag = check_variant(book.variants, rule_method, variant)
    except FactError as exc:
        raise ProbeInputError(exc.message, hint=exc.hint) from exc
    if flag is not None and variant_of(book.variants, rule_method, given) not in (None, flag, rule_method):
        raise ProbeInputError(f"--variant {flag}: the method {given!r} names another variant",
                              hint=f"--method {rule_method} --variant {flag}")
    early = flag or variant_of(book.variants, rule_method, named) or variant_of(book.variants, rule_method, given)
    task = TaskFacts(method=rule_method, peft=adapter, dataset_size=dataset_size, seq_len=None, variant=early)
    job = JobFacts(model=facts, gpu=hw, task=task)
    # The rules size the batch at the length the probe trains (--seq-len or the config's), and, as recommend does,
    # adapt what nobody chose to the GPU (QLoRA for LoRA with no --peft and no config adapter; a shorter sequence)
    sized = dict(pins or {})
    stated_seq = seq_len if seq_len is not None else (
        cfg.values["max_seq_length"].value if cfg is not None and "max_seq_length" in cfg.values else None)
    if stated_seq is not None:
        sized.setdefault("max_seq_length", stated_seq)
    rec = recommend_with_memory(book, job, sized, None,
                                peft_free=peft is None and (cfg is None or cfg.peft is None))
    adapter = str(rec.facts["task"]["peft"])
    notes.extend(f"adapted to fit: {change}" for change in rec.adapted)
    values = _Values(cfg, rec, dict(pins or {}))

    lr = float(_flag(values, "--lr", learning_rate))
    seq = int(_flag(values, "--seq-len", seq_len, facts.max_position_embeddings))
    prompt, completion = values.get("max_prompt_length"), values.get("max_completion_length")
    if seq_len is None and trained.generates and prompt and completion:  # TRL's online trainers cap the two parts
        seq = int(prompt) + int(completion)
        values.note("max_seq_length", seq, Source.DERIVED, "max_prompt_length + max_completion_length")
    if seq > facts.max_position_embeddings:
        values.note("max_seq_length", facts.max_position_embeddings, Source.DERIVED,
                    f"the model's context ({values.sources['max_seq_length'].describe()} asked for {seq})")
        seq = facts.max_position_embeddings
    micro = int(_flag(values, "--micro-batch", micro_batch, 1))
    if micro < 1:  # before the accumulation is derived from it
        raise ProbeInputError(f"--micro-batch / micro_batch_size: {micro} cannot be probed", hint="1 or more")
    given_accum = _flag(values, "--accumulation", accumulation, None)
    if (micro_batch is not None and accumulation is None) or given_accum is None:
        # Nothing sets the accumulation (no --gpu: no rule sizes the micro-batch): the probe keeps the run's
        # effective batch rather than training a step of micro-batch x 1.
        accum = _accumulation_for(values, cfg, rec, micro)
    else:
        accum = int(given_accum)
    n_steps = int(steps) if steps is not None else DEFAULT_STEPS
    values.note("steps", n_steps, *((Source.FLAG, "--steps") if steps is not None else (Source.DEFAULT, "probe default")))
    values.note("seed", seed, Source.FLAG, "--seed")
    clip = values.get("max_grad_norm", 1.0)  # not-knowledge: transformers' own default when nothing sets it
    clip = None if clip is None or float(clip) <= 0 else float(clip)
    full_steps, full_source = _full_run_steps(values, cfg, micro * accum, dataset_size, world)
    schedule_steps = full_steps
    if full_steps is None:
        notes.append(f"the full run's length is unknown: the LR schedule spans the probe's own {n_steps} steps "
                     "(give max_steps, or num_train_epochs with --dataset-size, to train the full run's first steps)")
    elif full_steps < n_steps:
        schedule_steps = None
        notes.append(f"the probe's {n_steps} steps outrun the full run's {full_steps}: the LR schedule spans the probe's")
    warmup = values.get("warmup_ratio")
    warmup_cv = cfg.values.get("warmup_steps") if cfg is not None else None
    warmup_given = None
    if warmup_cv is not None:
        warmup_given = int(warmup_cv.value)
        values.sources["warmup_ratio"] = warmup_cv
        if full_steps:  # its share of the full run, for a schedule squeezed into fewer steps (the sweep's)
            warmup = min(warmup_given / full_steps, SQUEEZED_WARMUP_MAX)
    targets = values.get("lora_target_modules") or ["all-linear"]
    if isinstance(targets, str):
        targets = [targets]
    sequences = trained.sequences_per_example
    settings, setting_keys = _method_settings(book, values)
    loss = settings["loss_type"].value if "loss_type" in settings else given
    named_variant = variant_of(book.variants, rule_method, loss) or variant_of(book.variants, rule_method, given)
    if flag is not None and "loss_type" in settings and named_variant != flag:
        stated = settings.pop("loss_type")
        if stated.source is Source.PIN:
            raise ProbeInputError(f"--variant {flag}: --set loss_type={stated.value} names another loss",
                                  hint="give one of the two")
        notes.append(f"--variant {flag} trains its own loss, not loss_type {stated.value!r} ({stated.describe()})")
    variant = flag or named_variant
    if reward is not None:
        if not trained.generates:
            raise ProbeInputError(f"--reward {reward}: {trained.name} samples no completions to reward",
                                  hint="--reward is for the methods that generate (GRPO)")
        load_reward(reward)  # a bad spec fails here, before anything heavy loads
    if given != rule_method:
        notes.append(f"{given} trains on {trained.aliases_train_on}: probed with {trained.name}'s batch shape")
    plan = ProbePlan(
        model=source, facts=facts, gpu=hw, method=rule_method, peft=adapter, learning_rate=lr, steps=n_steps, seed=seed,
        micro_batch_size=micro, gradient_accumulation_steps=accum, seq_len=seq,
        lr_scheduler_type=str(values.get("lr_scheduler_type", TRANSFORMERS_DEFAULT_SCHEDULER)).lower(),
        warmup_ratio=float(warmup or 0.0), max_grad_norm=clip,
        optimizer=str(values.get("optimizer", "adamw_torch")).lower(),
        adam_beta1=_opt_float(values.get("adam_beta1")), adam_beta2=_opt_float(values.get("adam_beta2")),
        adam_epsilon=_opt_float(values.get("adam_epsilon")), weight_decay=float(values.get("weight_decay", 0)),
        lora_rank=_lora_size(values, adapter, "lora_rank"), lora_alpha=_lora_size(values, adapter, "lora_alpha"),
        lora_dropout=float(values.get("lora_dropout", 0.0)), lora_target_modules=tuple(str(t) for t in targets),
        gradient_checkpointing=bool(values.get("gradient_checkpointing", False)),
        bf16=bool(values.get("bf16", bool(hw.bf16))), sequences_per_example=sequences,
        data=DataSpec(path=str(data) if data is not None else None, packing=packing, eval_sequences=eval_sequences),
        device=device, max_memory_gb=max_memory_gb, full_run_steps=full_steps, full_run_steps_source=full_source,
        schedule_steps=schedule_steps, warmup_steps_given=warmup_given,
        method_given=given, config_path=str(config) if config is not None else None,
        config_format=cfg.format if cfg is not None else None, sources=values.sources,
        notes=tuple(notes) + ((world_note,) if world_note else ()), single_gpu_note=world_note,
        params={name: pv.value for name, pv in rec.parameters.items()},
        settings=settings, setting_keys=setting_keys, variant=variant, reward=reward,
    )
    if steps is None and plan.spans_full_run and plan.has_warmup:
        # The first DEFAULT_STEPS steps of a run that warms up for longer never reach the peak LR, which is
        # what a probe must test: by default it trains through the warmup and DEFAULT_STEPS steps beyond.
        longer = min(plan.warmup_steps + DEFAULT_STEPS, plan.schedule_total,
                     int(registries.flag_bounds()["--steps"].maximum or plan.schedule_total))
        if longer > plan.steps:
            plan = replace(plan, steps=longer, sources={
                **plan.sources, "steps": Sourced(longer, Source.DEFAULT, f"probe default: the full run's warmup "
                                                 f"({plan.warmup_steps}) + {DEFAULT_STEPS} steps at the peak LR")})
    _check(plan)
    from advisor.probe.data import check_data

    check_data(plan)
    return replace(plan, params={**plan.params, **plan_parameters(plan)})


def _accumulation_for(values: _Values, cfg: Any, rec: Any, micro: int) -> int:
    """--micro-batch without --accumulation: the accumulation that keeps the run's effective batch,
    so the measured step (and the projected full run) is a step of the batch the run trains."""
    effective, source = None, ""
    if cfg is not None and "micro_batch_size" in cfg.values:
        cfg_micro = int(cfg.values["micro_batch_size"].value)
        cv = cfg.values.get("gradient_accumulation_steps")
        effective = cfg_micro * (int(cv.value) if cv is not None else 1)
        source = f"config {cfg.values['micro_batch_size'].key}" + (f" x {cv.key}" if cv is not None else "")
    else:
        pv = rec.parameters.get("effective_batch_size")
        if pv is not None and pv.value is not None:
            effective, source = int(pv.value), f"rule {pv.rule}" if pv.rule else "recommendation"
    if effective is None:
        values.note("gradient_accumulation_steps", 1, Source.DEFAULT, "no effective batch known: 1")
        return 1
    accum = max(1, math.ceil(effective / micro))
    src = values.sources.get("micro_batch_size")
    how = "--micro-batch" if src is None or src.source is Source.FLAG else "micro-batch"
    tail = "" if src is None or src.source is Source.FLAG else f" ({src.describe()})"
    values.note("gradient_accumulation_steps", accum, Source.DERIVED,
                f"ceil(effective batch {effective} ({source}) / {how} {micro}{tail})")
    return accum


SETTING_GROUPS = ("method", "data")  # rules/parameters.yaml groups of a method's own knobs (the rest are plan fields)


def _method_settings(book: Rulebook, values: _Values) -> tuple[dict[str, Sourced], dict[str, tuple[str, ...]]]:
    """The method's knobs (a parameter of a SETTING_GROUPS group with a Hugging Face / TRL key) that a pin,
    the config or a rule sets, and their keys: the trainer's config takes those it has (advisor.probe.trl_run)."""
    out: dict[str, Sourced] = {}
    keys: dict[str, tuple[str, ...]] = {}
    for name, param in book.parameters.items():
        hf = param.trainer_keys.get("hf")
        if not hf or param.group not in SETTING_GROUPS:
            continue
        pv = values.rec.parameters.get(name) if values.rec is not None else None
        won = pick(Sourced(values.pins[name], Source.PIN) if name in values.pins else None,
                   values.config.values.get(name) if values.config is not None else None,
                   Sourced(pv.value, Source.RULE, pv.rule or "") if pv is not None else None)
        if won is not None:
            out[name] = won
            keys[name] = (hf,) if isinstance(hf, str) else tuple(hf)
    return out, keys


def load_reward(spec: str) -> Any:
    """``module:function`` -> the function (TRL's reward signature: prompts, completions, **kwargs -> floats)."""
    import importlib
    import importlib.util
    import sys

    module, _, name = spec.rpartition(":")
    hint = ("--reward takes module:function or path/to/file.py:function, e.g. my_rewards:correct "
            "(a module on the Python path or in the current directory)")
    if not module or not name:
        raise ProbeInputError(f"--reward {spec!r}: not module:function", hint=hint)
    try:
        if module.endswith(".py"):
            if not Path(module).is_file():
                raise ProbeInputError(f"--reward {spec}: no such file {module}", hint=hint)
            loader = importlib.util.spec_from_file_location(Path(module).stem, module)
            assert loader is not None and loader.loader is not None
            mod = importlib.util.module_from_spec(loader)
            loader.loader.exec_module(mod)
        else:
            if "" not in sys.path and str(Path.cwd()) not in sys.path:
                sys.path.append(str(Path.cwd()))  # the console script's sys.path[0] is its bin directory
            mod = importlib.import_module(module)
    except ProbeInputError:
        raise
    except Exception as exc:  # the user's module failing to import is their input's error: one line
        raise ProbeInputError(f"--reward {spec}: cannot import {module!r} ({type(exc).__name__}: {exc})",
                              hint=hint) from exc
    fn = getattr(mod, name, None)
    if not callable(fn):
        raise ProbeInputError(f"--reward {spec}: {module!r} has no function {name!r}", hint=hint)
    return fn


def _lora_size(values: _Values, adapter: str, name: str) -> int:
    value = values.get(name)
    if value is not None:
        return int(value)
    if adapter == "full":
        return 0  # not-knowledge: no adapter, never read
    key = {"lora_rank": "lora_r / lora_rank", "lora_alpha": "lora_alpha"}[name]
    raise ProbeInputError(f"{name}: nothing sets it for this {adapter} probe (no rule in the rulebook, no config key)",
                          hint=f"pass --set {name}=N or set the config's {key}")


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _full_run_world(cfg: Any, doc: Any) -> tuple[tuple[int, str], str | None]:
    """The full run's data-parallel GPUs and what says so, as validate reads them (world_size, else the file's
    `# advisor: job gpus=N`), and the line that says the probe trains on one; (1, "") where nothing says."""
    if cfg is None:
        return (1, ""), None
    from advisor.validate import job_comment, world_said

    said = world_said(cfg, job_comment(doc))
    if said is None or said[0] <= 1:
        return (1, ""), None
    count, where = said
    return (count, where), (f"the probe runs on one GPU: the full run's {count} GPUs ({where}) count in "
                            "its step count only, each training the probe's micro-batch x accumulation")


def _full_run_steps(values: _Values, cfg: Any, effective: int, dataset_size: int | None,
                    world: tuple[int, str] = (1, "")) -> tuple[int | None, str]:
    if cfg is not None and "max_steps" in cfg.values:
        cv = cfg.values["max_steps"]
        return int(cv.value), f"config {cv.key}"
    if cfg is not None and "num_train_epochs" in cfg.values and dataset_size:
        epochs = float(cfg.values["num_train_epochs"].value)
        effective *= world[0]  # the full run's data-parallel GPUs: micro x accumulation x GPUs
        return math.ceil(epochs * dataset_size / max(1, effective)), \
            f"{epochs:g} epochs x {dataset_size} examples / effective batch {effective}" + (
                f" ({world[1]})" if world[0] > 1 else "")
    if cfg is not None and "num_train_epochs" in cfg.values:
        return None, ""  # epochs of an unknown data set: the recommendation's step count is not this run's
    steps = values.get("max_steps")
    if steps is not None:
        return int(steps), values.sources["max_steps"].describe()
    return None, ""


def plan_parameters(plan: ProbePlan) -> dict[str, Any]:
    """The values the probe runs with, as rulebook parameters (what the memory model reads)."""
    out = {f.metadata["parameter"]: getattr(plan, f.name) for f in fields(plan) if f.metadata.get("parameter")}
    out.update({"lora_target_modules": list(plan.lora_target_modules), "load_in_4bit": plan.peft == "qlora",
                "effective_batch_size": plan.effective_batch})
    return out


def shared_settings(plan: ProbePlan) -> dict[str, Any]:
    """The settings every trial of a sweep shares (all but a trial's own LR, steps and seed)."""
    return {f.name: getattr(plan, f.name) for f in fields(plan) if f.metadata.get("setting") and not f.metadata["trial"]}
